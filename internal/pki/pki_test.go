package pki

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newCA(t *testing.T, opts Options) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := InitCA(dir, opts)
	if err != nil {
		t.Fatalf("InitCA(%s) = %v", dir, err)
	}
	return ca, dir
}

func TestInitCACreates(t *testing.T) {
	ca, dir := newCA(t, Options{})
	c := ca.Cert()
	if !c.IsCA || c.Subject.CommonName != DefaultCommonName || c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("CA cert: IsCA %v, CN %q, serial %v", c.IsCA, c.Subject.CommonName, c.SerialNumber)
	}
	if ca.CertFile() != filepath.Join(dir, CACertFile) {
		t.Errorf("CertFile() = %s", ca.CertFile())
	}
	wantModes := map[string]fs.FileMode{
		dir:                            0o700 | fs.ModeDir,
		filepath.Join(dir, CAKeyFile):  0o600,
		filepath.Join(dir, CACertFile): 0o644,
	}
	checkModes(t, wantModes)
}

func TestIssue(t *testing.T) {
	ca, dir := newCA(t, Options{})
	serverEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	clientEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tests := []struct {
		name  string
		issue func() (Pair, error)
		cn    string
		usage []x509.ExtKeyUsage
		dns   []string
		ips   []string
	}{
		{"server default hosts", func() (Pair, error) { return ca.IssueServer("node-A", nil) }, "node-A",
			serverEKU, []string{"localhost"}, []string{"127.0.0.1", "::1"}},
		{"server own hosts", func() (Pair, error) { return ca.IssueServer("node-B", []string{"kms.example", "10.0.0.7"}) }, "node-B",
			serverEKU, []string{"kms.example"}, []string{"10.0.0.7"}},
		{"SAE client", func() (Pair, error) { return ca.IssueClient("SAE_A1") }, "SAE_A1",
			clientEKU, nil, nil},
		{"operator", func() (Pair, error) { return ca.IssueClient("operator") }, "operator",
			clientEKU, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.issue()
			if err != nil {
				t.Fatal(err)
			}
			want := Pair{CertFile: filepath.Join(dir, tt.cn+".pem"), KeyFile: filepath.Join(dir, tt.cn+"-key.pem"), Issued: true}
			if p.CertFile != want.CertFile || p.KeyFile != want.KeyFile || !p.Issued {
				t.Errorf("pair = %+v, want files %s, %s, issued", p, want.CertFile, want.KeyFile)
			}
			c := p.Cert
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			got := []any{c.Subject.CommonName, c.ExtKeyUsage, c.DNSNames, ips, c.IsCA}
			if diff := cmp.Diff([]any{tt.cn, tt.usage, tt.dns, tt.ips, false}, got); diff != "" {
				t.Errorf("certificate (-want +got):\n%s", diff)
			}
			if life := c.NotAfter.Sub(c.NotBefore); life < DefaultValidity || life > DefaultValidity+time.Hour {
				t.Errorf("validity = %v, want about %v", life, DefaultValidity)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial = %v, want positive ≤ 128 bits", c.SerialNumber)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: ca.pool, KeyUsages: tt.usage}); err != nil {
				t.Errorf("Verify against CA: %v", err)
			}
			checkModes(t, map[string]fs.FileMode{p.KeyFile: 0o600, p.CertFile: 0o644})
		})
	}
}

func TestIdempotent(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ca, dir := newCA(t, Options{Now: clock})
	first, err := ca.IssueServer("node-A", nil)
	if err != nil {
		t.Fatal(err)
	}
	client, _ := ca.IssueClient("SAE_A1")
	snap := snapshot(t, dir)

	ca2, err := InitCA(dir, Options{Now: clock})
	if err != nil {
		t.Fatalf("InitCA again = %v", err)
	}
	if !ca2.Cert().Equal(ca.Cert()) {
		t.Error("InitCA again made a new CA")
	}
	again, err := ca2.IssueServer("node-A", []string{"127.0.0.1"})
	if err != nil || again.Issued || !again.Cert.Equal(first.Cert) {
		t.Errorf("IssueServer again: issued %v, same cert %v, err %v; want kept", again.Issued, again.Cert.Equal(first.Cert), err)
	}
	if c, _ := ca2.IssueClient("SAE_A1"); c.Issued || !c.Cert.Equal(client.Cert) {
		t.Error("IssueClient again reissued a valid certificate")
	}
	if diff := cmp.Diff(snap, snapshot(t, dir)); diff != "" {
		t.Errorf("re-init changed files (-before +after):\n%s", diff)
	}
}

