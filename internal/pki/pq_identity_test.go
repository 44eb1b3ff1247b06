package pki

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/hybrid"
)

func TestLoadPQIdentityRefuses(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(t *testing.T, dir string, a, b PQPair) (certFile, keyFile string)
		later time.Duration
		want  error
	}{
		{"key of another node", func(t *testing.T, _ string, a, b PQPair) (string, string) { return a.CertFile, b.KeyFile }, 0, ErrKeyMismatch},
		{"key of another algorithm", func(t *testing.T, _ string, a, b PQPair) (string, string) { return b.CertFile, a.KeyFile }, 0, ErrKeyMismatch},
		{"key readable by group", func(t *testing.T, _ string, a, _ PQPair) (string, string) {
			must(t, os.Chmod(a.KeyFile, 0o640))
			return a.CertFile, a.KeyFile
		}, 0, ErrKeyPermissions},
		{"key readable by others", func(t *testing.T, _ string, a, _ PQPair) (string, string) {
			must(t, os.Chmod(a.KeyFile, 0o604))
			return a.CertFile, a.KeyFile
		}, 0, ErrKeyPermissions},
		{"key PEM tampered", func(t *testing.T, _ string, a, _ PQPair) (string, string) {
			tamperPEM(t, a.KeyFile) // a byte of the seed
			return a.CertFile, a.KeyFile
		}, 0, ErrKeyMismatch},
		{"cert PEM tampered", func(t *testing.T, _ string, a, _ PQPair) (string, string) {
			tamperPEM(t, a.CertFile)
			return a.CertFile, a.KeyFile
		}, 0, hybrid.ErrBadSignature},
		{"cert PEM garbage", func(t *testing.T, _ string, a, _ PQPair) (string, string) {
			must(t, os.WriteFile(a.CertFile, []byte("-----BEGIN QKMS ML-DSA CERTIFICATE-----\nAAAA\n-----END QKMS ML-DSA CERTIFICATE-----\n"), 0o644))
			return a.CertFile, a.KeyFile
		}, 0, hybrid.ErrMalformed},
		{"cert is the CA's", func(t *testing.T, dir string, a, _ PQPair) (string, string) {
			return filepath.Join(dir, PQDir, PQCACertFile), a.KeyFile
		}, 0, ErrKeyMismatch},
		{"expired", func(t *testing.T, _ string, a, _ PQPair) (string, string) { return a.CertFile, a.KeyFile },
			DefaultValidity + time.Hour, hybrid.ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := pqNow
			ca, dir := newPQCA(t, &clock)
			a := issueNode(t, ca, "A")
			b, err := ca.IssueNode("B", hybrid.MLDSA44)
			must(t, err)
			certFile, keyFile := tt.spoil(t, dir, a, b)
			caFile, crlFile, _, _ := PQNodeFiles(dir, "A")
			id, err := loadPQIdentity(caFile, crlFile, certFile, keyFile, clock.Add(tt.later))
			if err == nil {
				id.Wipe()
				t.Fatalf("LoadPQIdentity(%s) succeeded", tt.name)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("LoadPQIdentity(%s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
}

func TestLoadPQIdentityWithoutCRL(t *testing.T) {
	clock := pqNow
	ca, dir := newPQCA(t, &clock)
	a := issueNode(t, ca, "A")
	must(t, ca.Revoke("A", a.Serial))
	caFile, _, certFile, keyFile := PQNodeFiles(dir, "A")
	id, err := loadPQIdentity(caFile, "", certFile, keyFile, clock)
	if err != nil {
		t.Fatalf("LoadPQIdentity without a CRL = %v", err)
	}
	id.Wipe()
	if _, err := loadPQIdentity(caFile, crlFile(dir), certFile, keyFile, clock); !errors.Is(err, hybrid.ErrRevoked) {
		t.Errorf("LoadPQIdentity with the CRL = %v, want ErrRevoked", err)
	}
}

func TestLoadPQIdentityNow(t *testing.T) {
	dir := t.TempDir()
	ca, err := InitPQCA(dir, "")
	must(t, err)
	defer ca.Wipe()
	issueNode(t, ca, "A")
	id, err := LoadPQIdentity(PQNodeFiles(dir, "A"))
	if err != nil {
		t.Fatalf("LoadPQIdentity(A) = %v", err)
	}
	id.Wipe()
}

func crlFile(dir string) string {
	_, crl, _, _ := PQNodeFiles(dir, "")
	return crl
}
