package etsi014

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/http"

	"github.com/qkms/qkms/internal/httpsx"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/qkd"
)

// KMS is the key service the server calls (implemented by the core kms
// service). caller is the SAE named by the client certificate; the second
// SAE ID is the path element: the slave for Status and EncKeys, the master
// for DecKeys. Errors are qkd domain errors or *qkd.RequestError. The
// server owns, encodes and wipes the returned keys.
type KMS interface {
	Status(ctx context.Context, caller, slave qkd.SAEID) (kms.Status, error)
	EncKeys(ctx context.Context, caller, slave qkd.SAEID, req kms.KeyRequest) ([]kms.Key, error)
	DecKeys(ctx context.Context, caller, master qkd.SAEID, ids []qkd.KeyID) ([]kms.Key, error)
}

// DefaultMaxBodyBytes is the request body limit when Options.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 1 << 20

// Options configure a Server.
type Options struct {
	// KMS answers the requests. Required.
	KMS KMS
	// Logger receives server errors (never key bytes). Nil discards.
	Logger *slog.Logger
	// TLSConfig is the server configuration used by Serve, normally with
	// ClientAuth tls.RequireAndVerifyClientCert. NextProtos is replaced by
	// http/1.1 and MinVersion raised to TLS 1.2.
	TLSConfig *tls.Config
	// SupportedExtensions names the extension_mandatory parameters the
	// server honours; any other name is refused with 400.
	SupportedExtensions map[string]bool
	// MaxBodyBytes limits request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// OnDelivered, if set, is called with the number of keys in every key
	// container written successfully (a metrics hook; must be fast).
	OnDelivered func(n int)
	// Admin, if set, serves /admin and /admin/...; it authorises its callers
	// itself (Caller gives the SAE ID of the client certificate).
	Admin http.Handler
}

// Server is an ETSI GS QKD 014 HTTPS server.
type Server struct {
	kms         KMS
	log         *slog.Logger
	tlsConfig   *tls.Config
	supported   map[string]bool
	maxBody     int64
	onDelivered func(int)
	admin       http.Handler
	handler     http.Handler
	run         *httpsx.Runner
}

// New returns a server for opts. It panics if opts.KMS is nil.
func New(opts Options) *Server {
	if opts.KMS == nil {
		panic("etsi014: Options.KMS is nil")
	}
	s := &Server{
		kms:         opts.KMS,
		log:         opts.Logger,
		tlsConfig:   opts.TLSConfig,
		supported:   maps.Clone(opts.SupportedExtensions),
		maxBody:     opts.MaxBodyBytes,
		onDelivered: opts.OnDelivered,
		admin:       opts.Admin,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	s.run = httpsx.NewRunner("etsi014", s.handler, s.log)
	return s
}

// Handler returns the HTTP handler of the API. It expects requests that came
// over TLS (r.TLS set, with verified client chains); tests and benchmarks
// can mount it on their own TLS server.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts TLS connections on ln and serves HTTP/1.1 until ctx ends
// (then it shuts down gracefully, waiting at most a few seconds) or Shutdown
// is called; both return nil. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.tlsConfig == nil {
		_ = ln.Close()
		return errors.New("etsi014: Options.TLSConfig is nil")
	}
	cfg := s.tlsConfig.Clone()
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
	cfg.NextProtos = []string{"http/1.1"}
	return s.run.Serve(ctx, ln, cfg)
}

// Addr returns the address Serve listens on, or nil before Serve.
func (s *Server) Addr() net.Addr { return s.run.Addr() }

// Shutdown stops accepting connections and waits for active requests until
// ctx ends, then closes what is left. It may be called any number of times,
// also before Serve (which then returns at once).
func (s *Server) Shutdown(ctx context.Context) error { return s.run.Shutdown(ctx) }
