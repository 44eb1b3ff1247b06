package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/hybrid"
)

// Files of the post-quantum CA, in the subdirectory PQDir of a PKI
// directory (doc.go: "Post-quantum keys").
const (
	PQDir        = "pq"
	PQCACertFile = "ca-mldsa.pem"
	PQCAKeyFile  = "ca-mldsa-key.pem"
	PQCRLFile    = "crl.pem"
	// PQCAName is the Subject and Issuer of the PQ CA's self-signed
	// certificate and the Issuer of every node certificate and of the CRL.
	PQCAName = "qkms-ca"
	// pqCASerial is the serial number of the PQ CA's own certificate.
	pqCASerial = 1
)

// ErrKeyMismatch: a private key that is not the one its certificate
// certifies (another key, or another algorithm).
var ErrKeyMismatch = errors.New("pki: private key does not match the certificate")

// PQCA is a loaded post-quantum (ML-DSA) certificate authority. It issues
// node certificates into DIR/pq and maintains DIR/pq/crl.pem. Its methods
// are safe for concurrent use within one process; two processes must not
// manage one directory at the same time. Wipe the CA key when done.
type PQCA struct {
	dir  string // DIR/pq
	opts Options
	cert *hybrid.Certificate

	mu  sync.Mutex         // serializes issuing, rotation and revocation
	key *hybrid.PrivateKey // guarded by mu after construction; nil after Wipe
}

// InitPQCA is InitPQCAWithOptions with the default Options.
func InitPQCA(dir, alg string) (*PQCA, error) {
	return InitPQCAWithOptions(dir, alg, Options{})
}

// InitPQCAWithOptions loads the PQ CA of the PKI directory dir (files in
// dir/pq) or, if neither its certificate nor its key exists, creates
// dir/pq (0700), an ML-DSA CA of parameter set alg ("" = hybrid.DefaultSignature)
// and an empty revocation list number 1. An existing CA is never replaced:
// it must be self-signed, valid, match its key and, if alg is not "", be
// of parameter set alg (ErrBadCA otherwise). Of opts, Validity, CAValidity,
// RenewBefore, Now and Rand are used (Rand for keys and serial numbers).
func InitPQCAWithOptions(dir, alg string, opts Options) (*PQCA, error) {
	if alg != "" {
		if _, err := hybrid.SignerByName(alg); err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
	}
	pqDir := filepath.Join(dir, PQDir)
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	if err := ensureDir(pqDir); err != nil {
		return nil, err
	}
	ca := &PQCA{dir: pqDir, opts: opts.withDefaults()}
	_, certErr := os.Stat(ca.path(PQCACertFile))
	_, keyErr := os.Stat(ca.path(PQCAKeyFile))
	var err error
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		if alg == "" {
			alg = hybrid.DefaultSignature
		}
		err = ca.create(alg)
	} else {
		err = ca.load(alg)
	}
	if err != nil {
		ca.key.Wipe()
		return nil, err
	}
	return ca, nil
}

// LoadPQCA loads the existing PQ CA of the PKI directory dir, like
// InitPQCAWithOptions, but never creates one: a missing CA is an error
// wrapping fs.ErrNotExist.
func LoadPQCA(dir string, opts Options) (*PQCA, error) {
	ca := &PQCA{dir: filepath.Join(dir, PQDir), opts: opts.withDefaults()}
	if _, err := os.Stat(ca.path(PQCACertFile)); err != nil {
		return nil, fmt.Errorf("pki: no post-quantum CA in %s: %w", dir, err)
	}
	if err := ca.load(""); err != nil {
		ca.key.Wipe()
		return nil, err
	}
	return ca, nil
}

func (ca *PQCA) path(name string) string { return filepath.Join(ca.dir, name) }

// Dir returns the directory of the PQ files (DIR/pq).
func (ca *PQCA) Dir() string { return ca.dir }

// CertFile returns the path of ca-mldsa.pem.
func (ca *PQCA) CertFile() string { return ca.path(PQCACertFile) }

// CRLFile returns the path of crl.pem.
func (ca *PQCA) CRLFile() string { return ca.path(PQCRLFile) }

// Algorithm returns the CA key's parameter set ("ML-DSA-65", ...).
func (ca *PQCA) Algorithm() string { return ca.cert.Alg }

// Cert returns a copy of the CA's self-signed certificate.
func (ca *PQCA) Cert() *hybrid.Certificate { return cloneCert(ca.cert) }

