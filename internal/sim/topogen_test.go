package sim

import (
	"fmt"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/qkms/qkms/internal/topology"
)

func TestGenerateCounts(t *testing.T) {
	tests := []struct {
		family string
		n      int
		links  int // -1: only bounds are checked (rgg)
	}{
		{"star", 2, 1},
		{"star", 10, 9},
		{"star", 100, 99},
		{"ring", 3, 3},
		{"ring", 10, 10},
		{"ring", 100, 100},
		{"bridge", 4, 3}, // two single links and the bridge
		{"bridge", 7, 8}, // cycles of 3 and 4, and the bridge
		{"bridge", 10, 11},
		{"bridge", 100, 101},
		{"mesh", 10, 13}, // 2×5
		{"mesh", 7, 6},   // 1×7: a line
		{"mesh", 12, 17}, // 3×4
		{"mesh", 100, 180},
		{"random", 2, 1},
		{"random", 4, 6},
		{"random", 10, 15},
		{"random", 100, 150},
		{"rgg", 10, -1},
		{"rgg", 100, -1},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s-%d", tc.family, tc.n), func(t *testing.T) {
			g, err := Generate(tc.family, tc.n, 42)
			if err != nil {
				t.Fatal(err)
			}
			if len(g.Nodes) != tc.n || len(g.SAEs) != tc.n {
				t.Errorf("%d nodes, %d SAEs, want %d each", len(g.Nodes), len(g.SAEs), tc.n)
			}
			if tc.links >= 0 && len(g.Links) != tc.links {
				t.Errorf("%d links, want %d", len(g.Links), tc.links)
			}
			if len(g.Links) < tc.n-1 {
				t.Errorf("%d links cannot connect %d nodes", len(g.Links), tc.n)
			}
			if !Connected(g) {
				t.Error("not connected")
			}
			if err := g.Validate(); err != nil {
				t.Error(err)
			}
			seen := map[[2]string]bool{}
			for _, l := range g.Links {
				k := [2]string{string(l.A), string(l.B)}
				if seen[k] {
					t.Errorf("link %s repeated", l.ID)
				}
				seen[k] = true
				if tc.family != "rgg" && math.Abs(l.SKRbps-LinkRate(UniformKM)) > 1 {
					t.Errorf("link %s at %v bit/s, want %v", l.ID, l.SKRbps, LinkRate(UniformKM))
				}
			}
		})
	}
}

func TestGenerateShapes(t *testing.T) {
	star, _ := Generate("star", 6, 1)
	if got := len(star.Neighbours("n1")); got != 5 {
		t.Errorf("star hub has %d neighbours, want 5", got)
	}
	ring, _ := Generate("ring", 6, 1)
	for _, n := range ring.Nodes {
		if got := len(ring.Neighbours(n.ID)); got != 2 {
			t.Errorf("ring node %s has %d neighbours", n.ID, got)
		}
	}
	br, _ := Generate("bridge", 10, 1)
	if len(br.LinksBetween("n01", "n06")) != 1 {
		t.Error("bridge: no link (1, N/2+1)")
	}
	mesh, _ := Generate("mesh", 100, 1)
	if got := len(mesh.Neighbours("n001")); got != 2 {
		t.Errorf("grid corner has %d neighbours", got)
	}
	if got := len(mesh.Neighbours("n012")); got != 4 {
		t.Errorf("grid inner node has %d neighbours", got)
	}
	g, _ := Generate("rgg", 50, 7)
	for _, l := range g.Links {
		if l.LengthKM <= 0 || math.Abs(l.SKRbps-LinkRate(l.LengthKM)) > 1 {
			t.Errorf("rgg link %s: %v km at %v bit/s, want %v", l.ID, l.LengthKM, l.SKRbps, LinkRate(l.LengthKM))
		}
	}
}

func TestGenerateDeterministic(t *testing.T) {
	ignore := cmpopts.IgnoreUnexported(topology.Topology{})
	for _, f := range Families {
		a, err := Generate(f, 30, 42)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Generate(f, 30, 42)
		if d := cmp.Diff(a, b, ignore); d != "" {
			t.Errorf("%s: two runs with seed 42 differ:\n%s", f, d)
		}
		if f == "rgg" || f == "random" {
			c, _ := Generate(f, 30, 43)
			if cmp.Equal(a.Links, c.Links) {
				t.Errorf("%s: seeds 42 and 43 give the same links", f)
			}
		}
	}
}

func TestGenerateRejects(t *testing.T) {
	for _, tc := range []struct {
		f string
		n int
	}{{"ring", 2}, {"bridge", 3}, {"star", 1}, {"torus", 10}} {
		if _, err := Generate(tc.f, tc.n, 1); err == nil {
			t.Errorf("Generate(%s, %d) succeeded", tc.f, tc.n)
		}
	}
}

func TestLinkRate(t *testing.T) {
	// dkms's table: 5 km → 1588.7 keys/s, 20 km → 796.
	for _, tc := range []struct{ km, keys float64 }{{0, 2000}, {5, 1588.7}, {20, 796.2}, {30, 502.4}} {
		if got := LinkRate(tc.km) / KeyBits; math.Abs(got-tc.keys) > 0.1 {
			t.Errorf("LinkRate(%v) = %v keys/s, want %v", tc.km, got, tc.keys)
		}
	}
}
