package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/qkms/qkms/internal/hybrid"
	"github.com/qkms/qkms/internal/secret"
)

// maxPQFile bounds what is read from a PQ certificate, key or list file.
const maxPQFile = 16 << 20

// writePQPair writes the key (0600) first, then the certificate (0644),
// each atomically. A crash in between leaves a pair that does not match,
// which the next IssueNode replaces.
func writePQPair(certPath, keyPath string, cert *hybrid.Certificate, key *hybrid.PrivateKey) error {
	certPEM, err := cert.EncodePEM()
	if err != nil {
		return fmt.Errorf("pki: encoding %s: %w", filepath.Base(certPath), err)
	}
	keyPEM, err := hybrid.EncodePrivateKeyPEM(key)
	if err != nil {
		return fmt.Errorf("pki: encoding %s: %w", filepath.Base(keyPath), err)
	}
	err = writeFileAtomic(keyPath, keyPEM.Expose(), 0o600)
	keyPEM.Wipe()
	if err != nil {
		return err
	}
	return writeFileAtomic(certPath, certPEM, 0o644)
}

// readPQPair reads a certificate and its key and checks that they match.
// It does not verify the certificate.
func readPQPair(certPath, keyPath string) (*hybrid.Certificate, *hybrid.PrivateKey, error) {
	cert, err := ReadPQCertificate(certPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := readPQKey(keyPath)
	if err != nil {
		return nil, nil, err
	}
	if key.Algorithm() != cert.Alg || !bytes.Equal(key.Public(), cert.PublicKey) {
		key.Wipe()
		return nil, nil, fmt.Errorf("%w: %s is not the key of %s", ErrKeyMismatch, filepath.Base(keyPath), filepath.Base(certPath))
	}
	return cert, key, nil
}

// readPQCert reads and parses (but does not verify) a PQ certificate.
func ReadPQCertificate(path string) (*hybrid.Certificate, error) {
	b, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	c, err := hybrid.ParseCertificatePEM(b)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return c, nil
}

// readPQKey reads a PQ private key, refusing a file that group or others
// can access (the mode is read from the open file, not the path).
func readPQKey(path string) (*hybrid.PrivateKey, error) {
	b, err := readSecretFile(path, maxPQFile)
	if errors.Is(err, ErrKeyPermissions) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("pki: reading %s: %w", path, err)
	}
	defer secret.Wipe(b)
	k, err := hybrid.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return k, nil
}

// ReadPQRevocationList reads and parses a crl.pem. It does not verify the
// signature: hybrid.NewVerifier and Verifier.SetRevocationList do.
func ReadPQRevocationList(path string) (*hybrid.RevocationList, error) {
	b, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	l, err := hybrid.ParseRevocationListPEM(b)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return l, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPQFile))
	if err != nil {
		return nil, fmt.Errorf("pki: reading %s: %w", path, err)
	}
	return b, nil
}
