package sdn

import (
	"testing"

	"github.com/qkms/qkms/internal/qkd"
)

// capitalPairs returns every ordered pair of distinct SAE nodes (the 27
// capitals of euroqci-synthetic).
func capitalPairs(b *testing.B) (*Controller, [][2]qkd.NodeID) {
	topo := load(b, "euroqci-synthetic.json")
	c := newController(b, topo, Options{})
	ns := saeNodes(topo)
	var pairs [][2]qkd.NodeID
	for _, x := range ns {
		for _, y := range ns {
			if x != y {
				pairs = append(pairs, [2]qkd.NodeID{x, y})
			}
		}
	}
	return c, pairs
}

func benchRoute(b *testing.B, rate float64, multipath bool) {
	c, pairs := capitalPairs(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := pairs[i%len(pairs)]
		if _, err := c.Route(Request{Source: p[0], Destinations: []qkd.NodeID{p[1]}, Rate: rate, Options: RequestOptions{Multipath: multipath}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouteEuroQCI: one unicast route between two capitals of the
// 277-node network (cycling over all 702 ordered pairs).
func BenchmarkRouteEuroQCI(b *testing.B) { benchRoute(b, 1000, false) }

// BenchmarkRouteEuroQCIMultipath: best effort multipath (max-flow and its
// decomposition) between two capitals.
func BenchmarkRouteEuroQCIMultipath(b *testing.B) { benchRoute(b, 0, true) }

// BenchmarkRouteEuroQCIGroup: a group key from one capital to five others.
func BenchmarkRouteEuroQCIGroup(b *testing.B) {
	c, _ := capitalPairs(b)
	ns := saeNodes(c.Topology())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		src := ns[i%len(ns)]
		var dsts []qkd.NodeID
		for k := 1; len(dsts) < 5; k++ {
			dsts = append(dsts, ns[(i+5*k)%len(ns)])
		}
		if _, err := c.Route(Request{Source: src, Destinations: dsts, Rate: 500}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMaxFlowEuroQCI: the max-flow between two capitals at nominal
// rates (the docs/performance.md baseline), graph construction included.
func BenchmarkMaxFlowEuroQCI(b *testing.B) {
	c, pairs := capitalPairs(b)
	topo := c.Topology()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := pairs[i%len(pairs)]
		if _, err := MaxFlow(topo, p[0], p[1]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRegisterReleaseEuroQCI: route, register and release a stream.
func BenchmarkRegisterReleaseEuroQCI(b *testing.B) {
	c, pairs := capitalPairs(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := pairs[i%len(pairs)]
		r, err := c.Route(Request{Source: p[0], Destinations: []qkd.NodeID{p[1]}, Rate: 100})
		if err != nil {
			b.Fatal(err)
		}
		id := sid(i)
		if _, err := c.Register(Stream{ID: id, Source: p[0], Destinations: r.Destinations, Route: r}); err != nil {
			b.Fatal(err)
		}
		if err := c.Release(id); err != nil {
			b.Fatal(err)
		}
	}
}
