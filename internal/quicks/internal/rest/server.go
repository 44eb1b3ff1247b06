package rest

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/qkms/qkms/internal/httpsx"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// writeTimeout: QUICKS answers (logs, performance history) may be large.
const writeTimeout = 60 * time.Second

// Server runs a handler over HTTPS: TLS 1.3, client certificates required
// and verified, HTTP/1.1.
type Server struct {
	name      string
	tlsConfig *tls.Config
	log       *slog.Logger
	run       *httpsx.Runner
}

// NewServer returns a server of h. name prefixes errors and log lines.
func NewServer(name string, h http.Handler, cfg *tls.Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	run := httpsx.NewRunner(name, h, log)
	run.Srv.WriteTimeout = writeTimeout
	return &Server{name: name, tlsConfig: cfg, log: log, run: run}
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
	return s.run.Serve(ctx, ln, cfg)
}

// Addr returns the address Serve listens on, or nil before Serve.
func (s *Server) Addr() net.Addr { return s.run.Addr() }

// Shutdown stops accepting connections and waits for active requests until
// ctx ends, then closes what is left. It may be called any number of times,
// also before Serve (which then returns at once).
func (s *Server) Shutdown(ctx context.Context) error { return s.run.Shutdown(ctx) }
