// Package httpsx is the life cycle shared by qkms's HTTPS servers (ETSI 014,
// QUICKS): serve on a caller's listener until the context ends or Shutdown,
// then shut down gracefully within a bound. Each server builds its own
// *http.Server and TLS configuration; this package only runs them.
package httpsx

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

// ShutdownGrace bounds the graceful shutdown Serve does when its context ends.
const ShutdownGrace = 5 * time.Second

// Runner runs one *http.Server over TLS.
type Runner struct {
	Srv  *http.Server
	Log  *slog.Logger
	Name string // for log messages

	mu   sync.Mutex
	addr net.Addr // guarded by mu
}

// Serve accepts TLS connections (cfg) on ln until ctx ends (then it shuts
// down gracefully, waiting at most ShutdownGrace) or Shutdown is called;
// both return nil. It closes ln.
func (r *Runner) Serve(ctx context.Context, ln net.Listener, cfg *tls.Config) error {
	r.mu.Lock()
	r.addr = ln.Addr()
	r.mu.Unlock()
	shutdownDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shutdownDone)
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		if err := r.Shutdown(sctx); err != nil && r.Log != nil {
			r.Log.Warn(r.Name+": shutdown", "err", err)
		}
	})
	err := r.Srv.Serve(tls.NewListener(ln, cfg))
	if !stop() {
		<-shutdownDone // ctx ended: let the graceful shutdown finish
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Addr returns the address Serve listens on, or nil before Serve.
func (r *Runner) Addr() net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Shutdown stops accepting connections and waits for active requests until
// ctx ends, then closes what is left. It may be called any number of times,
// also before Serve (which then returns at once).
func (r *Runner) Shutdown(ctx context.Context) error {
	err := r.Srv.Shutdown(ctx)
	if err != nil {
		_ = r.Srv.Close()
	}
	return err
}

// Timeouts and limits of every qkms HTTPS server.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// NewRunner returns a Runner of an HTTP/1.1 server for h with qkms's
// timeouts; server errors go to log at warning level.
func NewRunner(name string, h http.Handler, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &Runner{Name: name, Log: log, Srv: &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
}
