package agentapi

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"

	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/rest"
)

// Options configure a Server.
type Options struct {
	// Backend answers the requests. Required.
	Backend Backend
	// Authorize decides whether a client whose verified certificate has
	// subject CN cn may use the API (an agent allows its own KMS). Nil
	// refuses every client: 403.
	Authorize func(cn string, r *http.Request) bool
	// TLSConfig is the server's certificate and the CAs of its clients
	// (ClientCAs). Serve enforces TLS 1.3 and verified client certificates.
	TLSConfig *tls.Config
	// Logger receives the causes of 500s. Nil discards.
	Logger *slog.Logger
	// MaxBodyBytes limits request bodies; 0 means 1 MiB.
	MaxBodyBytes int64
}

// Server is the QUICKS server an SDN agent hosts (kms_to_sdn_api.yaml).
type Server struct {
	backend Backend
	maxBody int64
	router  *rest.Router
	srv     *rest.Server
}

// New returns a server for opts. It panics if opts.Backend is nil.
func New(opts Options) *Server {
	if opts.Backend == nil {
		panic("agentapi: Options.Backend is nil")
	}
	s := &Server{backend: opts.Backend, maxBody: opts.MaxBodyBytes}
	if s.maxBody <= 0 {
		s.maxBody = rest.DefaultMaxBodyBytes
	}
	s.router = rest.NewRouter(rest.Config{
		Prefixes:  []string{quicks.BasePath},
		Routes:    s.routes(),
		Authorize: opts.Authorize,
		Logger:    opts.Logger,
	})
	s.srv = rest.NewServer("agentapi", s.router, opts.TLSConfig, opts.Logger)
	return s
}

// Handler returns the API under /api/v2/sdn. It expects requests that came
// over TLS with a verified client certificate (r.TLS); anything else is 403.
func (s *Server) Handler() http.Handler { return s.router }

// Serve accepts TLS 1.3 connections with verified client certificates on
// ln and serves HTTP/1.1 until ctx ends or Shutdown is called (both return
// nil). It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error { return s.srv.Serve(ctx, ln) }

// Addr returns the address Serve listens on, or nil before Serve.
func (s *Server) Addr() net.Addr { return s.srv.Addr() }

// Shutdown stops the server gracefully until ctx ends; it may be called
// any number of times, also before Serve.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
