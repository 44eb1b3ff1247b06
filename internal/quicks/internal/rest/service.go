package rest

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
)

// ServerOptions configure an API server (agentapi.Options and
// kmsapi.Options are these with their own Backend).
type ServerOptions[B any] struct {
	// Backend answers the requests. Required.
	Backend B
	// Authorize decides whether a client whose verified certificate has
	// subject CN cn may use the API. Nil refuses every client: 403.
	Authorize func(cn string, r *http.Request) bool
	// TLSConfig is the server's certificate and the CAs of its clients
	// (ClientCAs). Serve enforces TLS 1.3 and verified client certificates.
	TLSConfig *tls.Config
	// Logger receives the causes of 500s. Nil discards.
	Logger *slog.Logger
	// MaxBodyBytes limits request bodies; 0 means 1 MiB.
	MaxBodyBytes int64
}

// BodyLimit returns the request body limit for MaxBodyBytes n.
func BodyLimit(n int64) int64 {
	if n <= 0 {
		return DefaultMaxBodyBytes
	}
	return n
}

// Service is what every API server has: a Router for its routes under
// its prefixes and a Server of that router. API servers embed it for its
// Handler, Serve, Addr and Shutdown.
type Service struct {
	router *Router
	srv    *Server
}

// NewService returns the service of the API name (which prefixes errors
// and log lines) with routes under prefixes. It panics if opts.Backend is
// nil.
func NewService[B any](name string, prefixes []string, opts ServerOptions[B], routes []Route) *Service {
	if any(opts.Backend) == nil {
		panic(name + ": Options.Backend is nil")
	}
	router := NewRouter(Config{
		Prefixes:  prefixes,
		Routes:    routes,
		Authorize: opts.Authorize,
		Logger:    opts.Logger,
	})
	return &Service{router: router, srv: NewServer(name, router, opts.TLSConfig, opts.Logger)}
}

// Handler returns the API under its prefixes. It expects requests that
// came over TLS with a verified client certificate (r.TLS); anything else
// is 403.
func (s *Service) Handler() http.Handler { return s.router }

// Serve accepts TLS 1.3 connections with verified client certificates on
// ln and serves HTTP/1.1 until ctx ends or Shutdown is called (both return
// nil). It closes ln.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error { return s.srv.Serve(ctx, ln) }

// Addr returns the address Serve listens on, or nil before Serve.
func (s *Service) Addr() net.Addr { return s.srv.Addr() }

// Shutdown stops the server gracefully until ctx ends; it may be called
// any number of times, also before Serve.
func (s *Service) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
