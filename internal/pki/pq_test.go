package pki

import (
	"bytes"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/hybrid"
	"github.com/qkms/qkms/internal/qkd"
)

var pqNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// newPQCA creates a PQ CA in a new PKI directory with the clock at *clock.
func newPQCA(t *testing.T, clock *time.Time) (*PQCA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := InitPQCAWithOptions(dir, "", Options{Now: func() time.Time { return *clock }})
	if err != nil {
		t.Fatalf("InitPQCA(%s) = %v", dir, err)
	}
	t.Cleanup(ca.Wipe)
	return ca, dir
}

func issueNode(t *testing.T, ca *PQCA, node string) PQPair {
	t.Helper()
	p, err := ca.IssueNode(node, "")
	if err != nil {
		t.Fatalf("IssueNode(%s) = %v", node, err)
	}
	return p
}

// encodedCert reads a certificate file and returns its message encoding.
func encodedCert(t *testing.T, path string) []byte {
	t.Helper()
	c, err := ReadPQCertificate(path)
	must(t, err)
	enc, err := c.Marshal()
	must(t, err)
	return enc
}

func TestInitPQCACreates(t *testing.T) {
	clock := pqNow
	ca, dir := newPQCA(t, &clock)
	pq := filepath.Join(dir, PQDir)
	c := ca.Cert()
	got := []any{c.Subject, c.Issuer, c.Serial, c.Alg, ca.Algorithm(), ca.Dir(), ca.CertFile(), ca.CRLFile()}
	want := []any{"qkms-ca", "qkms-ca", uint64(1), hybrid.MLDSA65, "ML-DSA-65", pq,
		filepath.Join(pq, "ca-mldsa.pem"), filepath.Join(pq, "crl.pem")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PQ CA (-want +got):\n%s", diff)
	}
	if err := c.Verify(c.PublicKey, c.Alg, pqNow); err != nil {
		t.Errorf("CA certificate does not verify under its own key: %v", err)
	}
	checkModes(t, map[string]fs.FileMode{
		dir:                                   0o700 | fs.ModeDir,
		pq:                                    0o700 | fs.ModeDir,
		filepath.Join(pq, "ca-mldsa-key.pem"): 0o600,
		filepath.Join(pq, "ca-mldsa.pem"):     0o644,
		filepath.Join(pq, "crl.pem"):          0o644,
	})
	l, err := ca.RevocationList()
	if err != nil || l.Number != 1 || len(l.Revoked) != 0 || l.Issuer != PQCAName {
		t.Errorf("RevocationList() = %+v, %v; want number 1, empty, issuer %s", l, err, PQCAName)
	}
}

func TestInitPQCAIdempotent(t *testing.T) {
	clock := pqNow
	ca, dir := newPQCA(t, &clock)
	a := issueNode(t, ca, "A")
	snap := snapshot(t, filepath.Join(dir, PQDir))

	for _, alg := range []string{"", hybrid.MLDSA65} {
		ca2, err := InitPQCAWithOptions(dir, alg, Options{Now: func() time.Time { return clock }})
		if err != nil {
			t.Fatalf("InitPQCA(%q) again = %v", alg, err)
		}
		if !bytes.Equal(ca2.Cert().PublicKey, ca.Cert().PublicKey) {
			t.Errorf("InitPQCA(%q) again made a new CA", alg)
		}
		again, err := ca2.IssueNode("A", "")
		if err != nil || again.Issued || again.Serial != a.Serial {
			t.Errorf("IssueNode(A) again = serial %d, issued %v, %v; want serial %d kept", again.Serial, again.Issued, err, a.Serial)
		}
		ca2.Wipe()
	}
	if diff := cmp.Diff(snap, snapshot(t, filepath.Join(dir, PQDir))); diff != "" {
		t.Errorf("re-init changed files (-before +after):\n%s", diff)
	}
	if _, err := InitPQCA(dir, hybrid.MLDSA87); !errors.Is(err, ErrBadCA) {
		t.Errorf("InitPQCA(%s) over an ML-DSA-65 CA = %v, want ErrBadCA", hybrid.MLDSA87, err)
	}
	if _, err := InitPQCA(dir, "RSA-2048"); !errors.Is(err, hybrid.ErrUnsupported) {
		t.Errorf("InitPQCA(RSA-2048) = %v, want ErrUnsupported", err)
	}
	if _, err := LoadPQCA(t.TempDir(), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPQCA(empty dir) = %v, want ErrNotExist", err)
	}
}

