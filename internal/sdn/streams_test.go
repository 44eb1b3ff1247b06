package sdn

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
)

func promised(c *Controller) map[qkd.LinkID]float64 {
	out := map[qkd.LinkID]float64{}
	for _, l := range c.Links() {
		if l.Promised != 0 {
			out[l.ID] = l.Promised
		}
	}
	return out
}

func TestPromisesReduceAvailability(t *testing.T) {
	c := newController(t, load(t, "ring5.json"), Options{})
	// First stream takes 20 kb/s of A-B-C-D (B-C has 25 kb/s).
	s1 := register(t, c, 1, Request{Source: "A", Destinations: nodes("D"), Rate: 20000})
	if diff := cmp.Diff(nodes("A", "B", "C", "D"), s1.Route.Paths[0].Nodes); diff != "" {
		t.Fatalf("first stream (-want +got):\n%s", diff)
	}
	want := map[qkd.LinkID]float64{"A-B": 20000, "B-C": 20000, "C-D": 20000}
	if diff := cmp.Diff(want, promised(c)); diff != "" {
		t.Errorf("promised after one stream (-want +got):\n%s", diff)
	}
	// B-C has 5 kb/s left: the second stream goes A-E-D (15 kb/s).
	s2 := register(t, c, 2, Request{Source: "A", Destinations: nodes("D"), Rate: 10000})
	if diff := cmp.Diff(nodes("A", "E", "D"), s2.Route.Paths[0].Nodes); diff != "" {
		t.Errorf("second stream avoids the saturated link (-want +got):\n%s", diff)
	}
	// Releasing the first frees its links: A-B-C-D is the widest again.
	if err := c.Release(s1.ID); err != nil {
		t.Fatal(err)
	}
	want = map[qkd.LinkID]float64{"E-A": 10000, "D-E": 10000}
	if diff := cmp.Diff(want, promised(c)); diff != "" {
		t.Errorf("promised after release (-want +got):\n%s", diff)
	}
	r := mustRoute(t, c, Request{Source: "A", Destinations: nodes("D"), Rate: 20000})
	if diff := cmp.Diff(nodes("A", "B", "C", "D"), r.Paths[0].Nodes); diff != "" {
		t.Errorf("after release (-want +got):\n%s", diff)
	}
	if err := c.Release(s1.ID); !errors.Is(err, ErrUnknownStream) {
		t.Errorf("second Release = %v, want ErrUnknownStream", err)
	}
	if got := len(c.Streams()); got != 1 {
		t.Errorf("Streams() has %d, want 1", got)
	}
}

