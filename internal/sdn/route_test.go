package sdn

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// saeNodes returns the distinct nodes that have SAEs, in file order.
func saeNodes(topo *topology.Topology) []qkd.NodeID {
	var out []qkd.NodeID
	seen := map[qkd.NodeID]bool{}
	for _, s := range topo.SAEs {
		if !seen[s.Node] {
			seen[s.Node] = true
			out = append(out, s.Node)
		}
	}
	return out
}

func TestRouteAllSAEPairs(t *testing.T) {
	tests := []struct {
		file string
		// wantHops fixes the hop count of some routes.
		wantHops map[[2]qkd.NodeID]int
	}{
		{file: "line2.json", wantHops: map[[2]qkd.NodeID]int{{"A", "B"}: 1}},
		{file: "ring5.json"},
		{file: "tokyo-qkd-network-2010.json"},
		{file: "metro-mesh-9.json"},
		{file: "cn-beijing-shanghai-backbone.json", wantHops: map[[2]qkd.NodeID]int{{"BJ", "SH"}: 31, {"SH", "BJ"}: 31}},
		{file: "euroqci-synthetic.json"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			topo := load(t, tt.file)
			c := newController(t, topo, Options{})
			ns := saeNodes(topo)
			if len(ns) < 2 {
				t.Fatalf("%s: %d SAE nodes", tt.file, len(ns))
			}
			for _, a := range ns {
				for _, b := range ns {
					if a == b {
						continue
					}
					r := mustRoute(t, c, Request{Source: a, Destinations: []qkd.NodeID{b}, Rate: 1000})
					if want, ok := tt.wantHops[[2]qkd.NodeID{a, b}]; ok && r.Hops() != want {
						t.Errorf("Route(%s→%s) has %d hops, want %d", a, b, r.Hops(), want)
					}
					if r.Capacity <= 0 || r.CounterProposal != (r.Capacity < 1000) {
						t.Errorf("Route(%s→%s): capacity %v, counter-proposal %v", a, b, r.Capacity, r.CounterProposal)
					}
				}
			}
		})
	}
}

func TestRouteWidestShortestRing5(t *testing.T) {
	// ring5: A-B 40k, B-C 25k, C-D 40k, D-E 15k, E-A 30k, B-D 10k.
	tests := []struct {
		name     string
		policy   Policy
		from, to qkd.NodeID
		rate     float64
		want     []qkd.NodeID
		capacity float64
	}{
		{"wider longer route beats two 2-hop routes", WidestShortest, "A", "D", 0, nodes("A", "B", "C", "D"), 25000},
		{"wider route with a rate", WidestShortest, "A", "D", 5000, nodes("A", "B", "C", "D"), 25000},
		{"wider route the other way", WidestShortest, "E", "C", 0, nodes("E", "A", "B", "C"), 25000},
		{"direct link when widest", WidestShortest, "A", "B", 0, nodes("A", "B"), 40000},
		{"fewest hops that carry the rate", FewestHops, "A", "D", 10000, nodes("A", "B", "D"), 10000},
		{"fewest hops avoids a too-narrow chord", FewestHops, "A", "D", 12000, nodes("A", "E", "D"), 15000},
		{"fewest hops falls back to widest", FewestHops, "A", "D", 30000, nodes("A", "B", "C", "D"), 25000},
		{"fewest hops, best effort", FewestHops, "A", "D", 0, nodes("A", "B", "C", "D"), 25000},
	}
	topo := load(t, "ring5.json")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newController(t, topo, Options{Policy: tt.policy})
			r := mustRoute(t, c, Request{Source: tt.from, Destinations: []qkd.NodeID{tt.to}, Rate: tt.rate})
			if diff := cmp.Diff(tt.want, r.Paths[0].Nodes); diff != "" {
				t.Errorf("Route(%s→%s, %v) nodes (-want +got):\n%s", tt.from, tt.to, tt.rate, diff)
			}
			if r.Capacity != tt.capacity {
				t.Errorf("Route(%s→%s).Capacity = %v, want %v", tt.from, tt.to, r.Capacity, tt.capacity)
			}
		})
	}
}