func TestInitPQCARefuses(t *testing.T) {
	pqFile := func(dir, name string) string { return filepath.Join(dir, PQDir, name) }
	tests := []struct {
		name  string
		spoil func(t *testing.T, dir string)
		want  error
	}{
		{"key missing", func(t *testing.T, dir string) { must(t, os.Remove(pqFile(dir, PQCAKeyFile))) }, ErrBadCA},
		{"cert missing", func(t *testing.T, dir string) { must(t, os.Remove(pqFile(dir, PQCACertFile))) }, ErrBadCA},
		{"key readable by others", func(t *testing.T, dir string) { must(t, os.Chmod(pqFile(dir, PQCAKeyFile), 0o640)) }, ErrKeyPermissions},
		{"cert tampered", func(t *testing.T, dir string) { tamperPEM(t, pqFile(dir, PQCACertFile)) }, hybrid.ErrBadSignature},
		{"CRL tampered", func(t *testing.T, dir string) { tamperPEM(t, pqFile(dir, PQCRLFile)) }, hybrid.ErrBadSignature},
		{"key of another CA", func(t *testing.T, dir string) {
			clock := pqNow
			_, other := newPQCA(t, &clock)
			b, err := os.ReadFile(pqFile(other, PQCAKeyFile))
			must(t, err)
			must(t, os.WriteFile(pqFile(dir, PQCAKeyFile), b, 0o600))
		}, ErrKeyMismatch},
		{"node pair as CA", func(t *testing.T, dir string) {
			ca, err := LoadPQCA(dir, Options{Now: func() time.Time { return pqNow }})
			must(t, err)
			p := issueNode(t, ca, "A")
			must(t, os.Rename(p.CertFile, pqFile(dir, PQCACertFile)))
			must(t, os.Rename(p.KeyFile, pqFile(dir, PQCAKeyFile)))
		}, ErrBadCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := pqNow
			_, dir := newPQCA(t, &clock)
			tt.spoil(t, dir)
			_, err := InitPQCAWithOptions(dir, "", Options{Now: func() time.Time { return clock }})
			if !errors.Is(err, tt.want) {
				t.Errorf("InitPQCA = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		clock := pqNow
		_, dir := newPQCA(t, &clock)
		later := func() time.Time { return pqNow.Add(DefaultCAValidity + time.Hour) }
		if _, err := InitPQCAWithOptions(dir, "", Options{Now: later}); !errors.Is(err, hybrid.ErrExpired) {
			t.Errorf("InitPQCA after expiry = %v, want ErrExpired", err)
		}
	})
}

func TestIssueNode(t *testing.T) {
	clock := pqNow
	ca, dir := newPQCA(t, &clock)
	v, err := ca.Verifier()
	must(t, err)
	for _, tt := range []struct{ node, alg, wantAlg string }{
		{"A", "", hybrid.MLDSA65},
		{"B", hybrid.MLDSA44, hybrid.MLDSA44},
		{"node-C.1", hybrid.MLDSA87, hybrid.MLDSA87},
	} {
		t.Run(tt.node, func(t *testing.T) {
			p, err := ca.IssueNode(tt.node, tt.alg)
			if err != nil {
				t.Fatal(err)
			}
			caFile, crlFile, certFile, keyFile := PQNodeFiles(dir, tt.node)
			if p.CertFile != certFile || p.KeyFile != keyFile || !p.Issued || p.Archived != "" ||
				filepath.Base(certFile) != tt.node+"-mldsa.pem" || filepath.Base(keyFile) != tt.node+"-mldsa-key.pem" {
				t.Errorf("IssueNode(%s) = %+v, want new files %s, %s", tt.node, p, certFile, keyFile)
			}
			checkModes(t, map[string]fs.FileMode{p.KeyFile: 0o600, p.CertFile: 0o644})
			c, err := v.VerifyCert(encodedCert(t, p.CertFile), clock)
			if err != nil {
				t.Fatalf("Verifier.VerifyCert(%s) = %v", tt.node, err)
			}
			got := []any{c.Subject, c.Issuer, c.Alg, c.Serial, c.NotAfter.Sub(c.NotBefore)}
			want := []any{tt.node, PQCAName, tt.wantAlg, p.Serial, DefaultValidity + clockSkew}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("certificate of %s (-want +got):\n%s", tt.node, diff)
			}
			id, err := loadPQIdentity(caFile, crlFile, certFile, keyFile, clock)
			if err != nil {
				t.Fatalf("LoadPQIdentity(%s) = %v", tt.node, err)
			}
			defer id.Wipe()
			if id.Node != tt.node || id.Certificate.Serial != p.Serial || id.Key.Algorithm() != tt.wantAlg {
				t.Errorf("identity = node %q serial %d alg %s", id.Node, id.Certificate.Serial, id.Key.Algorithm())
			}
			checkSigns(t, id, v)
		})
	}
}

// checkSigns signs an offer with the identity and checks it with v.
func checkSigns(t *testing.T, id *PQIdentity, v *hybrid.Verifier) {
	t.Helper()
	o, dk, err := hybrid.NewOffer(hybrid.OfferParams{Stream: "s1", Source: "S", Dest: qkd.NodeID(id.Node),
		Expires: pqNow.Add(time.Minute), Key: id.Key, Cert: id.Cert})
	if err != nil {
		t.Fatalf("NewOffer(signed by %s) = %v", id.Node, err)
	}
	dk.Wipe()
	if err := hybrid.VerifyOffer(v, o, pqNow); err != nil {
		t.Errorf("VerifyOffer(signed by %s) = %v", id.Node, err)
	}
}

func TestIssueNodeReissues(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(t *testing.T, ca *PQCA, p PQPair)
		alg   string
		later time.Duration
	}{
		{"key deleted", func(t *testing.T, _ *PQCA, p PQPair) { must(t, os.Remove(p.KeyFile)) }, "", 0},
		{"key garbage", func(t *testing.T, _ *PQCA, p PQPair) { must(t, os.WriteFile(p.KeyFile, []byte("junk"), 0o600)) }, "", 0},
		{"key readable by others", func(t *testing.T, _ *PQCA, p PQPair) { must(t, os.Chmod(p.KeyFile, 0o644)) }, "", 0},
		{"cert tampered", func(t *testing.T, _ *PQCA, p PQPair) { tamperPEM(t, p.CertFile) }, "", 0},
		{"revoked", func(t *testing.T, ca *PQCA, p PQPair) { must(t, ca.Revoke("A", p.Serial)) }, "", 0},
		{"other algorithm", func(*testing.T, *PQCA, PQPair) {}, hybrid.MLDSA87, 0},
		{"close to expiry", func(*testing.T, *PQCA, PQPair) {}, "", DefaultValidity - DefaultRenewBefore + time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := pqNow
			ca, dir := newPQCA(t, &clock)
			first := issueNode(t, ca, "A")
			tt.spoil(t, ca, first)
			clock = clock.Add(tt.later)
			p, err := ca.IssueNode("A", tt.alg)
			if err != nil || !p.Issued || p.Serial == first.Serial {
				t.Fatalf("IssueNode after %s = serial %d, issued %v, %v; want a new certificate", tt.name, p.Serial, p.Issued, err)
			}
			caFile, crlFile, certFile, keyFile := PQNodeFiles(dir, "A")
			id, err := loadPQIdentity(caFile, crlFile, certFile, keyFile, clock)
			if err != nil {
				t.Fatalf("LoadPQIdentity after reissue = %v", err)
			}
			id.Wipe()
			checkModes(t, map[string]fs.FileMode{p.KeyFile: 0o600})
		})
	}
}

