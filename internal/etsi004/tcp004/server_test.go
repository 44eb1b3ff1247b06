package tcp004_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/etsi004/tcp004"
	"github.com/qkms/qkms/internal/pki"
)

func TestCalls(t *testing.T) {
	svc := &fakeService{}
	e := newEnv(t, svc, tcp004.Options{})
	ctx := context.Background()
	a := e.dial("SAE_A1")
	b := e.dial("SAE_B1")

	openReq := etsi004.OpenRequest{Source: "client://SAE_A1", Destination: "sae://SAE_B1", QoS: qos1}
	open, err := a.OpenConnect(ctx, openReq)
	must(t, err)
	if want := (etsi004.OpenResponse{Status: etsi004.StatusPeerNotConnected, QoS: qos1, KeyStreamID: ksid1}); open != want {
		t.Errorf("OpenConnect = %+v, want %+v", open, want)
	}
	gkReq := etsi004.GetKeyRequest{KeyStreamID: ksid1, Index: 5, MetadataSize: 1024}
	gk, err := b.GetKey(ctx, gkReq)
	must(t, err)
	want := etsi004.GetKeyResponse{Index: 5, Key: bytes.Repeat([]byte{0x85}, 32), Metadata: []byte(`{"hops":0}`), MetadataSize: 10}
	if diff := cmp.Diff(want, gk); diff != "" {
		t.Errorf("GetKey (-want +got):\n%s", diff)
	}
	cl, err := a.Close(ctx, etsi004.CloseRequest{KeyStreamID: ksid1})
	must(t, err)
	if cl.Status != etsi004.StatusSuccessful {
		t.Errorf("Close = %+v", cl)
	}

	wantCalls := []call{
		{"open", "SAE_A1", openReq},
		{"get_key", "SAE_B1", gkReq},
		{"close", "SAE_A1", etsi004.CloseRequest{KeyStreamID: ksid1}},
	}
	if diff := cmp.Diff(wantCalls, svc.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	// A connection's requests are served in order: once b's next call has
	// reached the service, the server has written and wiped the key.
	_, err = b.Close(ctx, etsi004.CloseRequest{KeyStreamID: ksid1})
	must(t, err)
	svc.mu.Lock()
	for _, k := range svc.keys {
		if !bytes.Equal(k, make([]byte, len(k))) {
			t.Errorf("key %x handed to the server was not wiped after it was sent", k)
		}
	}
	svc.mu.Unlock()
	if keyHex := hex.EncodeToString(want.Key); strings.Contains(e.logs.String(), keyHex) || strings.Contains(e.logs.String(), "\x85\x85") {
		t.Error("the log holds key bytes")
	}
}

func TestStatusesCarried(t *testing.T) {
	counter := etsi004.QoS{KeyChunkSize: 16, MaxBps: 100, MetadataMimetype: etsi004.MimeJSON}
	svc := &fakeService{
		open: func(_ context.Context, req etsi004.OpenRequest) (etsi004.OpenResponse, error) {
			st := etsi004.Status(req.QoS.Priority)
			return etsi004.OpenResponse{Status: st, QoS: counter, KeyStreamID: req.KeyStreamID}, nil
		},
		getKey: func(_ context.Context, req etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error) {
			st := etsi004.Status(req.Index)
			return etsi004.GetKeyResponse{Status: st, Index: req.Index, MetadataSize: 77}, nil
		},
		close: func(_ context.Context, req etsi004.CloseRequest) (etsi004.CloseResponse, error) {
			return etsi004.CloseResponse{Status: etsi004.Status(req.KeyStreamID[0])}, nil
		},
	}
	e := newEnv(t, svc, tcp004.Options{})
	c := e.dial("SAE_A1")
	ctx := context.Background()
	for st := etsi004.Status(1); st <= 9; st++ {
		open, err := c.OpenConnect(ctx, etsi004.OpenRequest{Source: "a", Destination: "b", QoS: etsi004.QoS{Priority: uint32(st)}, KeyStreamID: ksid1})
		if want := (etsi004.OpenResponse{Status: st, QoS: counter, KeyStreamID: ksid1}); err != nil || open != want {
			t.Errorf("OpenConnect with status %d = %+v, %v, want %+v", st, open, err, want)
		}
		gk, err := c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: ksid1, Index: uint32(st)})
		want := etsi004.GetKeyResponse{Status: st}
		if st == etsi004.StatusMetadataTooSmall {
			want.MetadataSize = 77
		}
		if err != nil || !cmp.Equal(gk, want) {
			t.Errorf("GetKey with status %d = %+v, %v, want %+v", st, gk, err, want)
		}
		cl, err := c.Close(ctx, etsi004.CloseRequest{KeyStreamID: etsi004.KSID{byte(st)}})
		if err != nil || cl.Status != st {
			t.Errorf("Close with status %d = %+v, %v", st, cl, err)
		}
	}
}

