package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/kmsproto"
)

var transports = []string{"udp", "tcp"}

// testServer serves a Handler on loopback UDP and TCP.
type testServer struct {
	srv  *coapx.Server
	pc   *net.UDPConn
	l    net.Listener
	addr map[string]string // network → address
}

// startServer serves h on udpAddr and tcpAddr ("127.0.0.1:0" for any port).
func startServer(tb testing.TB, h Handler, log *slog.Logger, udpAddr, tcpAddr string) *testServer {
	tb.Helper()
	r := coapx.NewRouter(nil)
	if err := Register(r, h, log); err != nil {
		tb.Fatalf("Register() = %v", err)
	}
	ua, err := net.ResolveUDPAddr("udp", udpAddr)
	if err != nil {
		tb.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		pc.Close()
		tb.Fatal(err)
	}
	s := &testServer{
		srv: coapx.NewServer(r.Mux(), nil),
		pc:  pc,
		l:   l,
		addr: map[string]string{
			"udp": pc.LocalAddr().String(),
			"tcp": l.Addr().String(),
		},
	}
	go func() { _ = s.srv.ServeUDP(pc) }()
	go func() { _ = s.srv.ServeTCP(l) }()
	tb.Cleanup(s.stop)
	return s
}

// stop shuts the server down and frees its ports; idempotent.
func (s *testServer) stop() {
	s.srv.Shutdown()
	s.pc.Close()
	s.l.Close()
}

func dial(tb testing.TB, network, addr string, opts ClientOptions) *Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, network, addr, opts)
	if err != nil {
		tb.Fatalf("Dial(%s, %s) = %v", network, addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Payloads that make behaviourHandler fail in a given way.
var behaviours = map[string]error{
	"unauthenticated": fmt.Errorf("mac mismatch on link L: %w", ErrUnauthenticated),
	"bad":             fmt.Errorf("seq out of window: %w", ErrBadRequest),
	"malformed":       fmt.Errorf("header: %w", kmsproto.ErrMalformed),
	"toolarge":        ErrTooLarge,
	"unavailable":     fmt.Errorf("zeroised: %w", ErrUnavailable),
	"internal":        fmt.Errorf("store: %w", ErrInternal),
	"other":           errors.New("disk on fire"),
}

// behaviourHandler echoes its payload unless the payload names a behaviour.
func behaviourHandler(_ context.Context, _ kmsproto.Type, payload []byte) ([]byte, error) {
	if err, ok := behaviours[string(payload)]; ok {
		return nil, err
	}
	if string(payload) == "panic" {
		panic("handler bug")
	}
	return payload, nil
}

func echoHandler(_ context.Context, _ kmsproto.Type, payload []byte) ([]byte, error) {
	return payload, nil
}

// pattern returns n deterministic bytes distinct per seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// eventually polls f until it succeeds or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