func TestOtherCARefused(t *testing.T) {
	clock := pqNow
	ca1, dir1 := newPQCA(t, &clock)
	ca2, dir2 := newPQCA(t, &clock)
	issueNode(t, ca1, "A")
	foreign := issueNode(t, ca2, "A")
	v, err := ca1.Verifier()
	must(t, err)
	if _, err := v.VerifyCert(encodedCert(t, foreign.CertFile), clock); !errors.Is(err, hybrid.ErrBadSignature) {
		t.Errorf("CA 1's Verifier.VerifyCert(CA 2's certificate) = %v, want ErrBadSignature", err)
	}
	caFile, crlFile, _, _ := PQNodeFiles(dir1, "A")
	_, _, certFile, keyFile := PQNodeFiles(dir2, "A")
	if _, err := loadPQIdentity(caFile, crlFile, certFile, keyFile, clock); !errors.Is(err, hybrid.ErrBadSignature) {
		t.Errorf("LoadPQIdentity(CA 1, pair of CA 2) = %v, want ErrBadSignature", err)
	}
	// CA 2's list is not CA 1's.
	_, crl2, _, _ := PQNodeFiles(dir2, "A")
	_, _, certFile, keyFile = PQNodeFiles(dir1, "A")
	if _, err := loadPQIdentity(caFile, crl2, certFile, keyFile, clock); !errors.Is(err, hybrid.ErrBadSignature) {
		t.Errorf("LoadPQIdentity(CA 1, CRL of CA 2) = %v, want ErrBadSignature", err)
	}
}

