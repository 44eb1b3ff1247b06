package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/kmsproto"
)

func TestRoundTrip(t *testing.T) {
	s := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
	for _, network := range transports {
		c := dial(t, network, s.addr[network], ClientOptions{})
		for _, size := range []int{100, 64 << 10} {
			for i, typ := range kmsproto.Types {
				t.Run(fmt.Sprintf("%s/%d/%s", network, size, typ), func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					want := pattern(size, byte(i))
					got, err := c.Call(ctx, typ, want)
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("Call(%s, %d bytes) = %d bytes, %v; want the payload echoed", typ, size, len(got), err)
					}
				})
				if size > 1000 && i > 0 {
					break // one big payload per transport is enough
				}
			}
		}
	}
}

// TestMaxPayload sends the largest payload each way over TCP (over UDP it
// would take ~8k block round trips).
func TestMaxPayload(t *testing.T) {
	s := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
	c := dial(t, "tcp", s.addr["tcp"], ClientOptions{})
	want := pattern(MaxPayload, 9)
	got, err := c.Call(context.Background(), kmsproto.ForwardKeys, want)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Call(%d bytes) = %d bytes, %v", len(want), len(got), err)
	}
}

func TestErrorMapping(t *testing.T) {
	s := startServer(t, behaviourHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
	tests := []struct {
		payload string
		code    codes.Code
		want    error
	}{
		{"unauthenticated", codes.Unauthorized, ErrUnauthenticated},
		{"bad", codes.BadRequest, ErrBadRequest},
		{"malformed", codes.BadRequest, ErrBadRequest},
		{"toolarge", codes.RequestEntityTooLarge, ErrTooLarge},
		{"unavailable", codes.ServiceUnavailable, ErrUnavailable},
		{"internal", codes.InternalServerError, ErrInternal},
		{"other", codes.InternalServerError, ErrInternal},
		{"panic", codes.InternalServerError, ErrInternal},
	}
	for _, network := range transports {
		c := dial(t, network, s.addr[network], ClientOptions{})
		for _, tt := range tests {
			t.Run(network+"/"+tt.payload, func(t *testing.T) {
				_, err := c.Call(context.Background(), kmsproto.NewKeyBatch, []byte(tt.payload))
				var se *StatusError
				if !errors.As(err, &se) || se.Code != tt.code || !errors.Is(err, tt.want) {
					t.Fatalf("Call(%q) = %v; want status %v matching %v", tt.payload, err, tt.code, tt.want)
				}
				if errors.Is(err, ErrNoReply) || errors.Is(err, ErrNotSent) {
					t.Errorf("Call(%q) = %v; a status answer is neither ErrNoReply nor ErrNotSent", tt.payload, err)
				}
			})
		}
	}
}

func TestCodeTable(t *testing.T) {
	for _, e := range codeTable {
		if got := codeOf(fmt.Errorf("context: %w", e.err)); got != e.code {
			t.Errorf("codeOf(%v) = %v, want %v", e.err, got, e.code)
		}
		if e.back && !errors.Is(&StatusError{Code: e.code}, e.err) {
			t.Errorf("StatusError{%v} does not match %v", e.code, e.err)
		}
	}
	if got := codeOf(nil); got != codes.Changed {
		t.Errorf("codeOf(nil) = %v, want %v", got, codes.Changed)
	}
	if got := codeOf(errors.New("x")); got != codes.InternalServerError {
		t.Errorf("codeOf(other) = %v, want %v", got, codes.InternalServerError)
	}
	for _, c := range []codes.Code{codes.NotFound, codes.MethodNotAllowed, codes.GatewayTimeout} {
		if err := (&StatusError{Code: c}).Unwrap(); err != nil {
			t.Errorf("StatusError{%v}.Unwrap() = %v, want nil", c, err)
		}
	}
}

// rawConn is the part of a go-coap client connection the protocol tests use.
type rawConn interface {
	NewPostRequest(ctx context.Context, path string, cf message.MediaType, payload io.ReadSeeker, opts ...message.Option) (*pool.Message, error)
	NewGetRequest(ctx context.Context, path string, opts ...message.Option) (*pool.Message, error)
	Do(req *pool.Message) (*pool.Message, error)
	Close() error
}

func dialRaw(t *testing.T, network, addr string) rawConn {
	t.Helper()
	var (
		c   rawConn
		err error
	)
	if network == "udp" {
		c, err = coapx.DialUDP(context.Background(), addr, nil)
	} else {
		c, err = coapx.DialTCP(context.Background(), addr, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestServerRejects checks the transport-level answers, sent before or
// without the Handler.
func TestServerRejects(t *testing.T) {
	s := startServer(t, behaviourHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
	cbor := []byte{0x82, 0x41, 0x00, 0x50} // any bytes: the handler echoes
	post := func(path string, cf message.MediaType, body []byte) func(context.Context, rawConn) (*pool.Message, error) {
		return func(ctx context.Context, c rawConn) (*pool.Message, error) {
			var r io.ReadSeeker
			if body != nil {
				r = bytes.NewReader(body)
			}
			return c.NewPostRequest(ctx, path, cf, r)
		}
	}
	tests := []struct {
		name     string
		req      func(context.Context, rawConn) (*pool.Message, error)
		code     codes.Code
		wantBody bool
		slowUDP  bool // ~4k block round trips: skipped over UDP with -short
	}{
		{"ok", post(Path(kmsproto.GetStatus), message.AppCBOR, cbor), codes.Changed, true, false},
		{"json", post(Path(kmsproto.GetStatus), message.AppJSON, cbor), codes.UnsupportedMediaType, false, false},
		{"octet stream", post(Path(kmsproto.GetStatus), message.AppOctets, cbor), codes.UnsupportedMediaType, false, false},
		{"no content format", post(Path(kmsproto.GetStatus), message.AppCBOR, nil), codes.UnsupportedMediaType, false, false},
		{"empty", post(Path(kmsproto.GetStatus), message.AppCBOR, []byte{}), codes.BadRequest, false, false},
		{"unauthenticated has no body", post(Path(kmsproto.NewApp), message.AppCBOR, []byte("unauthenticated")), codes.Unauthorized, false, false},
		{"unknown type", post("/kms/v1/nope", message.AppCBOR, cbor), codes.NotFound, false, false},
		{"oversize", post(Path(kmsproto.ForwardKeys), message.AppCBOR, make([]byte, MaxPayload+1)), codes.RequestEntityTooLarge, false, true},
		{"GET", func(ctx context.Context, c rawConn) (*pool.Message, error) {
			return c.NewGetRequest(ctx, Path(kmsproto.GetStatus))
		}, codes.MethodNotAllowed, false, false},
		{"Accept json", func(ctx context.Context, c rawConn) (*pool.Message, error) {
			req, err := c.NewPostRequest(ctx, Path(kmsproto.GetStatus), message.AppCBOR, bytes.NewReader(cbor))
			if err == nil {
				req.SetAccept(message.AppJSON)
			}
			return req, err
		}, codes.NotAcceptable, false, false},
	}
	for _, network := range transports {
		c := dialRaw(t, network, s.addr[network])
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				if tt.slowUDP && network == "udp" && testing.Short() {
					t.Skip("4 MiB over UDP block-wise is slow")
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				req, err := tt.req(ctx, c)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("Do() = %v", err)
				}
				body, _ := resp.ReadBody()
				if resp.Code() != tt.code || (len(body) > 0) != tt.wantBody {
					t.Fatalf("response = %v with %d body bytes; want %v, body %v", resp.Code(), len(body), tt.code, tt.wantBody)
				}
			})
		}
	}
}

func TestWellKnownCore(t *testing.T) {
	s := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
	for _, network := range transports {
		t.Run(network, func(t *testing.T) {
			c := dialRaw(t, network, s.addr[network])
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, err := c.NewGetRequest(ctx, coapx.WellKnownCore)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := resp.ReadBody()
			if err != nil || resp.Code() != codes.Content {
				t.Fatalf("GET %s = %v, %v", coapx.WellKnownCore, resp.Code(), err)
			}
			checkLinks(t, string(body))
		})
	}
}

// checkLinks checks that a CoRE link-format document lists every resource.
func checkLinks(t *testing.T, doc string) {
	t.Helper()
	links := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(doc), ",") {
		links[l] = true
	}
	for _, typ := range kmsproto.Types {
		want := fmt.Sprintf(`<%s>;rt="qkms.kms";if="%s";ct=60`, Path(typ), typ)
		if !links[want] {
			t.Errorf("link format %q lacks %s", doc, want)
		}
	}
	if n := len(kmsproto.Types); n != 11 || len(links) != n {
		t.Errorf("link format lists %d resources, kmsproto.Types has %d; want 11", len(links), n)
	}
}

func TestRestart(t *testing.T) {
	for _, network := range transports {
		t.Run(network, func(t *testing.T) {
			s := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
			addr := s.addr[network]
			c := dial(t, network, addr, ClientOptions{})
			call := func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_, err := c.Call(ctx, kmsproto.GetStatus, []byte("ping"))
				return err
			}
			if err := call(); err != nil {
				t.Fatalf("Call before restart = %v", err)
			}
			s.stop()
			// While the peer is down a call fails without claiming a reply.
			err := call()
			if !errors.Is(err, ErrNotSent) && !errors.Is(err, ErrNoReply) {
				t.Fatalf("Call while down = %v, want ErrNotSent or ErrNoReply", err)
			}
			t.Logf("Call while down = %v", err)
			other := "127.0.0.1:0"
			if network == "udp" {
				startServer(t, echoHandler, nil, addr, other)
			} else {
				startServer(t, echoHandler, nil, other, addr)
			}
			eventually(t, 10*time.Second, "Call after restart", call)
		})
	}
}