// expectClosed reads from c until the server closes it; it fails if a
// frame arrives instead.
func expectClosed(t *testing.T, c *tls.Conn) {
	t.Helper()
	must(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	b, err := io.ReadAll(c)
	if len(b) != 0 {
		t.Errorf("got %x, want the connection closed", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("connection still open: %v", err)
	}
}

func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	tests := []struct {
		name  string
		frame string
	}{
		{"source without NUL", "01000102 00000003 616263"},
		{"short GET_KEY", "01000104 00000003 000000"},
		{"long CLOSE", "01000108 00000011 00112233445566778899aabbccddeeff 00"},
		{"response type as request", "01000109 00000004 00000000"},
		{"unknown type", "01000101 00000000"},
		{"negative type", "010001ff 00000000"},
		{"version 2.1.1", "02010108 00000010 00112233445566778899aabbccddeeff"},
		{"oversized payload", "01000102 7fffffff"},
	}
	svc := &fakeService{}
	e := newEnv(t, svc, tcp004.Options{})
	good := e.dial("SAE_B1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := e.dialRaw("SAE_A1")
			frame, err := hex.DecodeString(strings.ReplaceAll(tt.frame, " ", ""))
			must(t, err)
			_, err = raw.Write(frame)
			must(t, err)
			expectClosed(t, raw)
			if _, err := good.GetKey(context.Background(), etsi004.GetKeyRequest{KeyStreamID: ksid1}); err != nil {
				t.Errorf("GetKey on another connection: %v", err)
			}
		})
	}
	for _, c := range svc.Calls() {
		if c.Caller != "SAE_B1" {
			t.Errorf("the service saw %+v from a malformed frame", c)
		}
	}
	if n := strings.Count(e.logs.String(), "closing the connection"); n != len(tests) {
		t.Errorf("%d connections closed with a log line, want %d", n, len(tests))
	}
}

func TestServiceErrorClosesConnection(t *testing.T) {
	for _, err := range []error{etsi004.ErrBadRequest, errors.New("store down")} {
		svc := &fakeService{getKey: func(context.Context, etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error) {
			return etsi004.GetKeyResponse{Key: []byte{1}}, err
		}}
		e := newEnv(t, svc, tcp004.Options{})
		c := e.dial("SAE_A1")
		if _, got := c.GetKey(context.Background(), etsi004.GetKeyRequest{}); got == nil {
			t.Errorf("GetKey with a service error %v succeeded", err)
		}
		if _, got := c.Close(context.Background(), etsi004.CloseRequest{}); !errors.Is(got, tcp004.ErrBroken) {
			t.Errorf("Close after a broken connection = %v, want ErrBroken", got)
		}
		if !strings.Contains(e.logs.String(), err.Error()) {
			t.Errorf("the log does not say %q", err)
		}
	}
}