func TestRotateAndRevoke(t *testing.T) {
	clock := pqNow
	ca, dir := newPQCA(t, &clock)
	old := issueNode(t, ca, "A")
	oldEnc := encodedCert(t, old.CertFile)
	oldPEM, err := os.ReadFile(old.CertFile)
	must(t, err)

	p, err := ca.RotateNode("A", "")
	if err != nil {
		t.Fatalf("RotateNode(A) = %v", err)
	}
	if !p.Issued || p.Serial == old.Serial || p.CertFile != old.CertFile {
		t.Errorf("RotateNode(A) = %+v, want a new serial (old %d) in %s", p, old.Serial, old.CertFile)
	}
	archived, err := os.ReadFile(p.Archived)
	if err != nil || !bytes.Equal(archived, oldPEM) || filepath.Base(p.Archived) != "A-mldsa.pem."+strconv.FormatUint(old.Serial, 10) {
		t.Errorf("archive %s: %v, same as old certificate %v", p.Archived, err, bytes.Equal(archived, oldPEM))
	}
	v, err := ca.Verifier()
	must(t, err)
	if _, err := v.VerifyCert(oldEnc, clock); err != nil {
		t.Errorf("old certificate before revocation: VerifyCert = %v, want valid", err)
	}

	must(t, ca.Revoke("A", old.Serial))
	must(t, ca.Revoke("A", old.Serial)) // already revoked: no new list
	l, err := ca.RevocationList()
	must(t, err)
	if diff := cmp.Diff([]hybrid.RevokedEntry{{Subject: "A", Serial: old.Serial}}, l.Revoked); diff != "" || l.Number != 2 {
		t.Errorf("CRL number %d, entries (-want +got):\n%s", l.Number, diff)
	}
	checkModes(t, map[string]fs.FileMode{ca.CRLFile(): 0o644})
	must(t, v.SetRevocationList(l))
	if _, err := v.VerifyCert(oldEnc, clock); !errors.Is(err, hybrid.ErrRevoked) {
		t.Errorf("old certificate after revocation: VerifyCert = %v, want ErrRevoked", err)
	}
	if _, err := v.VerifyCert(encodedCert(t, p.CertFile), clock); err != nil {
		t.Errorf("new certificate after revoking the old: VerifyCert = %v", err)
	}
	caFile, crlFile, certFile, keyFile := PQNodeFiles(dir, "A")
	id, err := loadPQIdentity(caFile, crlFile, certFile, keyFile, clock)
	if err != nil || id.Certificate.Serial != p.Serial {
		t.Fatalf("LoadPQIdentity after rotation = %v", err)
	}
	id.Wipe()

	// Revoking the current certificate: the node cannot load it, and
	// IssueNode issues a new one.
	must(t, ca.Revoke("A", p.Serial))
	if _, err := loadPQIdentity(caFile, crlFile, certFile, keyFile, clock); !errors.Is(err, hybrid.ErrRevoked) {
		t.Errorf("LoadPQIdentity of a revoked certificate = %v, want ErrRevoked", err)
	}
	if next := issueNode(t, ca, "A"); !next.Issued || next.Serial == p.Serial || next.Serial == old.Serial {
		t.Errorf("IssueNode after revocation = %+v, want a new serial", next)
	}
	if l, err := ca.RevocationList(); err != nil || l.Number != 3 {
		t.Errorf("RevocationList() after two revocations = %+v, %v; want number 3", l, err)
	}
}