// TestRestartUnnoticed restarts the server between two calls, without a
// call while it is down.
func TestRestartUnnoticed(t *testing.T) {
	for _, network := range transports {
		t.Run(network, func(t *testing.T) {
			s := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
			addr := s.addr[network]
			c := dial(t, network, addr, ClientOptions{})
			if _, err := c.Call(context.Background(), kmsproto.GetStatus, []byte("a")); err != nil {
				t.Fatal(err)
			}
			s.stop()
			if network == "udp" {
				startServer(t, echoHandler, nil, addr, "127.0.0.1:0")
			} else {
				startServer(t, echoHandler, nil, "127.0.0.1:0", addr)
			}
			eventually(t, 10*time.Second, "Call after restart", func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_, err := c.Call(ctx, kmsproto.GetStatus, []byte("b"))
				return err
			})
		})
	}
}

func TestConcurrentCalls(t *testing.T) {
	s := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
	for _, network := range transports {
		t.Run(network, func(t *testing.T) {
			for _, inFlight := range []int{0, 8} {
				c := dial(t, network, s.addr[network], ClientOptions{MaxInFlight: inFlight})
				var wg sync.WaitGroup
				errs := make(chan error, 16)
				for g := range 16 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range 20 {
							want := pattern(50+g*100+i, byte(g))
							got, err := c.Call(context.Background(), kmsproto.Types[g%len(kmsproto.Types)], want)
							if err != nil || !bytes.Equal(got, want) {
								errs <- fmt.Errorf("goroutine %d call %d = %d bytes, %v", g, i, len(got), err)
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Errorf("MaxInFlight %d: %v", inFlight, err)
				}
			}
		})
	}
}

func TestClientLocalErrors(t *testing.T) {
	s := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
	for _, network := range transports {
		c := dial(t, network, s.addr[network], ClientOptions{})
		ctx := context.Background()
		tests := []struct {
			name string
			call func() error
			want []error
		}{
			{"unknown type", func() error { _, err := c.Call(ctx, "nope", []byte("x")); return err }, []error{ErrNotSent}},
			{"too large", func() error { _, err := c.Call(ctx, kmsproto.ForwardKeys, make([]byte, MaxPayload+1)); return err }, []error{ErrNotSent, ErrTooLarge}},
			{"after close", func() error {
				if err := c.Close(); err != nil {
					return fmt.Errorf("Close() = %w", err)
				}
				_, err := c.Call(ctx, kmsproto.GetStatus, []byte("x"))
				return err
			}, []error{ErrNotSent}},
		}
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				err := tt.call()
				for _, want := range tt.want {
					if !errors.Is(err, want) {
						t.Errorf("error = %v, want %v", err, want)
					}
				}
			})
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close() = %v", err)
		}
	}
}

func TestDialErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, "sctp", "127.0.0.1:1", ClientOptions{}); err == nil {
		t.Error("Dial(sctp) = nil error")
	}
	l := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
	addr := l.addr["tcp"]
	l.stop()
	if _, err := Dial(ctx, "tcp", addr, ClientOptions{}); err == nil {
		t.Error("Dial(tcp, closed port) = nil error")
	}
}

func TestCallTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := func(ctx context.Context, _ kmsproto.Type, p []byte) ([]byte, error) {
		if string(p) == "slow" {
			<-release
		}
		return p, nil
	}
	s := startServer(t, slow, nil, "127.0.0.1:0", "127.0.0.1:0")
	t.Cleanup(func() { close(release) }) // runs before the server stops
	for _, network := range transports {
		t.Run(network, func(t *testing.T) {
			c := dial(t, network, s.addr[network], ClientOptions{CallTimeout: 200 * time.Millisecond})
			_, err := c.Call(context.Background(), kmsproto.MergeKeys, []byte("slow"))
			if !errors.Is(err, ErrNoReply) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Call(slow) = %v, want ErrNoReply and DeadlineExceeded", err)
			}
		})
	}
}

func TestUDPRotate(t *testing.T) {
	var (
		mu      sync.Mutex
		remotes = map[string]bool{}
	)
	h := func(ctx context.Context, _ kmsproto.Type, p []byte) ([]byte, error) {
		a, ok := RemoteAddr(ctx)
		if !ok {
			return nil, errors.New("no remote address")
		}
		mu.Lock()
		remotes[a.String()] = true
		mu.Unlock()
		return p, nil
	}
	s := startServer(t, h, nil, "127.0.0.1:0", "127.0.0.1:0")
	c := dial(t, "udp", s.addr["udp"], ClientOptions{UDPRotate: 10})
	for i := range 50 {
		want := pattern(10+i*60, byte(i)) // up to 3 KiB: block-wise too
		got, err := c.Call(context.Background(), kmsproto.SplitKey, want)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("call %d = %d bytes, %v", i, len(got), err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(remotes) < 5 {
		t.Errorf("the server saw %d client endpoints, want several (one per %d message IDs)", len(remotes), 10)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.conns) > 1 {
		t.Errorf("client holds %d connections after rotating, want at most 1", len(c.conns))
	}
}

func TestNoPayloadInLogs(t *testing.T) {
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const marker = "SECRET-MARKER-7f3a"
	h := func(_ context.Context, _ kmsproto.Type, p []byte) ([]byte, error) {
		return nil, fmt.Errorf("rejected: %w", ErrUnauthenticated)
	}
	s := startServer(t, h, log, "127.0.0.1:0", "127.0.0.1:0")
	for _, network := range transports {
		c := dial(t, network, s.addr[network], ClientOptions{Log: log})
		if _, err := c.Call(context.Background(), kmsproto.NewKeyBatch, []byte(marker)); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("%s Call = %v, want ErrUnauthenticated", network, err)
		}
	}
	out := logs.String()
	if strings.Contains(out, marker) || !strings.Contains(out, "request rejected") {
		t.Errorf("logs = %q; want the rejection logged without the payload", out)
	}
}

func TestPing(t *testing.T) {
	for _, network := range transports {
		t.Run(network, func(t *testing.T) {
			s := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
			c := dial(t, network, s.addr[network], ClientOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.Ping(ctx); err != nil {
				t.Fatalf("Ping() = %v", err)
			}
			s.stop()
			eventually(t, 10*time.Second, "Ping to a stopped server fails", func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				defer cancel()
				err := c.Ping(ctx)
				if errors.Is(err, ErrNotSent) || errors.Is(err, ErrNoReply) {
					return nil
				}
				return fmt.Errorf("Ping() = %v, want ErrNotSent or ErrNoReply", err)
			})
		})
	}
}
