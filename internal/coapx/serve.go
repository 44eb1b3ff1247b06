package coapx

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/options/config"
	"github.com/plgd-dev/go-coap/v3/tcp"
	tcpclient "github.com/plgd-dev/go-coap/v3/tcp/client"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// NoPool is a message pool that never recycles: go-coap does not wipe pooled
// buffers, and qkms messages may carry key bytes.
func NoPool() *pool.Pool { return pool.New(0, 0) }

// errorsTo routes go-coap's errors (printed to stdout by default) to slog.
func errorsTo(log *slog.Logger) func(error) {
	return func(err error) {
		if log != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
			log.Debug("coap", "err", err)
		}
	}
}

// Server serves one handler on any number of UDP and TCP listeners.
//
// Requests are handled concurrently, also those arriving on one connection:
// go-coap would otherwise handle a connection's requests one at a time, and
// a handler that waits for another node (a relay step waiting for the rest
// of its route) would hold up every later message from the same peer — the
// head-of-line deadlock known from other KMS simulators. At most
// maxConcurrent handlers run at once per Server.
type Server struct {
	h   mux.Handler
	log *slog.Logger
	sem chan struct{}

	mu    sync.Mutex
	stops []func() // guarded by mu
	wg    sync.WaitGroup
	done  bool // guarded by mu
}

// NewServer returns a server for h.
func NewServer(h mux.Handler, log *slog.Logger) *Server {
	return &Server{h: h, log: log, sem: make(chan struct{}, maxConcurrent)}
}

// maxConcurrent bounds the handlers running at once per Server.
const maxConcurrent = 512

// concurrently runs f on its own goroutine once a handler slot is free.
func (s *Server) concurrently(f func()) {
	s.sem <- struct{}{}
	go func() {
		defer func() { <-s.sem }()
		f()
	}()
}

// ServeUDP serves CoAP over UDP (RFC 7252) on pc until Shutdown.
func (s *Server) ServeUDP(pc *net.UDPConn) error {
	srv := udp.NewServer(
		options.WithMux(s.h),
		options.WithErrors(errorsTo(s.log)),
		options.WithMessagePool(NoPool()),
		options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second),
		options.WithProcessReceivedMessageFunc(func(req *pool.Message, cc *udpclient.Conn, h config.HandlerFunc[*udpclient.Conn]) {
			s.concurrently(func() { cc.ProcessReceivedMessageWithHandler(req, h) })
		}),
	)
	if !s.track(srv.Stop) {
		return net.ErrClosed
	}
	defer s.wg.Done()
	err := srv.Serve(coapnet.NewUDPConn("udp", pc, coapnet.WithErrors(errorsTo(s.log))))
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// ServeTCP serves CoAP over TCP (RFC 8323) on l until Shutdown.
func (s *Server) ServeTCP(l net.Listener) error {
	srv := tcp.NewServer(
		options.WithMux(s.h),
		options.WithErrors(errorsTo(s.log)),
		options.WithMessagePool(NoPool()),
		options.WithBlockwise(true, blockwise.SZXBERT, 30*time.Second),
		options.WithMaxMessageSize(16<<20),
		options.WithProcessReceivedMessageFunc(func(req *pool.Message, cc *tcpclient.Conn, h config.HandlerFunc[*tcpclient.Conn]) {
			s.concurrently(func() { cc.ProcessReceivedMessageWithHandler(req, h) })
		}),
	)
	if !s.track(srv.Stop) {
		return net.ErrClosed
	}
	defer s.wg.Done()
	err := srv.Serve(&listener{l: l})
	if errors.Is(err, net.ErrClosed) || errors.Is(err, coapnet.ErrListenerIsClosed) {
		return nil
	}
	return err
}

func (s *Server) track(stop func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	s.stops = append(s.stops, stop)
	s.wg.Add(1)
	return true
}

// Shutdown stops every server started with this Server; idempotent.
func (s *Server) Shutdown() {
	s.mu.Lock()
	stops := s.stops
	s.stops, s.done = nil, true
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	s.wg.Wait()
}

// listener adapts a net.Listener to go-coap's AcceptWithContext.
type listener struct{ l net.Listener }

func (l *listener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return l.l.Accept()
}

func (l *listener) Close() error { return l.l.Close() }

// DialUDP connects a CoAP-over-UDP client. ctx bounds the connection's
// lifetime, not just the dial. extra options (parallel request limits,
// transmission parameters, a dialer) are applied after the shared ones.
func DialUDP(ctx context.Context, addr string, log *slog.Logger, extra ...udp.Option) (*udpclient.Conn, error) {
	opts := []udp.Option{
		options.WithContext(ctx),
		options.WithErrors(errorsTo(log)),
		options.WithMessagePool(NoPool()),
		options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second),
	}
	return udp.Dial(addr, append(opts, extra...)...)
}

// DialTCP connects a CoAP-over-TCP client. ctx bounds the connection's
// lifetime, not just the dial. extra options are applied after the shared
// ones.
func DialTCP(ctx context.Context, addr string, log *slog.Logger, extra ...tcp.Option) (*tcpclient.Conn, error) {
	opts := []tcp.Option{
		options.WithContext(ctx),
		options.WithErrors(errorsTo(log)),
		options.WithMessagePool(NoPool()),
		options.WithBlockwise(true, blockwise.SZXBERT, 30*time.Second),
		options.WithMaxMessageSize(16 << 20),
	}
	return tcp.Dial(addr, append(opts, extra...)...)
}
