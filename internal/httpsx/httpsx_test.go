package httpsx

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestServeStopsOnContextAndShutdown: Serve answers over TLS, returns nil
// when its context ends, and Shutdown before Serve makes Serve return at once.
func TestServeStopsOnContextAndShutdown(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil) // only for its test certificate
	ts.StartTLS()
	cfg := ts.TLS.Clone()
	client := ts.Client()
	ts.Close()

	r := NewRunner("test", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln, cfg) }()
	resp, err := client.Get("https://" + ln.Addr().String())
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	resp.Body.Close()
	if r.Addr() == nil || r.Addr().String() != ln.Addr().String() {
		t.Errorf("Addr() = %v, want %v", r.Addr(), ln.Addr())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(ShutdownGrace + 5*time.Second):
		t.Fatal("Serve did not return after its context ended")
	}

	r2 := NewRunner("test", http.NotFoundHandler(), nil)
	if err := r2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Serve(context.Background(), ln2, &tls.Config{Certificates: cfg.Certificates}); err != nil {
		t.Fatalf("Serve after Shutdown = %v, want nil", err)
	}
}