func TestReissue(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		spoil func(t *testing.T, p Pair)
		hosts []string
		later time.Duration
	}{
		{"key deleted", func(t *testing.T, p Pair) { must(t, os.Remove(p.KeyFile)) }, nil, 0},
		{"key garbage", func(t *testing.T, p Pair) { must(t, os.WriteFile(p.KeyFile, []byte("junk"), 0o600)) }, nil, 0},
		{"key readable by others", func(t *testing.T, p Pair) { must(t, os.Chmod(p.KeyFile, 0o644)) }, nil, 0},
		{"cert garbage", func(t *testing.T, p Pair) { must(t, os.WriteFile(p.CertFile, []byte("junk"), 0o644)) }, nil, 0},
		{"new host", func(*testing.T, Pair) {}, []string{"kms.example"}, 0},
		{"close to expiry", func(*testing.T, Pair) {}, nil, DefaultValidity - DefaultRenewBefore + time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := now
			ca, _ := newCA(t, Options{Now: func() time.Time { return clock }})
			first, err := ca.IssueServer("node-A", nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.spoil(t, first)
			clock = clock.Add(tt.later)
			p, err := ca.IssueServer("node-A", tt.hosts)
			if err != nil || !p.Issued || p.Cert.Equal(first.Cert) {
				t.Fatalf("IssueServer after %s: issued %v, err %v; want a new certificate", tt.name, p.Issued, err)
			}
			if _, _, err := readPair(p.CertFile, p.KeyFile); err != nil {
				t.Errorf("new pair unreadable: %v", err)
			}
			checkModes(t, map[string]fs.FileMode{p.KeyFile: 0o600})
		})
	}
}

func TestInitCARefuses(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(t *testing.T, dir string)
		want  error
	}{
		{"key missing", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, CAKeyFile))) }, ErrBadCA},
		{"cert missing", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, CACertFile))) }, ErrBadCA},
		{"key readable by others", func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, CAKeyFile), 0o640)) }, ErrKeyPermissions},
		{"key of another CA", func(t *testing.T, dir string) {
			_, other := newCA(t, Options{})
			b, err := os.ReadFile(filepath.Join(other, CAKeyFile))
			must(t, err)
			must(t, os.WriteFile(filepath.Join(dir, CAKeyFile), b, 0o600))
		}, ErrBadCA},
		{"leaf as CA", func(t *testing.T, dir string) {
			ca, err := InitCA(dir, Options{})
			must(t, err)
			p, err := ca.IssueServer("node-A", nil)
			must(t, err)
			must(t, os.Rename(p.CertFile, filepath.Join(dir, CACertFile)))
			must(t, os.Rename(p.KeyFile, filepath.Join(dir, CAKeyFile)))
		}, ErrBadCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, dir := newCA(t, Options{})
			tt.spoil(t, dir)
			if _, err := InitCA(dir, Options{}); !errors.Is(err, tt.want) {
				t.Errorf("InitCA = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		_, dir := newCA(t, Options{})
		later := func() time.Time { return time.Now().Add(DefaultCAValidity + time.Hour) }
		if _, err := InitCA(dir, Options{Now: later}); !errors.Is(err, ErrBadCA) {
			t.Errorf("InitCA after expiry = %v, want ErrBadCA", err)
		}
	})
}

func TestBadNames(t *testing.T) {
	ca, dir := newCA(t, Options{})
	for _, name := range []string{"", "ca", "ca-key", "x-key", "../evil", "a/b", `a\b`, ".hidden", "-x", "with space", "é", string(make([]byte, 65))} {
		if _, err := ca.IssueClient(name); !errors.Is(err, ErrBadName) {
			t.Errorf("IssueClient(%q) = %v, want ErrBadName", name, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory has %d entries after bad names, want the CA's 2", len(entries))
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	ca, _ := newCA(t, Options{CAValidity: 24 * time.Hour, RenewBefore: time.Hour})
	p, err := ca.IssueClient("SAE_A1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Cert.NotAfter.After(ca.Cert().NotAfter) {
		t.Errorf("leaf NotAfter %v after CA NotAfter %v", p.Cert.NotAfter, ca.Cert().NotAfter)
	}
}

func checkModes(t *testing.T, want map[string]fs.FileMode) {
	t.Helper()
	for path, mode := range want {
		st, err := os.Stat(path)
		if err != nil {
			t.Errorf("stat %s: %v", path, err)
			continue
		}
		if got := st.Mode() & (fs.ModePerm | fs.ModeDir); got != mode {
			t.Errorf("mode of %s = %v, want %v", filepath.Base(path), got, mode)
		}
	}
}

// snapshot returns the directory's file names and contents.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must(t, err)
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		must(t, err)
		out[e.Name()] = b
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