func TestRotateSerialsUnique(t *testing.T) {
	clock := pqNow
	ca, dir := newPQCA(t, &clock)
	seen := map[uint64]bool{issueNode(t, ca, "A").Serial: true}
	for range 5 {
		p, err := ca.RotateNode("A", "")
		if err != nil {
			t.Fatal(err)
		}
		if seen[p.Serial] || p.Serial < 2 || p.Serial >= 1<<63 {
			t.Fatalf("RotateNode serial %d: repeated or out of [2, 2^63)", p.Serial)
		}
		seen[p.Serial] = true
	}
	archives, _ := filepath.Glob(filepath.Join(dir, PQDir, "A-mldsa.pem.*"))
	if len(archives) != 5 {
		t.Errorf("%d archived certificates after 5 rotations, want 5", len(archives))
	}

	// A random source that repeats a used serial, then a revoked one: both skipped.
	used := issueNode(t, ca, "A").Serial
	must(t, ca.Revoke("A", 7))
	ca.opts.Rand = io.MultiReader(serialBytes(used), serialBytes(7), serialBytes(1), serialBytes(0), serialBytes(42))
	crl, err := ca.RevocationList()
	must(t, err)
	if n, err := ca.newPQSerial("A", crl); err != nil || n != 42 {
		t.Errorf("newPQSerial after used %d, revoked 7, CA's 1 and 0 = %d, %v; want 42", used, n, err)
	}
	stuck := make([]io.Reader, maxSerialDraws)
	for i := range stuck {
		stuck[i] = serialBytes(used)
	}
	ca.opts.Rand = io.MultiReader(stuck...)
	if _, err := ca.newPQSerial("A", crl); err == nil {
		t.Error("newPQSerial with a stuck random source succeeded")
	}
}

// serialBytes is the random input newPQSerial turns into n.
func serialBytes(n uint64) io.Reader {
	return bytes.NewReader(binary.BigEndian.AppendUint64(nil, n<<1))
}

func TestRevokeConcurrent(t *testing.T) {
	clock := pqNow
	ca, _ := newPQCA(t, &clock)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := ca.Revoke("A", uint64(100+i)); err != nil {
				t.Errorf("Revoke(A, %d) = %v", 100+i, err)
			}
		})
	}
	wg.Wait()
	l, err := ca.RevocationList()
	if err != nil {
		t.Fatal(err)
	}
	if l.Number != 9 || len(l.Revoked) != 8 {
		t.Errorf("after 8 concurrent revocations: list number %d with %d entries, want 9 with 8", l.Number, len(l.Revoked))
	}
}

func TestPQBadNames(t *testing.T) {
	clock := pqNow
	ca, dir := newPQCA(t, &clock)
	for _, name := range []string{"", "ca", "qkms-ca", "x-key", "../evil", "a/b", ".hidden", "-x", "with space"} {
		if _, err := ca.IssueNode(name, ""); !errors.Is(err, ErrBadName) {
			t.Errorf("IssueNode(%q) = %v, want ErrBadName", name, err)
		}
		if err := ca.Revoke(name, 2); !errors.Is(err, ErrBadName) {
			t.Errorf("Revoke(%q) = %v, want ErrBadName", name, err)
		}
	}
	if err := ca.Revoke("A", 0); err == nil {
		t.Error("Revoke(A, 0) succeeded")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, PQDir))
	if len(entries) != 3 {
		t.Errorf("pq directory has %d entries after bad names, want the CA's 3", len(entries))
	}
}

func TestPQWiped(t *testing.T) {
	clock := pqNow
	ca, _ := newPQCA(t, &clock)
	ca.Wipe()
	if _, err := ca.IssueNode("A", ""); !errors.Is(err, hybrid.ErrWiped) {
		t.Errorf("IssueNode after Wipe = %v, want ErrWiped", err)
	}
	if err := ca.Revoke("A", 2); !errors.Is(err, hybrid.ErrWiped) {
		t.Errorf("Revoke after Wipe = %v, want ErrWiped", err)
	}
}

// tamperPEM flips a bit of the last byte of the PEM block in path: in a
// certificate or list, a byte of the signature; in a key, of the seed.
func tamperPEM(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	block.Bytes[len(block.Bytes)-1] ^= 0x01
	st, err := os.Stat(path)
	must(t, err)
	must(t, os.WriteFile(path, pem.EncodeToMemory(block), st.Mode().Perm()))
}