// Wipe zeroes the CA's private key; the PQCA cannot issue or revoke after.
func (ca *PQCA) Wipe() {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.key.Wipe()
	ca.key = nil
}

func (ca *PQCA) create(alg string) error {
	s, err := hybrid.SignerByName(alg)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	key, pub, err := s.GenerateKey(ca.opts.Rand)
	if err != nil {
		return fmt.Errorf("pki: generating the PQ CA key: %w", err)
	}
	now := ca.opts.Now()
	cert, err := hybrid.IssueCertificate(key, PQCAName, PQCAName, alg, pub, pqCASerial,
		now.Add(-clockSkew), now.Add(ca.opts.CAValidity))
	if err == nil {
		err = writePQPair(ca.CertFile(), ca.path(PQCAKeyFile), cert, key)
	}
	if err != nil {
		key.Wipe()
		return err
	}
	ca.cert, ca.key = cert, key
	return ca.writeCRL(1, nil)
}

func (ca *PQCA) load(alg string) error {
	cert, key, err := readPQPair(ca.CertFile(), ca.path(PQCAKeyFile))
	if errors.Is(err, ErrKeyPermissions) {
		return err
	}
	if err == nil {
		err = checkPQCA(cert, alg, ca.opts.Now())
		if err != nil {
			key.Wipe()
		}
	}
	if err != nil {
		return fmt.Errorf("%w in %s: %w", ErrBadCA, ca.dir, err)
	}
	ca.cert, ca.key = cert, key
	// A crash between the CA and its first list leaves no list: write it.
	// A list that exists but does not verify is never replaced, since an
	// empty list would un-revoke certificates.
	if _, err := os.Stat(ca.CRLFile()); errors.Is(err, fs.ErrNotExist) {
		return ca.writeCRL(1, nil)
	}
	if _, err := ca.RevocationList(); err != nil {
		return fmt.Errorf("%w in %s: %w", ErrBadCA, ca.dir, err)
	}
	return nil
}

// checkPQCA checks a loaded CA certificate: self-signed by its own key,
// valid at now, named PQCAName, of parameter set alg unless alg is "".
func checkPQCA(cert *hybrid.Certificate, alg string, now time.Time) error {
	switch {
	case cert.Subject != PQCAName || cert.Issuer != PQCAName:
		return fmt.Errorf("%s is not the PQ CA certificate: subject %q, issuer %q", PQCACertFile, cert.Subject, cert.Issuer)
	case alg != "" && cert.Alg != alg:
		return fmt.Errorf("the PQ CA key is %s, not %s", cert.Alg, alg)
	}
	if err := cert.Verify(cert.PublicKey, cert.Alg, now); err != nil {
		return fmt.Errorf("%s: %w", PQCACertFile, err)
	}
	return nil
}

// RevocationList reads crl.pem and checks the CA's signature on it.
func (ca *PQCA) RevocationList() (*hybrid.RevocationList, error) {
	l, err := ReadPQRevocationList(ca.CRLFile())
	if err != nil {
		return nil, err
	}
	if err := l.Verify(ca.cert.PublicKey, ca.cert.Alg); err != nil {
		return nil, fmt.Errorf("pki: %s: %w", ca.CRLFile(), err)
	}
	return l, nil
}

// Verifier returns a hybrid.Verifier trusting this CA, with the current
// revocation list.
func (ca *PQCA) Verifier() (*hybrid.Verifier, error) {
	l, err := ca.RevocationList()
	if err != nil {
		return nil, err
	}
	return hybrid.NewVerifier(ca.cert.PublicKey, ca.cert.Alg, l)
}

// writeCRL signs and writes the list number with the entries revoked.
// The caller holds mu or is the constructor.
func (ca *PQCA) writeCRL(number uint64, revoked []hybrid.RevokedEntry) error {
	if ca.key == nil {
		return hybrid.ErrWiped
	}
	l, err := hybrid.IssueRevocationList(ca.key, PQCAName, number, ca.opts.Now(), revoked)
	if err != nil {
		return fmt.Errorf("pki: signing revocation list %d: %w", number, err)
	}
	b, err := l.EncodePEM()
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return writeFileAtomic(ca.CRLFile(), b, 0o644)
}

func cloneCert(c *hybrid.Certificate) *hybrid.Certificate {
	cp := *c
	cp.PublicKey = bytes.Clone(c.PublicKey)
	cp.Signature = bytes.Clone(c.Signature)
	return &cp
}
