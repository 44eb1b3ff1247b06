package rest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/quicks"
)

// Params are the URL-decoded path parameters of a request.
type Params map[string]string

// HandlerFunc serves one method of one resource. It writes the success
// answer itself and returns an error for anything else; the router writes
// that error as a problem.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, p Params) error

// Route is a resource: a pattern below the base path ("link/relay/{key_stream_id}")
// and its handlers by method.
type Route struct {
	Pattern string
	Methods map[string]HandlerFunc
}

// Config configures a Router.
type Config struct {
	// Prefixes are the base paths ("/api/v2/sdn"), without trailing slash.
	Prefixes []string
	Routes   []Route
	// Authorize decides whether the client with this certificate CN may
	// use the API. Nil refuses everybody.
	Authorize func(cn string, r *http.Request) bool
	// Logger receives 5xx causes. Nil discards.
	Logger *slog.Logger
}

// Router serves a QUICKS API.
type Router struct {
	prefixes  []string
	routes    []route
	authorize func(string, *http.Request) bool
	log       *slog.Logger
}

type route struct {
	segs    []string // literal segments, or "{name}"
	methods map[string]HandlerFunc
	allow   []string // Allow header of a 405
}

// NewRouter returns a router for cfg.
func NewRouter(cfg Config) *Router {
	rt := &Router{prefixes: slices.Clone(cfg.Prefixes), authorize: cfg.Authorize, log: cfg.Logger}
	if rt.log == nil {
		rt.log = slog.New(slog.DiscardHandler)
	}
	for _, r := range cfg.Routes {
		methods := make([]string, 0, len(r.Methods))
		for m := range r.Methods {
			methods = append(methods, m)
		}
		slices.Sort(methods)
		rt.routes = append(rt.routes, route{
			segs:    strings.Split(r.Pattern, "/"),
			methods: r.Methods,
			allow:   []string{strings.Join(methods, ", ")},
		})
	}
	return rt
}

// ServeHTTP authenticates (403 without a verified client certificate or if
// Authorize refuses its CN), routes (404, 405 with Allow) and calls the
// handler with the caller's CN in the context (quicks.Caller).
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cn, ok := pki.PeerCN(r.TLS)
	if !ok {
		quicks.WriteProblem(w, quicks.NewProblem(http.StatusForbidden, "a verified TLS client certificate with a subject CN is required"))
		return
	}
	if rt.authorize == nil || !rt.authorize(cn, r) {
		rt.log.Debug("quicks: client refused", "cn", cn, "path", r.URL.Path)
		quicks.WriteProblem(w, quicks.NewProblem(http.StatusForbidden, fmt.Sprintf("client %q is not authorised", cn)))
		return
	}
	rte, params, ok := rt.match(r.URL.EscapedPath())
	if !ok {
		quicks.WriteProblem(w, quicks.NewProblem(http.StatusNotFound, "no such resource: "+r.URL.Path))
		return
	}
	h, ok := rte.methods[r.Method]
	if !ok {
		w.Header()["Allow"] = rte.allow
		quicks.WriteProblem(w, quicks.NewProblem(http.StatusMethodNotAllowed, "method "+r.Method+" not allowed, use "+rte.allow[0]))
		return
	}
	if params == nil && hasParams(rte.segs) {
		rt.WriteError(w, r, quicks.BadField("path", "malformed path parameter"))
		return
	}
	r = r.WithContext(quicks.WithCaller(r.Context(), cn))
	if err := h(w, r, params); err != nil {
		rt.WriteError(w, r, err)
	}
}

// match finds the route of an escaped path. A literal segment beats a
// parameter, so "link/status" wins over "link/{key_stream_id}". params is
// nil if a parameter does not URL-decode.
func (rt *Router) match(escaped string) (*route, Params, bool) {
	rest, ok := rt.strip(escaped)
	if !ok {
		return nil, nil, false
	}
	segs := strings.Split(rest, "/")
	var best *route
	bestLiterals := -1
	for i := range rt.routes {
		r := &rt.routes[i]
		if n, ok := r.literals(segs); ok && n > bestLiterals {
			best, bestLiterals = r, n
		}
	}
	if best == nil {
		return nil, nil, false
	}
	params := Params{}
	for i, s := range best.segs {
		if name, ok := paramName(s); ok {
			v, err := url.PathUnescape(segs[i])
			if err != nil {
				return best, nil, true
			}
			params[name] = v
		}
	}
	return best, params, true
}

func (rt *Router) strip(escaped string) (string, bool) {
	for _, p := range rt.prefixes {
		if rest, ok := strings.CutPrefix(escaped, p+"/"); ok && rest != "" {
			return rest, true
		}
	}
	return "", false
}

// literals reports whether segs match r and how many literal segments do.
func (r *route) literals(segs []string) (int, bool) {
	if len(segs) != len(r.segs) {
		return 0, false
	}
	n := 0
	for i, s := range r.segs {
		if _, isParam := paramName(s); isParam {
			if segs[i] == "" {
				return 0, false
			}
			continue
		}
		if s != segs[i] {
			return 0, false
		}
		n++
	}
	return n, true
}

func paramName(seg string) (string, bool) {
	if len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' {
		return seg[1 : len(seg)-1], true
	}
	return "", false
}

func hasParams(segs []string) bool {
	return slices.ContainsFunc(segs, func(s string) bool { _, ok := paramName(s); return ok })
}

// WriteError writes err as a problem (quicks.ProblemFor, the one mapping),
// logging the cause of a 500.
func (rt *Router) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	p, internal := quicks.ProblemFor(err)
	if internal {
		level := slog.LevelError
		if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
			level = slog.LevelDebug // the client went away
		}
		rt.log.Log(r.Context(), level, "quicks: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	quicks.WriteProblem(w, p)
}
