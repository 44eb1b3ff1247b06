package sdn

import (
	"math"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/qkms/qkms/internal/qkd"
)

// TestMultipathModes routes ring5's A → C (two node-disjoint routes,
// A-B-C and A-E-D-C) best effort: spread takes the max-flow's paths, split
// node-disjoint ones carrying the narrowest one's rate each; the VIRT
// links name every path's own stream and the group.
func TestMultipathModes(t *testing.T) {
	topo := load(t, "ring5.json")
	for _, tt := range []struct {
		name  string
		opts  RequestOptions
		paths int
		mode  string
	}{
		{"spread", RequestOptions{Multipath: true}, 2, MultipathSpread},
		{"split", RequestOptions{Multipath: true, Split: true}, 2, MultipathSplit},
		{"single", RequestOptions{}, 1, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newController(t, topo, Options{})
			r := mustRoute(t, c, Request{Source: "A", Destinations: nodes("C"), Options: tt.opts})
			if len(r.Paths) < tt.paths || !tt.opts.Multipath && len(r.Paths) != 1 || r.Multipath != (tt.paths > 1) {
				t.Fatalf("route has %d paths (multipath %v), want %d", len(r.Paths), r.Multipath, tt.paths)
			}
			if tt.mode == MultipathSpread {
				var sum float64
				for _, p := range r.Paths {
					sum += p.Capacity
				}
				if mf, _ := MaxFlow(topo, "A", "C"); math.Abs(sum-mf) > 1 {
					t.Errorf("spread paths carry %v bit/s, max-flow is %v", sum, mf)
				}
			}
			if tt.paths > 1 {
				inner := map[qkd.NodeID]int{}
				for _, p := range r.Paths {
					for _, n := range p.Nodes[1 : len(p.Nodes)-1] {
						inner[n]++
					}
				}
				for n, k := range inner {
					if k > 1 && tt.opts.Split {
						t.Errorf("node %s is on %d paths of a split route", n, k)
					}
				}
			}
			st, err := c.Register(Stream{ID: sid(1), Source: "A", Destinations: nodes("C"), SourceSAE: "SAE_A1", DestinationSAEs: []qkd.SAEID{"SAE_C1"}, Route: r})
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range nodes("A", "B", "C", "D", "E") {
				node, err := c.QKDNode(at)
				if err != nil {
					t.Fatal(err)
				}
				var virt []QKDLink
				for _, l := range node.Links.Links {
					if l.Type == QKDLinkVirt {
						virt = append(virt, l)
					}
				}
				want := 0
				tt := tt
				tt.paths = len(st.Route.Paths)
				for i, p := range st.Route.Paths {
					if !slices.Contains(p.Nodes, at) {
						continue
					}
					want++
					if tt.paths == 1 {
						continue
					}
					id := PathStreamID(st.ID, i)
					j := slices.IndexFunc(virt, func(l QKDLink) bool { return l.ID == id })
					if j < 0 {
						t.Fatalf("node %s: no VIRT link %s for path %d", at, id, i)
					}
					m := virt[j].Multipath
					if m == nil || m.Group != string(st.ID) || m.Path != i || m.Paths != tt.paths || m.Mode != tt.mode || m.Weight <= 0 {
						t.Errorf("node %s path %d: multipath = %+v", at, i, m)
					}
					if !slices.Equal(virt[j].Route, pathIDs(p.Nodes)) {
						t.Errorf("node %s path %d: route %v, want %v", at, i, virt[j].Route, p.Nodes)
					}
				}
				if len(virt) != want {
					t.Errorf("node %s: %d VIRT links, want %d", at, len(virt), want)
				}
			}
		})
	}
	// The same at every node (a function of the stream and the path), a
	// UUID, and distinct per path and per stream.
	a, b, c := PathStreamID(sid(1), 0), PathStreamID(sid(1), 1), PathStreamID(sid(2), 0)
	if _, err := uuid.Parse(a); err != nil || a == b || a == c || b == c || a != PathStreamID(sid(1), 0) {
		t.Errorf("PathStreamID: %s, %s, %s (%v); want three distinct UUIDs, the same on every call", a, b, c, err)
	}
	// The same as the uuid package's version 5 UUID of the name.
	if want := uuid.NewSHA1(uuid.NameSpaceURL, []byte("qkms:key-stream:"+string(sid(1))+"#path-0")).String(); a != want {
		t.Errorf("PathStreamID = %s, want %s (RFC 9562 version 5)", a, want)
	}
}