func TestRouteRing5Exact(t *testing.T) {
	c := newController(t, load(t, "ring5.json"), Options{})
	got := mustRoute(t, c, Request{Source: "A", Destinations: nodes("D"), Rate: 20000})
	hops := []Hop{
		{From: "A", To: "B", Link: "A-B", Shares: []LinkShare{{"A-B", 20000}}},
		{From: "B", To: "C", Link: "B-C", Shares: []LinkShare{{"B-C", 20000}}},
		{From: "C", To: "D", Link: "C-D", Shares: []LinkShare{{"C-D", 20000}}},
	}
	want := Route{
		Source: "A", Destinations: nodes("D"), Requested: 20000, Rate: 20000, Capacity: 25000,
		Paths: []Path{{Nodes: nodes("A", "B", "C", "D"), Hops: hops, Rate: 20000, Capacity: 25000}},
		Tree:  map[qkd.NodeID][]Hop{"A": hops[0:1], "B": hops[1:2], "C": hops[2:3]},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Route(A→D, 20k) (-want +got):\n%s", diff)
	}
}

func TestRouteCounterProposal(t *testing.T) {
	tests := []struct {
		file      string
		req       Request
		wantRate  float64
		wantNodes []qkd.NodeID
		// then: the route of the same request once the first is
		// registered; nil if there is none.
		thenRate  float64
		thenNodes []qkd.NodeID
	}{
		{"ring5.json", Request{Source: "A", Destinations: nodes("D"), Rate: 30000}, 25000, nodes("A", "B", "C", "D"), 15000, nodes("A", "E", "D")},
		{"line2.json", Request{Source: "A", Destinations: nodes("B"), Rate: 1e6}, 50000, nodes("A", "B"), 0, nil},
		{"metro-mesh-9.json", Request{Source: "S5", Destinations: nodes("S6"), Rate: 200000}, 178000, nodes("S5", "T1", "T3", "S6"), 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c := newController(t, load(t, tt.file), Options{})
			r := mustRoute(t, c, tt.req)
			if !r.CounterProposal || r.Rate != tt.wantRate || r.Requested != tt.req.Rate {
				t.Errorf("Route(%+v) = rate %v of %v, counter-proposal %v; want rate %v, counter-proposal", tt.req, r.Rate, r.Requested, r.CounterProposal, tt.wantRate)
			}
			if diff := cmp.Diff(tt.wantNodes, r.Paths[0].Nodes); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
			// The caller accepts the counter-proposal: it registers at that rate.
			s, err := c.Register(Stream{ID: sid(1), Source: tt.req.Source, Destinations: tt.req.Destinations, Route: r})
			if err != nil || s.Rate != tt.wantRate {
				t.Fatalf("Register(counter-proposal) = rate %v, %v; want %v", s.Rate, err, tt.wantRate)
			}
			// The booked rate is gone: the next offer is another route, or none.
			r, err = c.Route(tt.req)
			switch {
			case tt.thenNodes == nil && !errors.Is(err, ErrNoRoute):
				t.Errorf("Route(%+v) on a saturated network = %v, want ErrNoRoute", tt.req, err)
			case tt.thenNodes != nil && err != nil:
				t.Errorf("Route(%+v) after booking = %v", tt.req, err)
			case tt.thenNodes != nil:
				if diff := cmp.Diff(tt.thenNodes, r.Paths[0].Nodes); diff != "" || r.Rate != tt.thenRate || !r.CounterProposal {
					t.Errorf("Route(%+v) after booking = rate %v counter %v, nodes (-want +got):\n%s", tt.req, r.Rate, r.CounterProposal, diff)
				}
			}
			// Best effort still gets a route, with nothing to offer now.
			be := tt.req
			be.Rate = 0
			if r := mustRoute(t, c, be); r.Rate != 0 || r.CounterProposal {
				t.Errorf("Route(best effort) = rate %v, counter %v", r.Rate, r.CounterProposal)
			}
		})
	}
}

