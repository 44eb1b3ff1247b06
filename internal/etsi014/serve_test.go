package etsi014_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/etsi014"
	"github.com/qkms/qkms/internal/etsi014/etsi014test"
)

// serve starts Serve on a loopback listener and returns the server, the
// listener's address and a channel with Serve's result.
func serve(t *testing.T, ctx context.Context, p *testPKI) (*etsi014.Server, net.Addr, <-chan error) {
	t.Helper()
	s := etsi014.New(etsi014.Options{
		KMS:       etsi014test.New(),
		TLSConfig: p.serverConfig(t, tls.RequireAndVerifyClientCert),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	return s, ln.Addr(), done
}

func waitServe(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestServeShutdown(t *testing.T) {
	p := newTestPKI(t)
	s, addr, done := serve(t, context.Background(), p)
	c := p.client(t, saeA)
	resp, err := c.Get("https://" + addr.String() + statusPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("GET status = %d %s TLS %x, want 200 HTTP/1.1 TLS 1.3", resp.StatusCode, resp.Proto, resp.TLS.Version)
	}
	if got := s.Addr(); got == nil || got.String() != addr.String() {
		t.Errorf("Addr() = %v, want %v", got, addr)
	}
	for range 2 {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
	}
	waitServe(t, done)
	c.CloseIdleConnections()
	if _, err := c.Get("https://" + addr.String() + statusPath); err == nil {
		t.Error("GET after Shutdown succeeded")
	}
}

func TestServeContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, _, done := serve(t, ctx, newTestPKI(t))
	cancel()
	waitServe(t, done)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown() after Serve returned = %v", err)
	}
}

func TestShutdownBeforeServe(t *testing.T) {
	p := newTestPKI(t)
	s := etsi014.New(etsi014.Options{KMS: etsi014test.New(), TLSConfig: p.serverConfig(t, tls.RequireAndVerifyClientCert)})
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), ln); err != nil {
		t.Errorf("Serve() after Shutdown = %v, want nil", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open after Serve returned")
	}
}

func TestServeNeedsTLS(t *testing.T) {
	s := etsi014.New(etsi014.Options{KMS: etsi014test.New()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), ln); err == nil {
		t.Error("Serve() without TLSConfig = nil, want an error")
	}
}

// TestResumedSessionKeepsCaller checks that a TLS 1.3 resumed session still
// names the caller (the server restores the verified chains).
func TestResumedSessionKeepsCaller(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
	c := e.pki.client(t, saeA)
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	tr.DisableKeepAlives = true
	resumed := false
	for range 3 {
		resp, err := c.Get(e.ts.URL + statusPath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET status (resumed %v) = %d, want 200", resp.TLS.DidResume, resp.StatusCode)
		}
		resumed = resumed || resp.TLS.DidResume
	}
	if !resumed {
		t.Fatal("no TLS session was resumed")
	}
	for _, c := range e.fake.Calls() {
		if c.Caller != saeA {
			t.Errorf("call %+v: caller %q, want %q", c, c.Caller, saeA)
		}
	}
}
