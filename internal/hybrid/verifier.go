package hybrid

import (
	"bytes"
	"crypto/sha3"
	"fmt"
	"sync"
	"time"
)

// maxCachedCerts bounds the Verifier's cache; when full it starts afresh.
const maxCachedCerts = 4096

// Verifier checks node certificates against the network's CA key and
// revocation list. Certificates whose signature verified are cached by the
// SHA3-256 of their encoding, so a certificate that arrives with every
// message costs one hash; validity period and revocation are checked on
// every call. A Verifier is safe for concurrent use.
type Verifier struct {
	ca *PublicKey

	mu    sync.RWMutex
	crl   *RevocationList             // guarded by mu; nil: nothing revoked
	cache map[[hashSize]byte]*checked // guarded by mu
}

// checked is a certificate whose CA signature verified, with its parsed key.
type checked struct {
	cert *Certificate
	pub  *PublicKey
}

// NewVerifier returns a Verifier trusting the CA public key caPub of
// parameter set caAlg, with an optional revocation list (verified here).
func NewVerifier(caPub []byte, caAlg string, crl *RevocationList) (*Verifier, error) {
	s, err := SignerByName(caAlg)
	if err != nil {
		return nil, err
	}
	ca, err := s.ParsePublicKey(caPub)
	if err != nil {
		return nil, err
	}
	v := &Verifier{ca: ca, cache: make(map[[hashSize]byte]*checked)}
	if crl != nil {
		if err := v.SetRevocationList(crl); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// SetRevocationList verifies crl and makes it the list in use. A list with
// a lower Number than the current one is refused (ErrStaleRevocationList).
func (v *Verifier) SetRevocationList(crl *RevocationList) error {
	if err := crl.verifyWith(v.ca); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.crl != nil && crl.Number < v.crl.Number {
		return fmt.Errorf("%w: number %d, current %d", ErrStaleRevocationList, crl.Number, v.crl.Number)
	}
	v.crl = crl
	return nil
}

// VerifyCert decodes an encoded certificate and checks that the CA signed
// it, that now is within its validity period and that it is not revoked.
// The returned certificate is the caller's to keep.
func (v *Verifier) VerifyCert(enc []byte, now time.Time) (*Certificate, error) {
	c, err := v.verify(enc, now)
	if err != nil {
		return nil, err
	}
	cp := *c.cert
	cp.PublicKey = bytes.Clone(cp.PublicKey)
	cp.Signature = bytes.Clone(cp.Signature)
	return &cp, nil
}

// verify is VerifyCert without the copy, for this package's own checks.
func (v *Verifier) verify(enc []byte, now time.Time) (*checked, error) {
	if len(enc) > MaxCertBytes {
		return nil, fmt.Errorf("%w: certificate of %d bytes", ErrMalformed, len(enc))
	}
	h := sha3.Sum256(enc)
	v.mu.RLock()
	c, ok := v.cache[h]
	crl := v.crl
	v.mu.RUnlock()
	if !ok {
		var err error
		if c, err = v.check(enc); err != nil {
			return nil, err
		}
		v.mu.Lock()
		if len(v.cache) >= maxCachedCerts {
			clear(v.cache)
		}
		v.cache[h] = c
		v.mu.Unlock()
	}
	if err := c.cert.checkTime(now); err != nil {
		return nil, err
	}
	if crl.IsRevoked(c.cert.Subject, c.cert.Serial) {
		return nil, fmt.Errorf("%w: %q serial %d", ErrRevoked, c.cert.Subject, c.cert.Serial)
	}
	return c, nil
}

// check parses enc and verifies the CA signature.
func (v *Verifier) check(enc []byte) (*checked, error) {
	cert, err := ParseCertificate(enc)
	if err != nil {
		return nil, err
	}
	pub, err := cert.verifySignature(v.ca)
	if err != nil {
		return nil, err
	}
	return &checked{cert: cert, pub: pub}, nil
}

// verifySigned checks the certificate enc for node subject and the
// signature sig by its key over msg with context.
func (v *Verifier) verifySigned(enc []byte, subject string, now time.Time, msg []byte, context string, sig []byte) (*checked, error) {
	c, err := v.verify(enc, now)
	if err != nil {
		return nil, err
	}
	if c.cert.Subject != subject {
		return nil, fmt.Errorf("%w: certificate of %q for %q", ErrWrongSubject, c.cert.Subject, truncate(subject))
	}
	if !c.pub.Verify(msg, context, sig) {
		return nil, fmt.Errorf("%w: %s by %q", ErrBadSignature, context, c.cert.Subject)
	}
	return c, nil
}

// truncate bounds untrusted text put into an error.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
