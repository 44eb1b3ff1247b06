package pki

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/qkms/qkms/internal/hybrid"
)

// PQPair is a node's issued (or kept) ML-DSA certificate and key on disk.
type PQPair struct {
	CertFile string // DIR/pq/NODE-mldsa.pem
	KeyFile  string // DIR/pq/NODE-mldsa-key.pem, mode 0600
	Serial   uint64
	Cert     *hybrid.Certificate
	// Issued is true if a new pair was written, false if a valid existing
	// pair was kept.
	Issued bool
	// Archived is the copy of the certificate this pair replaced
	// (DIR/pq/NODE-mldsa.pem.SERIAL), or "" if there was none.
	Archived string
}

// PQNodeFiles returns the files LoadPQIdentity takes for node in the PKI
// directory dir: the CA certificate, the revocation list, and the node's
// certificate and key.
func PQNodeFiles(dir, node string) (caFile, crlFile, certFile, keyFile string) {
	pq := filepath.Join(dir, PQDir)
	return filepath.Join(pq, PQCACertFile), filepath.Join(pq, PQCRLFile),
		filepath.Join(pq, node+"-mldsa.pem"), filepath.Join(pq, node+"-mldsa-key.pem")
}

// IssueNode issues NODE-mldsa.pem / NODE-mldsa-key.pem: a new ML-DSA key
// pair of parameter set alg ("" = the CA's) and its certificate (Subject
// node, Issuer PQCAName). An existing pair is kept if its certificate
// verifies under this CA, names node, is of parameter set alg, matches its
// key, is not revoked and does not expire within RenewBefore.
func (ca *PQCA) IssueNode(node, alg string) (PQPair, error) {
	return ca.issueNode(node, alg, false)
}

// RotateNode always issues node a new key pair and certificate with a new
// serial number. The previous certificate is copied to
// NODE-mldsa.pem.SERIAL first (for audit and serial uniqueness) and stays
// valid until it expires or is revoked; the previous key is replaced.
func (ca *PQCA) RotateNode(node, alg string) (PQPair, error) {
	return ca.issueNode(node, alg, true)
}