func pathIDs(ns []qkd.NodeID) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = string(n)
	}
	return out
}

// TestSplitWidestDisjointPair: on the metro mesh S2 → S4 the widest route
// (S2-T2-T3-S3-S4) blocks every second node-disjoint one; split takes the
// pair whose narrower path is widest: S2-T2-T1-S4 and S2-S6-T3-S3-S4
// (207.2 kbit/s), not S2-T3-S3-S4 (127.8 kbit/s).
func TestSplitWidestDisjointPair(t *testing.T) {
	c := newController(t, load(t, "metro-mesh-9.json"), Options{})
	r := mustRoute(t, c, Request{Source: "S2", Destinations: nodes("S4"), Options: RequestOptions{Multipath: true, Split: true}})
	var got [][]qkd.NodeID
	for _, p := range r.Paths {
		got = append(got, p.Nodes)
	}
	want := [][]qkd.NodeID{nodes("S2", "T2", "T1", "S4"), nodes("S2", "S6", "T3", "S3", "S4")}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("split paths = %v, want %v", got, want)
	}
	if r.Capacity != 207200 || r.Rate != 0 {
		t.Errorf("capacity %v, rate %v; want 207200 (the narrower path), best effort", r.Capacity, r.Rate)
	}
	// A chain has one route: split falls back to it.
	line := newController(t, load(t, "line2.json"), Options{})
	ids := line.g.ids
	if r := mustRoute(t, line, Request{Source: ids[0], Destinations: []qkd.NodeID{ids[len(ids)-1]}, Options: RequestOptions{Multipath: true, Split: true}}); r.Multipath || len(r.Paths) != 1 {
		t.Errorf("split on a chain: %d paths, multipath %v; want the one route", len(r.Paths), r.Multipath)
	}
}

// TestMinCut: the min-cut's links add up to the max-flow (ring5 A→C:
// B-C, B-D, D-E; metro S2→S4: the links of S4).
func TestMinCut(t *testing.T) {
	for _, tt := range []struct {
		file, from, to string
		want           []string
	}{
		{"ring5.json", "A", "C", []string{"B-C", "D-E", "B-D"}},
		{"metro-mesh-9.json", "S2", "S4", []string{"S3-S4", "S4-T1"}},
	} {
		topo := load(t, tt.file)
		cut, err := MinCut(topo, qkd.NodeID(tt.from), qkd.NodeID(tt.to))
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		var got []string
		for _, l := range cut {
			sum += l.SKRbps
			got = append(got, string(l.ID))
		}
		mf, _ := MaxFlow(topo, qkd.NodeID(tt.from), qkd.NodeID(tt.to))
		slices.Sort(got)
		slices.Sort(tt.want)
		if math.Abs(sum-mf) > 1 || !slices.Equal(got, tt.want) {
			t.Errorf("%s %s→%s: cut %v (%v bit/s), want %v (max-flow %v)", tt.file, tt.from, tt.to, got, sum, tt.want, mf)
		}
	}
}

// TestBestEffortMultipathOnNominalRates: a report that makes a link look
// empty (right after start, say) does not take its paths out of a
// best-effort multipath stream, which is laid on the nominal rates; a
// stream with a requested rate is still admitted on the reports.
func TestBestEffortMultipathOnNominalRates(t *testing.T) {
	c := newController(t, load(t, "ring5.json"), Options{})
	if err := c.Report("E-A", LinkPerf{SKR: 30000, ESKR: 0}); err != nil {
		t.Fatal(err)
	}
	for _, split := range []bool{false, true} {
		r := mustRoute(t, c, Request{Source: "A", Destinations: nodes("C"), Options: RequestOptions{Multipath: true, Split: split}})
		if !r.Multipath || len(r.Paths) < 2 {
			t.Errorf("best effort, split %v: %d paths, want several despite E-A's report", split, len(r.Paths))
		}
	}
	r := mustRoute(t, c, Request{Source: "A", Destinations: nodes("C"), Rate: 30000, Options: RequestOptions{Multipath: true}})
	for _, p := range r.Paths {
		if slices.Contains(p.Nodes, "E") {
			t.Errorf("a stream with a rate was routed over E-A, reported empty: %v", p.Nodes)
		}
	}
}
