package tcp004

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
)

// Defaults of Options.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultReadTimeout      = 30 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	// ShutdownGrace bounds the graceful shutdown Serve does when its
	// context ends.
	ShutdownGrace = 5 * time.Second
)

// Options configure a Server.
type Options struct {
	Service etsi004.Service // required
	// TLS is the server configuration; it must require and verify client
	// certificates (pki.ServerTLSConfig). New raises MinVersion to TLS 1.2.
	TLS *tls.Config
	Log *slog.Logger // default: discard

	HandshakeTimeout time.Duration // TLS handshake
	IdleTimeout      time.Duration // waiting for the next request's header
	ReadTimeout      time.Duration // reading a request's payload after its header
	WriteTimeout     time.Duration // writing a response
}

// Server serves an etsi004.Service over the reference TCP/TLS framing.
type Server struct {
	svc  etsi004.Service
	tls  *tls.Config
	log  *slog.Logger
	opts Options

	base   context.Context // the service calls' context; cancelled on hard close
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection goroutines

	mu       sync.Mutex
	ln       net.Listener       // guarded by mu
	addr     net.Addr           // guarded by mu
	conns    map[*conn]struct{} // guarded by mu
	shutting bool               // guarded by mu
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Service == nil {
		return nil, errors.New("tcp004: no service")
	}
	if opts.TLS == nil || opts.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("tcp004: the TLS configuration must require and verify client certificates")
	}
	cfg := opts.TLS.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.HandshakeTimeout = orDefault(opts.HandshakeTimeout, DefaultHandshakeTimeout)
	opts.IdleTimeout = orDefault(opts.IdleTimeout, DefaultIdleTimeout)
	opts.ReadTimeout = orDefault(opts.ReadTimeout, DefaultReadTimeout)
	opts.WriteTimeout = orDefault(opts.WriteTimeout, DefaultWriteTimeout)
	base, cancel := context.WithCancel(context.Background())
	return &Server{svc: opts.Service, tls: cfg, log: opts.Log, opts: opts, base: base, cancel: cancel,
		conns: map[*conn]struct{}{}}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Serve accepts connections on ln until ctx ends (then it shuts down
// gracefully, waiting at most ShutdownGrace) or Shutdown is called; both
// return nil. It closes ln. Each connection is served by its own goroutine.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.ln, s.addr = ln, ln.Addr()
	s.mu.Unlock()
	shutdownDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shutdownDone)
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		if err := s.Shutdown(sctx); err != nil {
			s.log.Warn("etsi004 tcp: shutdown", "err", err)
		}
	})
	err := s.accept(ln)
	if !stop() {
		<-shutdownDone
	}
	return err
}

func (s *Server) accept(ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isShutting() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("etsi004 tcp: accept", "err", err, "retry", delay)
				time.Sleep(delay)
				continue
			}
			_ = ln.Close()
			return fmt.Errorf("tcp004: accept: %w", err)
		}
		delay = 0
		c := &conn{srv: s, raw: nc, tc: tls.Server(nc, s.tls)}
		if !s.track(c) {
			_ = nc.Close()
			return nil
		}
		go c.serve()
	}
}

// Addr returns the address Serve listens on, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown stops accepting connections, closes idle ones and waits for the
// requests in progress to be answered until ctx ends; then it cancels the
// service calls left, closes every connection and returns ctx's error. It
// may be called any number of times, also before Serve (which then returns
// at once).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shutting {
		s.shutting = true
		if s.ln != nil {
			_ = s.ln.Close()
		}
	}
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.raw.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *Server) isShutting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutting
}

// track registers c (and adds it to the wait group) unless the server is
// shutting down.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}
