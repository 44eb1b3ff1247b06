package sdn

import (
	"math"
	"slices"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// graph is the fixed shape of a topology: nodes numbered in node-ID order
// (so comparing numbers compares IDs), and per node its hops — one per
// neighbour, holding every parallel link to that neighbour.
type graph struct {
	ids       []qkd.NodeID // sorted
	index     map[qkd.NodeID]int
	links     []topology.Link // topology order
	linkIndex map[qkd.LinkID]int
	ends      [][2]int // node numbers of each link's ends
	adj       [][]hop  // per node, by neighbour number
	nhops     int      // total length of the adj lists
}

// hop is the set of links from one node to one neighbour.
type hop struct {
	to    int
	rev   int   // position of the reverse hop in adj[to]
	links []int // link positions, by link ID
}

func newGraph(t *topology.Topology) *graph {
	g := &graph{
		index:     make(map[qkd.NodeID]int, len(t.Nodes)),
		links:     slices.Clone(t.Links),
		linkIndex: make(map[qkd.LinkID]int, len(t.Links)),
		ends:      make([][2]int, len(t.Links)),
	}
	for _, n := range t.Nodes {
		g.ids = append(g.ids, n.ID)
	}
	slices.Sort(g.ids)
	for i, id := range g.ids {
		g.index[id] = i
	}
	g.adj = make([][]hop, len(g.ids))
	pos := make(map[[2]int]int) // (u, v) → position of the hop in adj[u]
	for li, l := range g.links {
		g.linkIndex[l.ID] = li
		u, v := g.index[l.A], g.index[l.B]
		g.ends[li] = [2]int{u, v}
		for _, e := range [][2]int{{u, v}, {v, u}} {
			k, ok := pos[e]
			if !ok {
				k = len(g.adj[e[0]])
				pos[e] = k
				g.adj[e[0]] = append(g.adj[e[0]], hop{to: e[1]})
			}
			g.adj[e[0]][k].links = append(g.adj[e[0]][k].links, li)
		}
	}
	for u := range g.adj {
		slices.SortFunc(g.adj[u], func(a, b hop) int { return a.to - b.to })
		for k := range g.adj[u] {
			slices.SortFunc(g.adj[u][k].links, func(a, b int) int {
				return compareStrings(string(g.links[a].ID), string(g.links[b].ID))
			})
		}
	}
	for u := range g.adj {
		g.nhops += len(g.adj[u])
		for k, h := range g.adj[u] {
			for r, back := range g.adj[h.to] {
				if back.to == u {
					g.adj[u][k].rev = r
				}
			}
		}
	}
	return g
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// unusable marks a link or hop that routing must not use (down, or an end
// not online). Usable capacities are ≥ 0.
const unusable = -1.0

// eps is the slack in rate comparisons, bit/s: rates are sums of floats.
const eps = 1e-6

// weights are the capacities of one routing decision: per link its
// available rate (or unusable), per hop the sum over its usable links.
type weights struct {
	g      *graph
	nodeOK []bool
	link   []float64   // per link: available rate ≥ 0, or unusable
	hop    [][]float64 // parallel to g.adj: capacity ≥ 0, or unusable
	// nominal, if set, is per link its nominal rate less promises (or
	// unusable, as link): what best-effort multipath routes are laid on.
	nominal []float64
}

// newWeights derives hop capacities from per-link availability; a hop is
// usable when both its ends are and at least one of its links is.
func newWeights(g *graph, nodeOK []bool, link []float64) *weights {
	w := &weights{g: g, nodeOK: nodeOK, link: link, hop: make([][]float64, len(g.adj))}
	caps := make([]float64, g.nhops)
	for u, hs := range g.adj {
		w.hop[u], caps = caps[:len(hs):len(hs)], caps[len(hs):]
		for k, h := range hs {
			c := unusable
			if nodeOK[u] && nodeOK[h.to] {
				for _, li := range h.links {
					if a := link[li]; a >= 0 {
						c = math.Max(c, 0) + a
					}
				}
			}
			w.hop[u][k] = c
		}
	}
	return w
}

// nominalWeights: every node online, every link up, at its nominal rate.
func nominalWeights(g *graph) *weights {
	ok := make([]bool, len(g.ids))
	for i := range ok {
		ok[i] = true
	}
	link := make([]float64, len(g.links))
	for i, l := range g.links {
		link[i] = l.SKRbps
	}
	return newWeights(g, ok, link)
}

// hopAt returns the position of the hop u→v in g.adj[u], or -1.
func (g *graph) hopAt(u, v int) int {
	k, ok := slices.BinarySearchFunc(g.adj[u], v, func(h hop, v int) int { return h.to - v })
	if !ok {
		return -1
	}
	return k
}
