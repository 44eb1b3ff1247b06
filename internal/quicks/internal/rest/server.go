package rest

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Timeouts of the HTTP server.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// shutdownGrace bounds the graceful shutdown Serve does when its
	// context ends.
	shutdownGrace = 5 * time.Second
)

// Server runs a handler over HTTPS: TLS 1.3, client certificates required
// and verified, HTTP/1.1.
type Server struct {
	name      string
	tlsConfig *tls.Config
	log       *slog.Logger
	srv       *http.Server

	mu   sync.Mutex
	addr net.Addr // guarded by mu
}

// NewServer returns a server of h. name prefixes errors and log lines.
func NewServer(name string, h http.Handler, cfg *tls.Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &Server{
		name:      name,
		tlsConfig: cfg,
		log:       log,
		srv: &http.Server{
			Handler:           h,
			Protocols:         &protocols,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
}

// ServerTLS returns the configuration Serve uses: a clone of cfg with
// MinVersion TLS 1.3, ClientAuth RequireAndVerifyClientCert and HTTP/1.1.
// It fails without a certificate or without client CAs.
func ServerTLS(name string, cfg *tls.Config) (*tls.Config, error) {
	if cfg == nil {
		return nil, errors.New(name + ": Options.TLSConfig is nil")
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return nil, errors.New(name + ": Options.TLSConfig has no certificate")
	}
	if cfg.ClientCAs == nil && cfg.GetConfigForClient == nil {
		return nil, errors.New(name + ": Options.TLSConfig has no ClientCAs to verify client certificates")
	}
	c := cfg.Clone()
	c.MinVersion = tls.VersionTLS13
	c.MaxVersion = 0
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.NextProtos = []string{"http/1.1"}
	return c, nil
}

// Serve accepts TLS connections on ln until ctx ends (then it shuts down
// gracefully, waiting a few seconds at most) or Shutdown is called; both
// return nil. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	cfg, err := ServerTLS(s.name, s.tlsConfig)
	if err != nil {
		_ = ln.Close()
		return err
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()

	shutdownDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shutdownDone)
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := s.Shutdown(sctx); err != nil {
			s.log.Warn(s.name+": shutdown", "err", err)
		}
	})
	err = s.srv.Serve(tls.NewListener(ln, cfg))
	if !stop() {
		<-shutdownDone // ctx ended: let the graceful shutdown finish
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Addr returns the address Serve listens on, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown stops accepting connections and waits for active requests until
// ctx ends, then closes what is left. It may be called any number of times,
// also before Serve (which then returns at once).
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	return err
}
