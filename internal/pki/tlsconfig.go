package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
)

// curvePreferences lists the key exchanges qkms offers, hybrid
// post-quantum first (TLS 1.3 only; TLS 1.2 falls back to the others).
var curvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}

// ServerTLSConfig returns a server configuration that presents certFile /
// keyFile and requires a client certificate that chains to caFile.
func ServerTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: loading server certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        pool,
		CurvePreferences: slices.Clone(curvePreferences),
	}, nil
}

// ClientTLSConfig returns a client configuration that trusts only caFile,
// checks the server's certificate against serverName and, unless certFile
// and keyFile are both empty, presents that client certificate.
func ClientTLSConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		RootCAs:          pool,
		ServerName:       serverName,
		CurvePreferences: slices.Clone(curvePreferences),
	}
	if certFile == "" && keyFile == "" {
		return cfg, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: loading client certificate: %w", err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, nil
}

// PeerCN returns the subject CN of the peer's verified leaf certificate. It
// is false if the connection state is nil, the peer's certificate was not
// verified, or the CN is empty.
func PeerCN(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := cs.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}

func loadPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("pki: reading CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("pki: " + caFile + ": no CA certificate")
	}
	return pool, nil
}