func TestReportsAndStaleness(t *testing.T) {
	clk := newClock()
	c := newController(t, load(t, "ring5.json"), Options{Now: clk.Now, ReportTTL: time.Minute, NominalFactor: 0.5})
	capOf := func(id qkd.LinkID) float64 {
		for _, l := range c.Links() {
			if l.ID == id {
				return l.Capacity
			}
		}
		t.Fatalf("no link %s", id)
		return 0
	}
	if got := capOf("B-C"); got != 12500 {
		t.Errorf("B-C capacity before any report = %v, want nominal × 0.5 = 12500", got)
	}
	// QUICKS: SKR 4000 B/s, IKR 250 B/s → ESKR 30 kb/s.
	if err := c.Report("B-C", PerfFromQUICKS(time.Time{}, 4000, 250, 100, 9000)); err != nil {
		t.Fatal(err)
	}
	if got := capOf("B-C"); got != 30000 {
		t.Errorf("B-C capacity after a report = %v, want ESKR 30000", got)
	}
	// A→D now prefers A-B-C-D by far (B-C 30k vs A-E 15k after halving).
	r := mustRoute(t, c, Request{Source: "A", Destinations: nodes("D")})
	if r.Capacity != 20000 { // A-B and C-D at half their nominal 40k
		t.Errorf("capacity = %v, want 20000", r.Capacity)
	}
	clk.Advance(2 * time.Minute)
	if got := capOf("B-C"); got != 12500 {
		t.Errorf("B-C capacity with a stale report = %v, want 12500", got)
	}
	if err := c.Report("nope", LinkPerf{}); !errors.Is(err, ErrUnknownLink) {
		t.Errorf("Report(unknown) = %v", err)
	}
	if err := c.Report("B-C", LinkPerf{ESKR: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Report(negative) = %v", err)
	}
}

func TestRerouteRing5(t *testing.T) {
	tests := []struct {
		name  string
		event Event
		// want: stream number → new nodes (nil: released, no route).
		want     map[int][]qkd.NodeID
		degraded map[int]bool
	}{
		{
			name:  "node B offline",
			event: Event{Kind: EventNodeStatus, Node: "B", Status: NodeOffline},
			want:  map[int][]qkd.NodeID{1: nodes("A", "E", "D", "C"), 3: nil},
			// E-D has 15k less stream 2's 5k: 10k < 12k.
			degraded: map[int]bool{1: true},
		},
		{
			name:  "link B-C down",
			event: Event{Kind: EventLinkDown, Link: "B-C"},
			want:  map[int][]qkd.NodeID{1: nodes("A", "B", "D", "C")},
			// A-B-D-C and A-E-D-C both have 10k left (B-D; E-D less stream 2):
			// lower node IDs win.
			degraded: map[int]bool{1: true},
		},
		{
			name:  "node D stopped",
			event: Event{Kind: EventNodeStatus, Node: "D", Status: NodeStopped},
			want:  map[int][]qkd.NodeID{2: nil},
		},
		{name: "link up is no event", event: Event{Kind: EventLinkUp, Link: "B-C"}, want: map[int][]qkd.NodeID{}},
		{name: "node online is no event", event: Event{Kind: EventNodeStatus, Node: "B", Status: NodeOnline}, want: map[int][]qkd.NodeID{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newController(t, load(t, "ring5.json"), Options{})
			register(t, c, 1, Request{Source: "A", Destinations: nodes("C"), Rate: 12000}) // A-B-C
			register(t, c, 2, Request{Source: "E", Destinations: nodes("D"), Rate: 5000})  // E-D
			register(t, c, 3, Request{Source: "B", Destinations: nodes("A")})              // A-B, best effort
			got, err := c.Reroute(tt.event)
			if err != nil {
				t.Fatalf("Reroute(%+v) = %v", tt.event, err)
			}
			gotNodes := map[int][]qkd.NodeID{}
			for _, rr := range got {
				var n int
				fmt.Sscanf(string(rr.Stream.ID)[24:], "%d", &n)
				if rr.Err != nil {
					if !errors.Is(rr.Err, ErrNoRoute) {
						t.Errorf("stream %d: Err = %v, want ErrNoRoute", n, rr.Err)
					}
					if _, ok := c.Stream(rr.Stream.ID); ok {
						t.Errorf("stream %d has no route but is still registered", n)
					}
					gotNodes[n] = nil
					continue
				}
				checkRoute(t, c.Topology(), rr.Stream.Route)
				gotNodes[n] = rr.Stream.Route.Paths[0].Nodes
				if rr.Degraded != tt.degraded[n] {
					t.Errorf("stream %d: degraded %v, want %v (rate %v)", n, rr.Degraded, tt.degraded[n], rr.Stream.Rate)
				}
				if len(rr.Old.Paths) == 0 {
					t.Errorf("stream %d: no old route", n)
				}
			}
			if diff := cmp.Diff(tt.want, gotNodes); diff != "" {
				t.Errorf("rerouted streams (-want +got):\n%s", diff)
			}
			// Promises are exactly the sum of the remaining streams' bookings.
			want := map[qkd.LinkID]float64{}
			for _, s := range c.Streams() {
				for _, l := range bookedLinks(s) {
					want[l.Link] += l.Rate
				}
			}
			for id, v := range want {
				if v == 0 {
					delete(want, id)
				}
			}
			if diff := cmp.Diff(want, promised(c)); diff != "" {
				t.Errorf("promises (-streams +controller):\n%s", diff)
			}
			// No stream uses what is out of service.
			for _, s := range c.Streams() {
				for _, e := range Forwarding(s) {
					if e.Node == tt.event.Node && tt.event.Status != NodeOnline {
						t.Errorf("stream %s still through %s", s.ID, e.Node)
					}
				}
				for _, l := range bookedLinks(s) {
					if l.Link == tt.event.Link && tt.event.Kind == EventLinkDown {
						t.Errorf("stream %s still on %s", s.ID, l.Link)
					}
				}
			}
		})
	}
}

// bookedLinks lists the link shares a stream holds (tree hops once).
func bookedLinks(s Stream) []LinkShare {
	var out []LinkShare
	if s.Route.Multipath {
		for _, p := range s.Route.Paths {
			for _, h := range p.Hops {
				out = append(out, h.Shares...)
			}
		}
		return out
	}
	for _, hs := range s.Route.Tree {
		for _, h := range hs {
			out = append(out, h.Shares...)
		}
	}
	return out
}

func TestRerouteEveryRing5Pair(t *testing.T) {
	// ring5 has two node-disjoint routes between every pair: taking any
	// intermediate node or any link out of service leaves every stream a route.
	topo := load(t, "ring5.json")
	ids := nodes("A", "B", "C", "D", "E")
	var events []Event
	for _, n := range ids {
		events = append(events, Event{Kind: EventNodeStatus, Node: n, Status: NodeOffline})
	}
	for _, l := range topo.Links {
		events = append(events, Event{Kind: EventLinkDown, Link: l.ID})
	}
	for _, ev := range events {
		t.Run(fmt.Sprintf("%s%s%s", ev.Kind, ev.Node, ev.Link), func(t *testing.T) {
			c := newController(t, topo, Options{})
			n := 0
			for _, a := range ids {
				for _, b := range ids {
					if a != b {
						n++
						register(t, c, n, Request{Source: a, Destinations: []qkd.NodeID{b}})
					}
				}
			}
			rr, err := c.Reroute(ev)
			if err != nil || (len(rr) == 0 && ev.Kind == EventNodeStatus) {
				t.Fatalf("Reroute(%+v) = %d streams, %v", ev, len(rr), err)
			}
			for _, r := range rr {
				endpoint := r.Stream.Source == ev.Node || r.Stream.Destinations[0] == ev.Node
				if (r.Err != nil) != endpoint {
					t.Errorf("stream %s→%s: Err = %v", r.Stream.Source, r.Stream.Destinations[0], r.Err)
				}
			}
		})
	}
}

func TestRegisterErrors(t *testing.T) {
	topo := load(t, "ring5.json")
	c := newController(t, topo, Options{})
	route := mustRoute(t, c, Request{Source: "A", Destinations: nodes("D"), Rate: 20000})
	ok := Stream{ID: sid(1), Source: "A", Destinations: nodes("D"), Route: route}
	if _, err := c.Register(ok); err != nil {
		t.Fatal(err)
	}
	bad := func(f func(*Stream)) Stream {
		s := ok.clone()
		s.ID = sid(2)
		f(&s)
		return s
	}
	tests := []struct {
		name string
		s    Stream
		want error
	}{
		{"duplicate ID", ok, ErrStreamExists},
		{"duplicate ID, other case", bad(func(s *Stream) { s.ID = StreamID("00000000-0000-4000-8000-000000000001") }), ErrStreamExists},
		{"not a UUID", bad(func(s *Stream) { s.ID = "stream-1" }), ErrInvalid},
		{"rate differs from the route's", bad(func(s *Stream) { s.Rate = 5 }), ErrInvalid},
		{"other destination", bad(func(s *Stream) { s.Destinations = nodes("C") }), ErrInvalid},
		{"broken path", bad(func(s *Stream) { s.Route.Paths[0].Hops[1].To = "E" }), ErrInvalid},
		{"no path", bad(func(s *Stream) { s.Route.Paths = nil }), ErrInvalid},
		{"capacity taken meanwhile", bad(func(*Stream) {}), ErrCapacity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Register(tt.s); !errors.Is(err, tt.want) {
				t.Errorf("Register() = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("stale route", func(t *testing.T) {
		r := mustRoute(t, c, Request{Source: "E", Destinations: nodes("C")})
		if diff := cmp.Diff(nodes("E", "D", "C"), r.Paths[0].Nodes); diff != "" {
			t.Fatalf("Route(E→C) (-want +got):\n%s", diff)
		}
		if _, err := c.SetLinkStatus("D-E", LinkDown); err != nil {
			t.Fatal(err)
		}
		_, err := c.Register(Stream{ID: sid(9), Source: "E", Destinations: nodes("C"), Route: r})
		if !errors.Is(err, ErrStaleRoute) {
			t.Errorf("Register(route over a link that is down) = %v, want ErrStaleRoute", err)
		}
	})
	if got := len(c.Streams()); got != 1 {
		t.Errorf("%d streams registered, want 1", got)
	}
}

func TestEventErrors(t *testing.T) {
	c := newController(t, load(t, "ring5.json"), Options{})
	for _, ev := range []Event{
		{Kind: "reboot"},
		{Kind: EventLinkDown, Link: "X-Y"},
		{Kind: EventNodeStatus, Node: "X", Status: NodeOffline},
		{Kind: EventNodeStatus, Node: "A", Status: "sleeping"},
	} {
		if _, err := c.Reroute(ev); err == nil {
			t.Errorf("Reroute(%+v) = nil error", ev)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	topo := load(t, "metro-mesh-9.json")
	c := newController(t, topo, Options{})
	ns := saeNodes(topo)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				a, b := ns[(w+i)%len(ns)], ns[(w+2*i+1)%len(ns)]
				if a == b {
					continue
				}
				r, err := c.Route(Request{Source: a, Destinations: []qkd.NodeID{b}, Rate: 1000})
				if err != nil {
					continue
				}
				id := sid(w*1000 + i)
				if _, err := c.Register(Stream{ID: id, Source: a, Destinations: r.Destinations, Route: r}); err == nil && i%2 == 0 {
					_ = c.Release(id)
				}
				_, _ = c.QKDNode(a)
				_ = c.Links()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 20 {
			st := NodeOffline
			if i%2 == 1 {
				st = NodeOnline
			}
			_, _ = c.SetNodeStatus("T2", st)
			_ = c.Report("T1-T3", LinkPerf{SKR: 3e6, ESKR: 2.9e6})
		}
	}()
	wg.Wait()
	// Whatever happened, promises equal the streams' bookings.
	want := map[qkd.LinkID]float64{}
	for _, s := range c.Streams() {
		for _, l := range bookedLinks(s) {
			want[l.Link] += l.Rate
		}
	}
	for id, v := range promised(c) {
		if !near(v, want[id]) {
			t.Errorf("link %s: promised %v, streams hold %v", id, v, want[id])
		}
	}
}

func TestNewOptions(t *testing.T) {
	topo := load(t, "line2.json")
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"zero value", Options{}, true},
		{"factor", Options{NominalFactor: 0.9, ReportTTL: time.Minute, Policy: FewestHops}, true},
		{"negative factor", Options{NominalFactor: -1}, false},
		{"infinite factor", Options{NominalFactor: math.Inf(1)}, false},
		{"negative TTL", Options{ReportTTL: -time.Second}, false},
		{"unknown policy", Options{Policy: 7}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(topo, tt.opts); (err == nil) != tt.ok {
				t.Errorf("New(%+v) = %v, want ok %v", tt.opts, err, tt.ok)
			}
		})
	}
	if _, err := New(nil, Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New(nil) = %v, want ErrInvalid", err)
	}
}

func TestOverloadIsVisible(t *testing.T) {
	c := newController(t, load(t, "line2.json"), Options{})
	register(t, c, 1, Request{Source: "A", Destinations: nodes("B"), Rate: 30000})
	// The link degrades below what is promised: nothing moves, the state shows it.
	if err := c.Report("A-B", LinkPerf{SKR: 21000, ESKR: 20000}); err != nil {
		t.Fatal(err)
	}
	want := LinkState{
		ID: "A-B", A: "A", B: "B", Status: LinkUp, Nominal: 50000,
		Perf:     &LinkPerf{At: newClock().Now(), SKR: 21000, ESKR: 20000},
		Capacity: 20000, Promised: 30000, Available: 0, Streams: []StreamID{sid(1)},
	}
	if diff := cmp.Diff([]LinkState{want}, c.Links()); diff != "" {
		t.Errorf("Links() (-want +got):\n%s", diff)
	}
	if _, err := c.Route(Request{Source: "A", Destinations: nodes("B"), Rate: 1}); !errors.Is(err, ErrNoRoute) {
		t.Errorf("Route on an overloaded link = %v, want ErrNoRoute", err)
	}
}
