package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names of the CA inside its directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// Defaults applied by InitCA to zero Options fields.
const (
	DefaultCommonName  = "qkms CA"
	DefaultValidity    = 365 * 24 * time.Hour
	DefaultCAValidity  = 10 * 365 * 24 * time.Hour
	DefaultRenewBefore = 30 * 24 * time.Hour
)

// clockSkew backdates NotBefore so that hosts with slightly slow clocks
// accept a fresh certificate.
const clockSkew = 5 * time.Minute

// Errors.
var (
	// ErrBadCA: the directory holds a CA that cannot be used (half of the
	// pair, a key that does not match, not a CA, expired). It is never
	// replaced automatically: that would orphan every certificate it issued.
	ErrBadCA = errors.New("pki: unusable CA")
	// ErrKeyPermissions: a private key file is readable by group or others.
	ErrKeyPermissions = errors.New("pki: private key file is accessible to others")
	// ErrBadName: a certificate name that cannot be a file name.
	ErrBadName = errors.New("pki: invalid certificate name")
)

// Options tune InitCA. The zero value is ready to use.
type Options struct {
	// CommonName of a newly created CA. Default DefaultCommonName.
	CommonName string
	// Validity of issued certificates. Default DefaultValidity (1 year);
	// never beyond the CA's own expiry.
	Validity time.Duration
	// CAValidity of a newly created CA. Default DefaultCAValidity (10 years).
	CAValidity time.Duration
	// RenewBefore: an existing certificate that expires within this window
	// is reissued instead of kept. Default DefaultRenewBefore (30 days).
	RenewBefore time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Rand is the source of serial numbers. Default crypto/rand. (Since Go
	// 1.26 key generation always uses crypto/rand.)
	Rand io.Reader
}

func (o Options) withDefaults() Options {
	if o.CommonName == "" {
		o.CommonName = DefaultCommonName
	}
	if o.Validity <= 0 {
		o.Validity = DefaultValidity
	}
	if o.CAValidity <= 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.RenewBefore <= 0 {
		o.RenewBefore = DefaultRenewBefore
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return o
}

// CA is a loaded certificate authority that issues into its directory.
type CA struct {
	dir  string
	opts Options
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

// InitCA loads the CA in dir (ca.pem, ca-key.pem) or, if neither file
// exists, creates the directory (0700) and a new self-signed P-256 CA.
func InitCA(dir string, opts Options) (*CA, error) {
	opts = opts.withDefaults()
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	ca := &CA{dir: dir, opts: opts}
	certPath, keyPath := ca.path(CACertFile), ca.path(CAKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	var err error
	switch {
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		err = ca.create(certPath, keyPath)
	default:
		err = ca.load(certPath, keyPath)
	}
	if err != nil {
		return nil, err
	}
	ca.pool = x509.NewCertPool()
	ca.pool.AddCert(ca.cert)
	return ca, nil
}

// Dir returns the directory the CA issues into.
func (ca *CA) Dir() string { return ca.dir }

// Cert returns the CA certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// CertFile returns the path of ca.pem.
func (ca *CA) CertFile() string { return ca.path(CACertFile) }

func (ca *CA) path(name string) string { return filepath.Join(ca.dir, name) }

func (ca *CA) create(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generating CA key: %w", err)
	}
	serial, err := newSerial(ca.opts.Rand)
	if err != nil {
		return err
	}
	now := ca.opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: ca.opts.CommonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(ca.opts.CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("pki: creating CA certificate: %w", err)
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return err
	}
	ca.cert, err = x509.ParseCertificate(der)
	ca.key = key
	return err
}

func (ca *CA) load(certPath, keyPath string) error {
	cert, key, err := readPair(certPath, keyPath)
	if errors.Is(err, ErrKeyPermissions) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w in %s: %w", ErrBadCA, ca.dir, err)
	}
	now := ca.opts.Now()
	switch {
	case !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0:
		err = errors.New("ca.pem is not a CA certificate")
	case now.After(cert.NotAfter):
		err = fmt.Errorf("CA expired on %s", cert.NotAfter.Format(time.DateOnly))
	case cert.CheckSignatureFrom(cert) != nil:
		err = errors.New("ca.pem is not self-signed")
	}
	if err != nil {
		return fmt.Errorf("%w in %s: %w", ErrBadCA, ca.dir, err)
	}
	ca.cert, ca.key = cert, key
	return nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial(r io.Reader) (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(r, limit)
		if err != nil {
			return nil, fmt.Errorf("pki: serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
