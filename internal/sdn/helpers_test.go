package sdn

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// sharedDir holds the repository's copies of the real-world topologies.
const sharedDir = "../../cmd/qkms/topologies"

// load reads a shared topology file, skipping the test if it is absent.
func load(tb testing.TB, name string) *topology.Topology {
	tb.Helper()
	path := filepath.Join(sharedDir, name)
	if _, err := os.Stat(path); err != nil {
		tb.Skipf("topology %s not available: %v", path, err)
	}
	topo, err := topology.Load(path)
	if err != nil {
		tb.Fatalf("topology.Load(%s) = %v", path, err)
	}
	return topo
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newController(tb testing.TB, topo *topology.Topology, opts Options) *Controller {
	tb.Helper()
	if opts.Now == nil {
		opts.Now = newClock().Now
	}
	c, err := New(topo, opts)
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	return c
}

// sid returns the n-th deterministic key stream ID.
func sid(n int) StreamID {
	return StreamID(fmt.Sprintf("00000000-0000-4000-8000-%012d", n))
}

func nodes(ids ...string) []qkd.NodeID {
	out := make([]qkd.NodeID, len(ids))
	for i, id := range ids {
		out[i] = qkd.NodeID(id)
	}
	return out
}

// mustRoute routes req and checks the route is well formed.
func mustRoute(tb testing.TB, c *Controller, req Request) Route {
	tb.Helper()
	r, err := c.Route(req)
	if err != nil {
		tb.Fatalf("Route(%+v) = %v", req, err)
	}
	checkRoute(tb, c.Topology(), r)
	return r
}

// register routes req and registers the stream under ID sid(n).
func register(tb testing.TB, c *Controller, n int, req Request) Stream {
	tb.Helper()
	r := mustRoute(tb, c, req)
	s, err := c.Register(Stream{ID: sid(n), Source: req.Source, Destinations: req.Destinations, Route: r})
	if err != nil {
		tb.Fatalf("Register(%s) = %v", sid(n), err)
	}
	checkRoute(tb, c.Topology(), s.Route)
	return s
}

// checkRoute verifies that r's paths are contiguous walks over real links
// from the source to its destinations, that every hop's shares are links
// joining its ends and add up to the rate it carries, and that the tree
// matches the paths.
func checkRoute(tb testing.TB, topo *topology.Topology, r Route) {
	tb.Helper()
	if len(r.Paths) == 0 {
		tb.Fatalf("route %s → %v has no path", r.Source, r.Destinations)
	}
	var total float64
	for i, p := range r.Paths {
		if err := checkPath(p, r.Source); err != nil {
			tb.Fatalf("path %d %v: %v", i, p.Nodes, err)
		}
		rate := r.Rate
		if r.Multipath {
			rate = p.Rate
		}
		total += p.Rate
		for _, h := range p.Hops {
			var sum float64
			if len(h.Shares) == 0 || h.Shares[0].Link != h.Link {
				tb.Fatalf("hop %s→%s: link %q, shares %v", h.From, h.To, h.Link, h.Shares)
			}
			for _, s := range h.Shares {
				l, ok := topo.Link(s.Link)
				if !ok || !l.Joins(h.From, h.To) {
					tb.Fatalf("hop %s→%s uses link %q that does not join them", h.From, h.To, s.Link)
				}
				sum += s.Rate
			}
			if math.Abs(sum-rate) > 1e-3 {
				tb.Fatalf("hop %s→%s shares add up to %v, want %v", h.From, h.To, sum, rate)
			}
		}
	}
	if r.Multipath && math.Abs(total-r.Rate) > 1e-3 {
		tb.Fatalf("multipath rates add up to %v, want %v", total, r.Rate)
	}
	if !r.Multipath {
		if len(r.Paths) != len(r.Destinations) {
			tb.Fatalf("%d paths for %d destinations", len(r.Paths), len(r.Destinations))
		}
		if err := checkRouteShape(&r); err != nil {
			tb.Fatalf("route shape: %v", err)
		}
	}
}
