package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
)

// defaultHosts are the subject alternative names of a server certificate
// issued without hosts: every qkms endpoint of a local network is loopback.
var defaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Pair is an issued (or kept) certificate and its key on disk.
type Pair struct {
	CertFile string // NAME.pem
	KeyFile  string // NAME-key.pem, mode 0600
	Cert     *x509.Certificate
	// Issued is true if a new pair was written, false if a valid existing
	// pair was kept.
	Issued bool
}

// IssueServer issues name.pem / name-key.pem: CN = name, server and client
// authentication (a node is a TLS server and a client of its peers), SANs =
// hosts (IP literals become IP SANs, the rest DNS names), or localhost,
// 127.0.0.1 and ::1 if hosts is empty.
func (ca *CA) IssueServer(name string, hosts []string) (Pair, error) {
	if len(hosts) == 0 {
		hosts = defaultHosts
	}
	spec := leafSpec{
		cn:    name,
		usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		hosts: hosts,
	}
	return ca.issue(spec)
}

// IssueClient issues cn.pem / cn-key.pem for TLS client authentication with
// subject CN = cn: an SAE ID, or "operator".
func (ca *CA) IssueClient(cn string) (Pair, error) {
	return ca.issue(leafSpec{cn: cn, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// leafSpec is what a leaf certificate must say.
type leafSpec struct {
	cn    string
	usage []x509.ExtKeyUsage
	hosts []string
}

func (ca *CA) issue(spec leafSpec) (Pair, error) {
	if err := checkName(spec.cn); err != nil {
		return Pair{}, err
	}
	p := Pair{CertFile: ca.path(spec.cn + ".pem"), KeyFile: ca.path(spec.cn + "-key.pem")}
	if cert, ok := ca.keep(p, spec); ok {
		p.Cert = cert
		return p, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("pki: generating key for %s: %w", spec.cn, err)
	}
	tmpl, err := ca.template(spec)
	if err != nil {
		return Pair{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return Pair{}, fmt.Errorf("pki: issuing %s: %w", spec.cn, err)
	}
	if err := writePair(p.CertFile, p.KeyFile, der, key); err != nil {
		return Pair{}, err
	}
	p.Cert, err = x509.ParseCertificate(der)
	p.Issued = true
	return p, err
}

func (ca *CA) template(spec leafSpec) (*x509.Certificate, error) {
	serial, err := newSerial(ca.opts.Rand)
	if err != nil {
		return nil, err
	}
	now := ca.opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.cn},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(ca.opts.Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           spec.usage,
		BasicConstraintsValid: true,
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	for _, h := range spec.hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl, nil
}

// keep reports whether the pair on disk can be kept: readable, key 0600 and
// matching, chains to this CA for the wanted usages, right CN, covers every
// wanted host, and does not expire within RenewBefore.
func (ca *CA) keep(p Pair, spec leafSpec) (*x509.Certificate, bool) {
	cert, _, err := readPair(p.CertFile, p.KeyFile)
	if err != nil || cert.Subject.CommonName != spec.cn {
		return nil, false
	}
	now := ca.opts.Now()
	if now.Add(ca.opts.RenewBefore).After(cert.NotAfter) {
		return nil, false
	}
	for _, u := range spec.usage {
		vo := x509.VerifyOptions{Roots: ca.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}
		if _, err := cert.Verify(vo); err != nil {
			return nil, false
		}
	}
	for _, h := range spec.hosts {
		if cert.VerifyHostname(h) != nil {
			return nil, false
		}
	}
	return cert, true
}

// checkName accepts names that are safe as file names and as a CN: letters,
// digits, '_', '-', '.', not starting with '.' or '-', at most 64 bytes
// (X.509 ub-common-name), and not colliding with the CA's or another
// pair's files.
func checkName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadName, name, why) }
	switch {
	case name == "" || len(name) > 64:
		return bad("must be 1 to 64 bytes")
	case name[0] == '.' || name[0] == '-':
		return bad("must not start with '.' or '-'")
	case name == "ca" || name == "ca-key":
		return bad("reserved for the CA")
	case strings.HasSuffix(name, "-key"):
		return bad("must not end in -key")
	}
	for _, c := range name {
		ok := c == '_' || c == '-' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !ok {
			return bad("only letters, digits, '_', '-' and '.' are allowed")
		}
	}
	return nil
}
