package tcp004_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/etsi004/tcp004"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
)

// call is one call the fake service saw.
type call struct {
	Op     string
	Caller qkd.SAEID
	Req    any
}

// fakeService records calls and answers with the hooks' results, or with
// success and a fresh key.
type fakeService struct {
	open   func(ctx context.Context, req etsi004.OpenRequest) (etsi004.OpenResponse, error)
	getKey func(ctx context.Context, req etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error)
	close  func(ctx context.Context, req etsi004.CloseRequest) (etsi004.CloseResponse, error)

	mu    sync.Mutex
	calls []call   // guarded by mu
	keys  [][]byte // every key handed out; guarded by mu
}

func (f *fakeService) record(op string, caller qkd.SAEID, req any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{op, caller, req})
}

func (f *fakeService) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeService) OpenConnect(ctx context.Context, caller qkd.SAEID, req etsi004.OpenRequest) (etsi004.OpenResponse, error) {
	f.record("open", caller, req)
	if f.open != nil {
		return f.open(ctx, req)
	}
	return etsi004.OpenResponse{Status: etsi004.StatusPeerNotConnected, QoS: req.QoS, KeyStreamID: ksid1}, nil
}

func (f *fakeService) GetKey(ctx context.Context, caller qkd.SAEID, req etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error) {
	f.record("get_key", caller, req)
	if f.getKey != nil {
		return f.getKey(ctx, req)
	}
	key := bytes.Repeat([]byte{byte(req.Index) | 0x80}, 32)
	f.mu.Lock()
	f.keys = append(f.keys, key)
	f.mu.Unlock()
	return etsi004.GetKeyResponse{Index: req.Index, Key: key, Metadata: []byte(`{"hops":0}`)}, nil
}

func (f *fakeService) Close(ctx context.Context, caller qkd.SAEID, req etsi004.CloseRequest) (etsi004.CloseResponse, error) {
	f.record("close", caller, req)
	if f.close != nil {
		return f.close(ctx, req)
	}
	return etsi004.CloseResponse{}, nil
}

var (
	ksid1 = etsi004.KSID{1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16}
	qos1  = etsi004.QoS{KeyChunkSize: 32, MaxBps: 8000, Timeout: 1000, TTL: 60, MetadataMimetype: etsi004.MimeJSON}
)

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// env is a running server with a CA that issues client certificates.
type env struct {
	t    *testing.T
	svc  *fakeService
	srv  *tcp004.Server
	ca   *pki.CA
	addr string
	logs *lockedBuffer
	stop context.CancelFunc
	done chan error // Serve's result
}

func newEnv(t *testing.T, svc *fakeService, opts tcp004.Options) *env {
	t.Helper()
	ca, err := pki.InitCA(t.TempDir(), pki.Options{})
	must(t, err)
	sp, err := ca.IssueServer("kms-a", nil)
	must(t, err)
	opts.TLS, err = pki.ServerTLSConfig(ca.CertFile(), sp.CertFile, sp.KeyFile)
	must(t, err)
	logs := &lockedBuffer{}
	opts.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Service = svc
	srv, err := tcp004.New(opts)
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, svc: svc, srv: srv, ca: ca, addr: ln.Addr().String(), logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() { e.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-e.done; err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// clientTLS returns a client configuration presenting a certificate with
// CN cn, or none if cn is empty.
func (e *env) clientTLS(cn string) *tls.Config {
	e.t.Helper()
	certFile, keyFile := "", ""
	if cn != "" {
		p, err := e.ca.IssueClient(cn)
		must(e.t, err)
		certFile, keyFile = p.CertFile, p.KeyFile
	}
	cfg, err := pki.ClientTLSConfig(e.ca.CertFile(), certFile, keyFile, "localhost")
	must(e.t, err)
	return cfg
}

func (e *env) dial(cn string) *tcp004.Client {
	e.t.Helper()
	c, err := tcp004.Dial(context.Background(), e.addr, e.clientTLS(cn))
	must(e.t, err)
	e.t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// dialRaw returns a bare TLS connection with a client certificate for cn.
func (e *env) dialRaw(cn string) *tls.Conn {
	e.t.Helper()
	c, err := tls.Dial("tcp", e.addr, e.clientTLS(cn))
	must(e.t, err)
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}