func (ca *PQCA) issueNode(node, alg string, rotate bool) (PQPair, error) {
	if err := checkPQNode(node); err != nil {
		return PQPair{}, err
	}
	if alg == "" {
		alg = ca.cert.Alg
	}
	s, err := hybrid.SignerByName(alg)
	if err != nil {
		return PQPair{}, fmt.Errorf("pki: %w", err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.key == nil {
		return PQPair{}, hybrid.ErrWiped
	}
	crl, err := ca.RevocationList()
	if err != nil {
		return PQPair{}, err
	}
	_, _, certFile, keyFile := PQNodeFiles(filepath.Dir(ca.dir), node)
	p := PQPair{CertFile: certFile, KeyFile: keyFile}
	if !rotate {
		if cert, ok := ca.keepNode(p, node, alg, crl); ok {
			p.Cert, p.Serial = cert, cert.Serial
			return p, nil
		}
	}
	if p.Archived, err = ca.archive(certFile); err != nil {
		return PQPair{}, err
	}
	serial, err := ca.newPQSerial(node, crl)
	if err != nil {
		return PQPair{}, err
	}
	key, pub, err := s.GenerateKey(ca.opts.Rand)
	if err != nil {
		return PQPair{}, fmt.Errorf("pki: generating the key of %s: %w", node, err)
	}
	defer key.Wipe()
	now := ca.opts.Now()
	notAfter := now.Add(ca.opts.Validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	cert, err := hybrid.IssueCertificate(ca.key, PQCAName, node, alg, pub, serial, now.Add(-clockSkew), notAfter)
	if err != nil {
		return PQPair{}, fmt.Errorf("pki: issuing the PQ certificate of %s: %w", node, err)
	}
	if err := writePQPair(certFile, keyFile, cert, key); err != nil {
		return PQPair{}, err
	}
	p.Cert, p.Serial, p.Issued = cert, serial, true
	return p, nil
}

// keepNode reports whether the pair on disk can be kept (see IssueNode).
func (ca *PQCA) keepNode(p PQPair, node, alg string, crl *hybrid.RevocationList) (*hybrid.Certificate, bool) {
	cert, key, err := readPQPair(p.CertFile, p.KeyFile)
	if err != nil {
		return nil, false
	}
	key.Wipe()
	now := ca.opts.Now()
	switch {
	case cert.Subject != node || cert.Issuer != PQCAName || cert.Alg != alg:
		return nil, false
	case cert.Verify(ca.cert.PublicKey, ca.cert.Alg, now) != nil:
		return nil, false
	case crl.IsRevoked(cert.Subject, cert.Serial):
		return nil, false
	case now.Add(ca.opts.RenewBefore).After(cert.NotAfter):
		return nil, false
	}
	return cert, true
}

// archive copies the certificate at certFile, if there is one that parses,
// to certFile.SERIAL and returns that path.
func (ca *PQCA) archive(certFile string) (string, error) {
	b, err := os.ReadFile(certFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("pki: %w", err)
	}
	old, err := hybrid.ParseCertificatePEM(b)
	if err != nil {
		return "", nil // not a certificate: nothing worth keeping
	}
	path := certFile + "." + strconv.FormatUint(old.Serial, 10)
	return path, writeFileAtomic(path, b, 0o644)
}

// maxSerialDraws bounds the draws of newPQSerial; with 2⁶³ values, more
// than one draw practically never happens.
const maxSerialDraws = 16

// newPQSerial draws a random serial in [2, 2⁶³) that node has never had:
// not its current certificate's, not an archived one's, not a revoked one's.
// (Serial 1 is the CA's.)
func (ca *PQCA) newPQSerial(node string, crl *hybrid.RevocationList) (uint64, error) {
	used, err := ca.usedSerials(node)
	if err != nil {
		return 0, err
	}
	for range maxSerialDraws {
		var b [8]byte
		if _, err := io.ReadFull(ca.opts.Rand, b[:]); err != nil {
			return 0, fmt.Errorf("pki: serial number: %w", err)
		}
		n := binary.BigEndian.Uint64(b[:]) >> 1
		if n > pqCASerial && !used[n] && !crl.IsRevoked(node, n) {
			return n, nil
		}
	}
	return 0, errors.New("pki: no unused serial number after many draws: bad random source")
}

// usedSerials returns the serials of node's certificate and of its
// archived certificates in the directory.
func (ca *PQCA) usedSerials(node string) (map[uint64]bool, error) {
	entries, err := os.ReadDir(ca.dir)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	used := map[uint64]bool{}
	base := node + "-mldsa.pem"
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if n, err := strconv.ParseUint(rest, 10, 64); ok && err == nil {
			used[n] = true
		}
	}
	if c, err := ReadPQCertificate(filepath.Join(ca.dir, base)); err == nil {
		used[c.Serial] = true
	}
	return used, nil
}

// Revoke adds node's certificate serial to the revocation list: crl.pem is
// re-signed with the next number and atomically replaced. Revoking a serial
// already on the list changes nothing. The serial need not be known here
// (an archived copy may have been deleted).
func (ca *PQCA) Revoke(node string, serial uint64) error {
	if err := checkPQNode(node); err != nil {
		return err
	}
	if serial == 0 {
		return errors.New("pki: serial 0 is never issued")
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	crl, err := ca.RevocationList()
	if err != nil {
		return err
	}
	if crl.IsRevoked(node, serial) {
		return nil
	}
	revoked := append(crl.Revoked[:len(crl.Revoked):len(crl.Revoked)], hybrid.RevokedEntry{Subject: node, Serial: serial})
	return ca.writeCRL(crl.Number+1, revoked)
}

// checkPQNode accepts node IDs that checkName accepts, except the CA's
// own names.
func checkPQNode(node string) error {
	if node == PQCAName {
		return fmt.Errorf("%w %q: reserved for the PQ CA", ErrBadName, node)
	}
	return checkName(node)
}