func TestRouteErrors(t *testing.T) {
	ring5 := load(t, "ring5.json")
	tests := []struct {
		name    string
		offline []qkd.NodeID
		down    []qkd.LinkID
		req     Request
		want    error
	}{
		{"isolated source", nodes("B", "E"), nil, Request{Source: "A", Destinations: nodes("C")}, ErrNoRoute},
		{"cut links", nil, []qkd.LinkID{"A-B", "E-A"}, Request{Source: "A", Destinations: nodes("C"), Rate: 1}, ErrNoRoute},
		{"offline destination", nodes("C"), nil, Request{Source: "A", Destinations: nodes("C")}, ErrNoRoute},
		{"offline source", nodes("A"), nil, Request{Source: "A", Destinations: nodes("C")}, ErrNoRoute},
		{"one group member unreachable", nodes("C"), nil, Request{Source: "A", Destinations: nodes("D", "C")}, ErrNoRoute},
		{"multipath, no route", nodes("B", "E"), nil, Request{Source: "A", Destinations: nodes("C"), Rate: 1, Options: RequestOptions{Multipath: true}}, ErrNoRoute},
		{"unknown source", nil, nil, Request{Source: "X", Destinations: nodes("C")}, ErrUnknownNode},
		{"unknown destination", nil, nil, Request{Source: "A", Destinations: nodes("X")}, ErrUnknownNode},
		{"no destination", nil, nil, Request{Source: "A"}, ErrInvalid},
		{"destination is source", nil, nil, Request{Source: "A", Destinations: nodes("A")}, ErrInvalid},
		{"duplicate destination", nil, nil, Request{Source: "A", Destinations: nodes("C", "C")}, ErrInvalid},
		{"negative rate", nil, nil, Request{Source: "A", Destinations: nodes("C"), Rate: -1}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newController(t, ring5, Options{})
			for _, n := range tt.offline {
				if _, err := c.SetNodeStatus(n, NodeOffline); err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range tt.down {
				if _, err := c.SetLinkStatus(l, LinkDown); err != nil {
					t.Fatal(err)
				}
			}
			if r, err := c.Route(tt.req); !errors.Is(err, tt.want) {
				t.Errorf("Route(%+v) = %v, %v; want %v", tt.req, r.Paths, err, tt.want)
			}
		})
	}
}

func TestRouteAvoidsOutOfService(t *testing.T) {
	ring5 := load(t, "ring5.json")
	tests := []struct {
		name    string
		stopped []qkd.NodeID
		down    []qkd.LinkID
		from    qkd.NodeID
		to      qkd.NodeID
		want    []qkd.NodeID
	}{
		{"B offline", nodes("B"), nil, "A", "C", nodes("A", "E", "D", "C")},
		{"C stopped", nodes("C"), nil, "A", "D", nodes("A", "E", "D")},
		{"B-C down", nil, []qkd.LinkID{"B-C"}, "A", "D", nodes("A", "E", "D")},
		{"A-B down", nil, []qkd.LinkID{"A-B"}, "A", "C", nodes("A", "E", "D", "C")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newController(t, ring5, Options{})
			for _, n := range tt.stopped {
				st := NodeOffline
				if n == "C" {
					st = NodeStopped
				}
				if _, err := c.SetNodeStatus(n, st); err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range tt.down {
				if _, err := c.SetLinkStatus(l, LinkDown); err != nil {
					t.Fatal(err)
				}
			}
			r := mustRoute(t, c, Request{Source: tt.from, Destinations: []qkd.NodeID{tt.to}})
			if diff := cmp.Diff(tt.want, r.Paths[0].Nodes); diff != "" {
				t.Errorf("Route(%s→%s) (-want +got):\n%s", tt.from, tt.to, diff)
			}
		})
	}
}

