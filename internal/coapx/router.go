package coapx

import (
	"bytes"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// WellKnownCore is the RFC 6690 discovery resource.
const WellKnownCore = "/.well-known/core"

// Router is a mux.Router that remembers the link attributes of every
// resource and serves them at /.well-known/core.
type Router struct {
	mux *mux.Router
	log *slog.Logger

	mu    sync.Mutex
	links map[string]string // guarded by mu: path → attributes
}

// NewRouter returns a Router whose errors go to log.
func NewRouter(log *slog.Logger) *Router {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{mux: mux.NewRouter(), log: log, links: map[string]string{}}
	r.mux.SetErrorHandler(func(err error) { log.Debug("coap router", "err", err) })
	_ = r.mux.Handle(WellKnownCore, mux.HandlerFunc(r.serveWellKnown))
	return r
}

// Handle registers h at path with RFC 6690 link attributes such as
// `rt="qkms.peer";ct=60` (may be empty).
func (r *Router) Handle(path string, attrs string, h mux.HandlerFunc) error {
	if err := r.mux.Handle(path, h); err != nil {
		return fmt.Errorf("coapx: handle %s: %w", path, err)
	}
	r.mu.Lock()
	r.links[path] = attrs
	r.mu.Unlock()
	return nil
}

// Mux returns the handler to give a server.
func (r *Router) Mux() mux.Handler { return r.mux }

// LinkFormat renders the registered resources in CoRE link format.
func (r *Router) LinkFormat() []byte {
	r.mu.Lock()
	paths := make([]string, 0, len(r.links))
	for p := range r.links {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b bytes.Buffer
	for i, p := range paths {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("<" + p + ">")
		if a := strings.TrimSpace(r.links[p]); a != "" {
			b.WriteString(";" + a)
		}
	}
	r.mu.Unlock()
	return b.Bytes()
}

func (r *Router) serveWellKnown(w mux.ResponseWriter, req *mux.Message) {
	if req.Code() != codes.GET {
		Respond(w, r.log, codes.MethodNotAllowed, message.TextPlain, nil)
		return
	}
	Respond(w, r.log, codes.Content, message.AppLinkFormat, r.LinkFormat())
}

// Respond sets a response and logs (never returns) failures.
func Respond(w mux.ResponseWriter, log *slog.Logger, code codes.Code, cf message.MediaType, payload []byte) {
	var err error
	if payload == nil {
		err = w.SetResponse(code, cf, nil)
	} else {
		err = w.SetResponse(code, cf, bytes.NewReader(payload))
	}
	if err != nil && log != nil {
		log.Debug("coap: cannot set response", "err", err)
	}
}
