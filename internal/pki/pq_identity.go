package pki

import (
	"bytes"
	"fmt"
	"time"

	"github.com/qkms/qkms/internal/hybrid"
)

// PQIdentity is what a node needs to sign and verify post-quantum messages
// (docs/hybrid.md): its node ID, its certificate as it travels in messages, its
// ML-DSA key, and a Verifier of its peers' certificates. The owner calls
// Wipe when done.
type PQIdentity struct {
	// Node is the certificate's Subject, the node ID.
	Node string
	// Cert is the encoded certificate (hybrid.Certificate.Marshal, not
	// PEM): the cert argument of hybrid.SignOffer and hybrid.PathStep.Cert.
	Cert []byte
	// Certificate is Cert decoded (serial, validity period).
	Certificate *hybrid.Certificate
	// Key is the node's ML-DSA signing key.
	Key *hybrid.PrivateKey
	// Verifier trusts the CA and holds the revocation list (if any). Give
	// it a newer list with SetRevocationList.
	Verifier *hybrid.Verifier
}

// Wipe zeroes the node's private key.
func (id *PQIdentity) Wipe() { id.Key.Wipe() }

// LoadPQIdentity loads a node's PQ identity: the CA certificate caFile
// (ca-mldsa.pem, checked to be self-signed and valid), the revocation list
// crlFile ("" = none; its signature is checked), and the node's certFile
// and keyFile. The node's certificate must verify under the CA now and not
// be revoked (errors wrap hybrid.ErrBadSignature, ErrExpired, ErrRevoked);
// the key must be the certificate's (ErrKeyMismatch) and its file must not
// be accessible to group or others (ErrKeyPermissions).
func LoadPQIdentity(caFile, crlFile, certFile, keyFile string) (*PQIdentity, error) {
	return loadPQIdentity(caFile, crlFile, certFile, keyFile, time.Now())
}

func loadPQIdentity(caFile, crlFile, certFile, keyFile string, now time.Time) (*PQIdentity, error) {
	v, err := loadPQVerifier(caFile, crlFile, now)
	if err != nil {
		return nil, err
	}
	c, err := ReadPQCertificate(certFile)
	if err != nil {
		return nil, err
	}
	enc, err := c.Marshal()
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", certFile, err)
	}
	if _, err := v.VerifyCert(enc, now); err != nil {
		return nil, fmt.Errorf("pki: %s: %w", certFile, err)
	}
	key, err := readPQKey(keyFile)
	if err != nil {
		return nil, err
	}
	if key.Algorithm() != c.Alg || !bytes.Equal(key.Public(), c.PublicKey) {
		key.Wipe()
		return nil, fmt.Errorf("%w: %s is not the key of %s", ErrKeyMismatch, keyFile, certFile)
	}
	return &PQIdentity{Node: c.Subject, Cert: enc, Certificate: c, Key: key, Verifier: v}, nil
}

// loadPQVerifier reads the CA certificate and the optional list.
func loadPQVerifier(caFile, crlFile string, now time.Time) (*hybrid.Verifier, error) {
	ca, err := ReadPQCertificate(caFile)
	if err != nil {
		return nil, err
	}
	if err := checkPQCA(ca, "", now); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, caFile, err)
	}
	var crl *hybrid.RevocationList
	if crlFile != "" {
		if crl, err = ReadPQRevocationList(crlFile); err != nil {
			return nil, err
		}
	}
	v, err := hybrid.NewVerifier(ca.PublicKey, ca.Alg, crl)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", crlFile, err)
	}
	return v, nil
}
