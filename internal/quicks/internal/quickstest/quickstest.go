// Package quickstest is test support for the QUICKS packages: a PKI from
// internal/pki (CA, server and client certificates, a foreign CA), loopback
// servers over real TLS 1.3, raw HTTPS requests, and the JSON "type tree"
// that golden tests compare (member names and JSON types of an answer).
package quickstest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/quicks"

	"github.com/qkms/qkms/internal/pki"
)

// PKI is a throw-away CA in a temporary directory.
type PKI struct {
	ca *pki.CA
}

// NewPKI creates a CA (ECDSA P-256, internal/pki) in t.TempDir().
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	ca, err := pki.InitCA(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{ca: ca}
}

// ServerTLS returns a server configuration for name (SANs localhost,
// 127.0.0.1, ::1) that requires client certificates of this CA.
func (p *PKI) ServerTLS(t testing.TB, name string) *tls.Config {
	t.Helper()
	pair, err := p.ca.IssueServer(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ServerTLSConfig(p.ca.CertFile(), pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ClientTLS returns a client configuration that trusts this CA and
// presents a certificate with subject CN cn ("" for no certificate).
func (p *PKI) ClientTLS(t testing.TB, cn string) *tls.Config {
	t.Helper()
	var cert, key string
	if cn != "" {
		pair, err := p.ca.IssueClient(cn)
		if err != nil {
			t.Fatal(err)
		}
		cert, key = pair.CertFile, pair.KeyFile
	}
	cfg, err := pki.ClientTLSConfig(p.ca.CertFile(), cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ForeignClientTLS returns a client configuration that trusts this CA but
// presents a certificate (CN cn) of another CA.
func (p *PKI) ForeignClientTLS(t testing.TB, cn string) *tls.Config {
	t.Helper()
	other := NewPKI(t)
	cfg := other.ClientTLS(t, cn)
	mine := p.ClientTLS(t, "")
	cfg.RootCAs = mine.RootCAs
	return cfg
}

// HTTPClient returns an HTTPS client with cfg (TLS 1.3 only unless
// cfg.MaxVersion is set) that closes its connections at the end of the test.
func HTTPClient(t testing.TB, cfg *tls.Config) *http.Client {
	t.Helper()
	if cfg.MaxVersion == 0 {
		cfg.MinVersion = tls.VersionTLS13
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Serve runs serve on a loopback listener until the test ends and returns
// the listener's address. The listener exists before serve runs, so
// clients may connect at once (the kernel queues them).
func Serve(t testing.TB, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v, want nil", err)
		}
	})
	return ln.Addr().String()
}

// Answer is a raw HTTP answer.
type Answer struct {
	Status      int
	ContentType string
	Header      http.Header
	Body        []byte
}

// Do sends a request with an optional body (sent as application/json).
func Do(t testing.TB, c *http.Client, method, url, body string) Answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Answer{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Header: resp.Header, Body: b}
}

// TypeTree decodes a JSON document and replaces every value by the name of
// its JSON type ("string", "number", "boolean", "null"); objects keep their
// member names, arrays become a one-element list with the type tree of
// their first element (or an empty list). Comparing type trees checks the
// member names and JSON types of an answer, not its values.
func TypeTree(t testing.TB, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("answer is not JSON: %v: %q", err, data)
	}
	return typeTree(v)
}

func typeTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = typeTree(e)
		}
		return m
	case []any:
		if len(x) == 0 {
			return []any{}
		}
		return []any{typeTree(x[0])}
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "?"
}

// Keys returns the sorted member names of a JSON object.
func Keys(t testing.TB, data []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v", err)
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ServeHandler serves h over TLS with cfg on a loopback port until the test
// ends (a stand-in for a foreign QUICKS server) and returns the address.
func ServeHandler(t testing.TB, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	return Serve(t, func(ctx context.Context, ln net.Listener) error {
		srv := &http.Server{Handler: h}
		stop := context.AfterFunc(ctx, func() { srv.Close() })
		defer stop()
		err := srv.Serve(tls.NewListener(ln, cfg))
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
}

// Env is an API server on a loopback port over real TLS 1.3 and an HTTPS
// client of it.
type Env struct {
	PKI    *PKI
	Addr   string       // host:port
	Client *http.Client // as clientCN
}

// NewEnv serves with a certificate for serverName and returns the Env
// with a client whose certificate has CN clientCN.
func NewEnv(t testing.TB, serverName, clientCN string, serve func(*tls.Config) func(context.Context, net.Listener) error) *Env {
	t.Helper()
	p := NewPKI(t)
	e := &Env{PKI: p}
	e.Addr = Serve(t, serve(p.ServerTLS(t, serverName)))
	e.Client = HTTPClient(t, p.ClientTLS(t, clientCN))
	return e
}

// URL returns the https URL of path on the server.
func (e *Env) URL(path string) string { return "https://" + e.Addr + path }

// Do sends a raw request as the Env's client.
func (e *Env) Do(t testing.TB, method, path, body string) Answer {
	t.Helper()
	return Do(t, e.Client, method, e.URL(path), body)
}

// WantProblem checks an RFC 9457 answer: status, media type, the published
// error-response members, and a detail that contains detail.
func WantProblem(t testing.TB, a Answer, status int, detail string) {
	t.Helper()
	if a.Status != status || a.ContentType != quicks.MediaTypeProblem {
		t.Errorf("answer %d %q, want %d %s: %s", a.Status, a.ContentType, status, quicks.MediaTypeProblem, a.Body)
		return
	}
	want := map[string]any{"type": "string", "title": "string", "status": "number", "detail": "string"}
	if diff := cmp.Diff(want, TypeTree(t, a.Body)); diff != "" {
		t.Errorf("problem members mismatch (-want +got):\n%s", diff)
	}
	p, err := quicks.DecodeProblem(a.Body)
	if err != nil {
		t.Fatalf("DecodeProblem(%s) = %v", a.Body, err)
	}
	if p.Status != status || !strings.Contains(p.Detail, detail) {
		t.Errorf("problem = %+v, want status %d and detail containing %q", p, status, detail)
	}
}
