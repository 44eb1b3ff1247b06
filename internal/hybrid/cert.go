package hybrid

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"time"
)

// Certificates, revocation lists and their PEM block types. crypto/x509
// cannot sign or verify ML-DSA, so qkms uses its own small format (doc.go).
const (
	CertificateVersion  = 1
	PEMCertificate      = "QKMS ML-DSA CERTIFICATE"
	PEMPrivateKey       = "QKMS ML-DSA PRIVATE KEY"
	PEMRevocationList   = "QKMS ML-DSA REVOCATION LIST"
	contextCertificate  = "qkms-cert-v1"
	contextRevocations  = "qkms-crl-v1"
	contextOffer        = "qkms-offer-v1"
	contextHybridHeader = "qkms-hybrid-v1"
	contextPath         = "qkms-path-v1"
)

// Certificate binds a node's ML-DSA public key to its node ID, signed by the
// network's CA. Times have a resolution of one second.
type Certificate struct {
	Version   uint
	Serial    uint64
	Subject   string // node ID, e.g. "A"
	Issuer    string
	Alg       string // the subject key's parameter set, e.g. "ML-DSA-65"
	PublicKey []byte
	NotBefore time.Time
	NotAfter  time.Time
	Signature []byte // by the issuer, context "qkms-cert-v1"
}

// certWire is the CBOR form; Signature is left out of the signed body.
type certWire struct {
	Version   uint   `cbor:"1,keyasint"`
	Serial    uint64 `cbor:"2,keyasint"`
	Subject   string `cbor:"3,keyasint"`
	Issuer    string `cbor:"4,keyasint"`
	Alg       string `cbor:"5,keyasint"`
	PublicKey []byte `cbor:"6,keyasint"`
	NotBefore int64  `cbor:"7,keyasint"` // Unix seconds
	NotAfter  int64  `cbor:"8,keyasint"` // Unix seconds
	Signature []byte `cbor:"9,keyasint,omitempty"`
}

func (c *Certificate) wire() certWire {
	return certWire{c.Version, c.Serial, c.Subject, c.Issuer, c.Alg, c.PublicKey,
		c.NotBefore.Unix(), c.NotAfter.Unix(), c.Signature}
}

// IssueCertificate makes a certificate for subject's public key pub (of
// parameter set alg), valid from notBefore to notAfter (inclusive,
// truncated to seconds), signed by issuerKey on behalf of issuer.
func IssueCertificate(issuerKey *PrivateKey, issuer, subject, alg string, pub []byte,
	serial uint64, notBefore, notAfter time.Time) (*Certificate, error) {
	c := &Certificate{
		Version: CertificateVersion, Serial: serial, Subject: subject, Issuer: issuer, Alg: alg,
		PublicKey: bytes.Clone(pub),
		NotBefore: time.Unix(notBefore.Unix(), 0).UTC(), NotAfter: time.Unix(notAfter.Unix(), 0).UTC(),
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if _, err := c.publicKey(); err != nil {
		return nil, err
	}
	body, err := c.body()
	if err != nil {
		return nil, err
	}
	if c.Signature, err = issuerKey.Sign(body, contextCertificate); err != nil {
		return nil, err
	}
	return c, nil
}

// check enforces the structural rules (sizes, names, order of times).
func (c *Certificate) check() error {
	if c.Version != CertificateVersion {
		return fmt.Errorf("%w: certificate version %d", ErrMalformed, c.Version)
	}
	if err := checkName("certificate subject", c.Subject); err != nil {
		return err
	}
	if err := checkName("certificate issuer", c.Issuer); err != nil {
		return err
	}
	if len(c.Alg) > maxAlgName || !c.NotBefore.Before(c.NotAfter) {
		return fmt.Errorf("%w: certificate algorithm name or validity period", ErrMalformed)
	}
	if err := checkLen("certificate public key", c.PublicKey, 1, MaxKeyBytes+1024); err != nil {
		return err
	}
	return checkLen("certificate signature", c.Signature, 0, MaxSigBytes)
}

// publicKey parses the subject's key.
func (c *Certificate) publicKey() (*PublicKey, error) {
	s, err := SignerByName(c.Alg)
	if err != nil {
		return nil, err
	}
	return s.ParsePublicKey(c.PublicKey)
}

// body is the signed encoding: every field but Signature.
func (c *Certificate) body() ([]byte, error) {
	w := c.wire()
	w.Signature = nil
	return marshal(w)
}

// Marshal returns the encoding of the signed certificate.
func (c *Certificate) Marshal() ([]byte, error) {
	if len(c.Signature) == 0 {
		return nil, fmt.Errorf("%w: certificate is not signed", ErrMalformed)
	}
	return marshal(c.wire())
}

// ParseCertificate decodes an encoded certificate (strictly; see doc.go).
// It does not verify it: use Verify or a Verifier.
func ParseCertificate(b []byte) (*Certificate, error) {
	var w certWire
	if err := unmarshalStrict(b, &w, MaxCertBytes); err != nil {
		return nil, err
	}
	c := &Certificate{
		Version: w.Version, Serial: w.Serial, Subject: w.Subject, Issuer: w.Issuer, Alg: w.Alg,
		PublicKey: w.PublicKey, NotBefore: time.Unix(w.NotBefore, 0).UTC(),
		NotAfter: time.Unix(w.NotAfter, 0).UTC(), Signature: w.Signature,
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if len(c.Signature) == 0 {
		return nil, fmt.Errorf("%w: certificate is not signed", ErrMalformed)
	}
	return c, nil
}

// Verify checks that the certificate is signed by the CA key caPub (of
// parameter set caAlg), well formed and valid at now. It does not consult
// a revocation list: a Verifier does.
func (c *Certificate) Verify(caPub []byte, caAlg string, now time.Time) error {
	s, err := SignerByName(caAlg)
	if err != nil {
		return err
	}
	ca, err := s.ParsePublicKey(caPub)
	if err != nil {
		return err
	}
	if _, err := c.verifySignature(ca); err != nil {
		return err
	}
	return c.checkTime(now)
}

// verifySignature checks structure, the subject key and the CA's
// signature, and returns the parsed subject key.
func (c *Certificate) verifySignature(ca *PublicKey) (*PublicKey, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	pub, err := c.publicKey()
	if err != nil {
		return nil, err
	}
	body, err := c.body()
	if err != nil {
		return nil, err
	}
	if !ca.Verify(body, contextCertificate, c.Signature) {
		return nil, fmt.Errorf("%w: certificate of %q serial %d", ErrBadSignature, c.Subject, c.Serial)
	}
	return pub, nil
}

// checkTime: NotBefore ≤ now ≤ NotAfter.
func (c *Certificate) checkTime(now time.Time) error {
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return fmt.Errorf("%w: certificate of %q serial %d valid %s to %s", ErrExpired, c.Subject, c.Serial,
			c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// EncodePEM returns the certificate as a "QKMS ML-DSA CERTIFICATE" PEM block.
func (c *Certificate) EncodePEM() ([]byte, error) {
	b, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMCertificate, Bytes: b}), nil
}

// ParseCertificatePEM decodes a "QKMS ML-DSA CERTIFICATE" PEM block.
func ParseCertificatePEM(b []byte) (*Certificate, error) {
	der, err := decodePEM(b, PEMCertificate)
	if err != nil {
		return nil, err
	}
	return ParseCertificate(der)
}