func TestConcurrentConnections(t *testing.T) {
	svc := &fakeService{}
	e := newEnv(t, svc, tcp004.Options{})
	const conns, calls = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, conns*calls)
	for i := range conns {
		c := e.dial("SAE_" + string(rune('A'+i)))
		wg.Go(func() {
			for j := range calls {
				r, err := c.GetKey(context.Background(), etsi004.GetKeyRequest{KeyStreamID: ksid1, Index: uint32(j)})
				if err == nil && (r.Index != uint32(j) || len(r.Key) != 32) {
					err = errors.New("wrong answer")
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(svc.Calls()); n != conns*calls {
		t.Errorf("the service saw %d calls, want %d", n, conns*calls)
	}
}

func TestSlowCallDoesNotBlockOthers(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	slow := etsi004.KSID{0xff}
	svc := &fakeService{}
	svc.getKey = func(_ context.Context, req etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error) {
		if req.KeyStreamID == slow {
			close(entered)
			<-release
			return etsi004.GetKeyResponse{Status: etsi004.StatusTimeout}, nil
		}
		return etsi004.GetKeyResponse{Status: etsi004.StatusInsufficientKey}, nil
	}
	e := newEnv(t, svc, tcp004.Options{})
	a, b := e.dial("SAE_A1"), e.dial("SAE_B1")
	slowDone := make(chan error, 1)
	go func() {
		r, err := a.GetKey(context.Background(), etsi004.GetKeyRequest{KeyStreamID: slow})
		if err == nil && r.Status != etsi004.StatusTimeout {
			err = errors.New("slow call: wrong status " + r.Status.String())
		}
		slowDone <- err
	}()
	<-entered
	r, err := b.GetKey(context.Background(), etsi004.GetKeyRequest{KeyStreamID: ksid1})
	if err != nil || r.Status != etsi004.StatusInsufficientKey {
		t.Errorf("GetKey while another connection waits = %+v, %v", r, err)
	}
	o, err := b.OpenConnect(context.Background(), etsi004.OpenRequest{Source: "x", Destination: "y"})
	if err != nil || o.Status != etsi004.StatusPeerNotConnected {
		t.Errorf("OpenConnect while another connection waits = %+v, %v", o, err)
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Error(err)
	}
}

func TestNoClientCertificateRefused(t *testing.T) {
	svc := &fakeService{}
	e := newEnv(t, svc, tcp004.Options{})
	// With TLS 1.3 the client may finish its handshake before the server
	// refuses it; the first call fails then.
	c, err := tcp004.Dial(context.Background(), e.addr, e.clientTLS(""))
	if err == nil {
		defer c.Disconnect()
		_, err = c.OpenConnect(context.Background(), etsi004.OpenRequest{Source: "a", Destination: "b"})
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if n := len(svc.Calls()); n != 0 {
		t.Errorf("the service saw %d calls", n)
	}
}

func TestOtherCAsCertificateRefused(t *testing.T) {
	svc := &fakeService{}
	e := newEnv(t, svc, tcp004.Options{})
	other, err := pki.InitCA(t.TempDir(), pki.Options{})
	must(t, err)
	p, err := other.IssueClient("SAE_A1")
	must(t, err)
	cfg, err := pki.ClientTLSConfig(e.ca.CertFile(), p.CertFile, p.KeyFile, "localhost")
	must(t, err)
	c, err := tcp004.Dial(context.Background(), e.addr, cfg)
	if err == nil {
		defer c.Disconnect()
		_, err = c.Close(context.Background(), etsi004.CloseRequest{})
	}
	if err == nil || len(svc.Calls()) != 0 {
		t.Errorf("a certificate of another CA was served: %v, %d calls", err, len(svc.Calls()))
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, &fakeService{}, tcp004.Options{IdleTimeout: 50 * time.Millisecond})
	raw := e.dialRaw("SAE_A1")
	expectClosed(t, raw)
}

func TestPartialFrameTimesOut(t *testing.T) {
	e := newEnv(t, &fakeService{}, tcp004.Options{ReadTimeout: 50 * time.Millisecond})
	raw := e.dialRaw("SAE_A1")
	_, err := raw.Write([]byte{1, 0, 1, 8, 0, 0, 0, 16, 0xaa}) // CLOSE header, 1 of 16 bytes
	must(t, err)
	expectClosed(t, raw)
}

func TestClientContext(t *testing.T) {
	entered := make(chan struct{})
	svc := &fakeService{close: func(ctx context.Context, _ etsi004.CloseRequest) (etsi004.CloseResponse, error) {
		close(entered)
		<-ctx.Done() // until the server closes hard at cleanup
		return etsi004.CloseResponse{}, ctx.Err()
	}}
	e := newEnv(t, svc, tcp004.Options{})
	c := e.dial("SAE_A1")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	if _, err := c.Close(ctx, etsi004.CloseRequest{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Close with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := c.GetKey(context.Background(), etsi004.GetKeyRequest{}); !errors.Is(err, tcp004.ErrBroken) {
		t.Errorf("GetKey after a cancelled call = %v, want ErrBroken", err)
	}
	// The service call still waits: shut down hard.
	sctx, scancel := context.WithCancel(context.Background())
	scancel()
	if err := e.srv.Shutdown(sctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown with an ended context = %v, want context.Canceled", err)
	}
}

func TestShutdownWaitsForCallInProgress(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	svc := &fakeService{}
	svc.open = func(context.Context, etsi004.OpenRequest) (etsi004.OpenResponse, error) {
		close(entered)
		<-release
		return etsi004.OpenResponse{KeyStreamID: ksid1}, nil
	}
	e := newEnv(t, svc, tcp004.Options{})
	busy, idle := e.dial("SAE_A1"), e.dial("SAE_B1")
	// The idle connection must be open (served) before Shutdown.
	_, err := idle.Close(context.Background(), etsi004.CloseRequest{})
	must(t, err)
	res := make(chan error, 1)
	go func() {
		r, err := busy.OpenConnect(context.Background(), etsi004.OpenRequest{Source: "a", Destination: "b"})
		if err == nil && r.KeyStreamID != ksid1 {
			err = errors.New("wrong answer")
		}
		res <- err
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(context.Background()) }()
	close(release)
	if err := <-res; err != nil {
		t.Errorf("call in progress during Shutdown: %v", err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := <-e.done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	e.done <- nil // for cleanup
	if _, err := idle.Close(context.Background(), etsi004.CloseRequest{}); err == nil {
		t.Error("an idle connection survived Shutdown")
	}
	if _, err := tls.Dial("tcp", e.addr, e.clientTLS("SAE_C1")); err == nil {
		t.Error("dial after Shutdown succeeded")
	}
	must(t, e.srv.Shutdown(context.Background())) // idempotent
}

func TestServeReturnsWhenContextEnds(t *testing.T) {
	e := newEnv(t, &fakeService{}, tcp004.Options{})
	c := e.dial("SAE_A1")
	_, err := c.Close(context.Background(), etsi004.CloseRequest{})
	must(t, err)
	e.stop()
	if err := <-e.done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	e.done <- nil
	if e.srv.Addr() == nil {
		t.Error("Addr = nil after Serve")
	}
}

func TestShutdownBeforeServe(t *testing.T) {
	ca, err := pki.InitCA(t.TempDir(), pki.Options{})
	must(t, err)
	sp, err := ca.IssueServer("kms-a", nil)
	must(t, err)
	cfg, err := pki.ServerTLSConfig(ca.CertFile(), sp.CertFile, sp.KeyFile)
	must(t, err)
	srv, err := tcp004.New(tcp004.Options{Service: &fakeService{}, TLS: cfg})
	must(t, err)
	must(t, srv.Shutdown(context.Background()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	if err := srv.Serve(context.Background(), ln); err != nil {
		t.Errorf("Serve after Shutdown = %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("Serve left the listener open")
	}
}

func TestNewRefuses(t *testing.T) {
	noClientAuth := &tls.Config{ClientAuth: tls.RequestClientCert}
	for _, opts := range []tcp004.Options{
		{TLS: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}},
		{Service: &fakeService{}},
		{Service: &fakeService{}, TLS: noClientAuth},
	} {
		if _, err := tcp004.New(opts); err == nil {
			t.Errorf("New(%+v) succeeded", opts)
		}
	}
}

func TestLogsNoURICredentials(t *testing.T) {
	e := newEnv(t, &fakeService{}, tcp004.Options{})
	c := e.dial("SAE_A1")
	_, err := c.OpenConnect(context.Background(), etsi004.OpenRequest{
		Source: "client://SAE_A1/?token=S3CR3T", Destination: "sae://tok:P4SS@SAE_B1"})
	must(t, err)
	_, err = c.Close(context.Background(), etsi004.CloseRequest{}) // the OPEN_CONNECT is logged by now
	must(t, err)
	logs := e.logs.String()
	if strings.Contains(logs, "S3CR3T") || strings.Contains(logs, "P4SS") {
		t.Errorf("the log holds URI credentials:\n%s", logs)
	}
	if !strings.Contains(logs, "source=SAE_A1") {
		t.Errorf("the log does not name the source application:\n%s", logs)
	}
}