func TestRouteMulticastSharesPrefix(t *testing.T) {
	tests := []struct {
		file     string
		source   qkd.NodeID
		dests    []qkd.NodeID
		paths    [][]qkd.NodeID
		tree     map[qkd.NodeID][]qkd.NodeID
		capacity float64
	}{
		{
			file: "ring5.json", source: "A", dests: nodes("C", "D"),
			paths:    [][]qkd.NodeID{nodes("A", "B", "C"), nodes("A", "B", "C", "D")},
			tree:     map[qkd.NodeID][]qkd.NodeID{"A": nodes("B"), "B": nodes("C"), "C": nodes("D")},
			capacity: 25000,
		},
		{
			file: "ring5.json", source: "C", dests: nodes("A", "E"),
			paths:    [][]qkd.NodeID{nodes("C", "B", "A"), nodes("C", "B", "A", "E")},
			tree:     map[qkd.NodeID][]qkd.NodeID{"C": nodes("B"), "B": nodes("A"), "A": nodes("E")},
			capacity: 25000,
		},
		{
			file: "metro-mesh-9.json", source: "S5", dests: nodes("S1", "S3", "T2"),
			// S5-T1-S4-S3 and S5-T1-T3-S3 are both wide enough: lower node IDs win.
			paths:    [][]qkd.NodeID{nodes("S5", "T1", "S1"), nodes("S5", "T1", "S4", "S3"), nodes("S5", "T1", "T2")},
			tree:     map[qkd.NodeID][]qkd.NodeID{"S5": nodes("T1"), "T1": nodes("S1", "S4", "T2"), "S4": nodes("S3")},
			capacity: 178000,
		},
		{
			file: "cn-beijing-shanghai-backbone.json", source: "JN", dests: nodes("BJ", "SH", "HF"),
			capacity: 40000,
		},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s→%v", tt.file, tt.source, tt.dests), func(t *testing.T) {
			c := newController(t, load(t, tt.file), Options{})
			r := mustRoute(t, c, Request{Source: tt.source, Destinations: tt.dests, Rate: 1000})
			if r.Capacity != tt.capacity || r.Rate != 1000 {
				t.Errorf("capacity %v rate %v, want %v and 1000", r.Capacity, r.Rate, tt.capacity)
			}
			if tt.paths != nil {
				var got [][]qkd.NodeID
				for _, p := range r.Paths {
					got = append(got, p.Nodes)
				}
				if diff := cmp.Diff(tt.paths, got); diff != "" {
					t.Errorf("paths (-want +got):\n%s", diff)
				}
			}
			if tt.tree != nil {
				got := map[qkd.NodeID][]qkd.NodeID{}
				for n, hs := range r.Tree {
					for _, h := range hs {
						got[n] = append(got[n], h.To)
					}
				}
				if diff := cmp.Diff(tt.tree, got); diff != "" {
					t.Errorf("tree (-want +got):\n%s", diff)
				}
			}
			// Every tree hop is booked once: the group key crosses it once.
			s, err := c.Register(Stream{ID: sid(1), Source: tt.source, Destinations: tt.dests, Route: r})
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range c.Links() {
				if l.Promised != 0 && l.Promised != 1000 {
					t.Errorf("link %s promised %v, want 0 or 1000", l.ID, l.Promised)
				}
			}
			checkRoute(t, c.Topology(), s.Route)
		})
	}
}

func TestRouteParallelLinksSplit(t *testing.T) {
	topo := load(t, "cn-beijing-shanghai-backbone.json")
	c := newController(t, topo, Options{})
	// The narrowest hops are four parallel links of 10 kb/s: 40 kb/s needs all four.
	r := mustRoute(t, c, Request{Source: "BJ", Destinations: nodes("SH"), Rate: 40000})
	if r.CounterProposal || r.Rate != 40000 || r.Hops() != 31 {
		t.Fatalf("Route(BJ→SH, 40k) = rate %v, counter %v, %d hops", r.Rate, r.CounterProposal, r.Hops())
	}
	split := 0
	for _, h := range r.Paths[0].Hops {
		if len(h.Shares) > 1 {
			split++
		}
		for i := 1; i < len(h.Shares); i++ {
			if h.Shares[i].Rate > h.Shares[0].Rate {
				t.Errorf("hop %s→%s: share %v larger than the first %v", h.From, h.To, h.Shares[i], h.Shares[0])
			}
		}
	}
	if split == 0 {
		t.Errorf("no hop of BJ→SH at 40 kb/s spreads over parallel links")
	}
	// Best effort names one link per hop: the one with the most rate.
	r = mustRoute(t, c, Request{Source: "BJ", Destinations: nodes("SH")})
	for _, h := range r.Paths[0].Hops {
		if len(h.Shares) != 1 {
			t.Errorf("best effort hop %s→%s has shares %v", h.From, h.To, h.Shares)
		}
	}
}

func TestRouteMultipath(t *testing.T) {
	topo := load(t, "metro-mesh-9.json")
	tests := []struct {
		name          string
		rate          float64
		wantMultipath bool
		wantRate      float64
		wantCounter   bool
	}{
		{"one path suffices", 200000, false, 200000, false},
		{"split over paths", 500000, true, 500000, false},
		{"up to the max-flow", 600000, true, 560100, true},
		{"best effort takes every path", 0, true, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newController(t, topo, Options{})
			req := Request{Source: "S2", Destinations: nodes("S4"), Rate: tt.rate, Options: RequestOptions{Multipath: true}}
			r := mustRoute(t, c, req)
			if r.Multipath != tt.wantMultipath || r.Rate != tt.wantRate || r.CounterProposal != tt.wantCounter {
				t.Fatalf("Route(%v, multipath) = multipath %v rate %v counter %v; want %v %v %v",
					tt.rate, r.Multipath, r.Rate, r.CounterProposal, tt.wantMultipath, tt.wantRate, tt.wantCounter)
			}
			if tt.wantMultipath {
				if len(r.Paths) < 2 || r.Capacity != 560100 || r.Tree != nil {
					t.Errorf("multipath route: %d paths, capacity %v, tree %v", len(r.Paths), r.Capacity, r.Tree)
				}
				var sum float64
				for _, p := range r.Paths {
					sum += p.Capacity
				}
				if tt.rate == 0 && sum != 560100 {
					t.Errorf("path capacities add up to %v, want the max-flow 560100", sum)
				}
			}
			if _, err := c.Register(Stream{ID: sid(1), Source: "S2", Destinations: nodes("S4"), Route: r}); err != nil {
				t.Fatalf("Register = %v", err)
			}
			left, err := c.MaxFlow("S2", "S4")
			if err != nil || !near(left, 560100-tt.wantRate) {
				t.Errorf("MaxFlow(S2, S4) after booking %v = %v, %v; want %v", tt.wantRate, left, err, 560100-tt.wantRate)
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-3 && b-a < 1e-3 }

func TestRouteDeterministic(t *testing.T) {
	topo := load(t, "euroqci-synthetic.json")
	run := func() []Route {
		c := newController(t, topo, Options{})
		var out []Route
		capitals := saeNodes(topo)
		for i, a := range capitals {
			b := capitals[(i*7+3)%len(capitals)]
			if a == b {
				continue
			}
			req := Request{Source: a, Destinations: []qkd.NodeID{b}, Rate: 100}
			if i%3 == 0 { // best effort multipath: every path of the max-flow
				req.Rate, req.Options.Multipath = 0, true
			}
			r, err := c.Route(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Register(Stream{ID: sid(i), Source: a, Destinations: req.Destinations, Route: r}); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	first, second := run(), run()
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("two runs differ (-first +second):\n%s", diff)
	}
}
