package sdn

import (
	"fmt"
	"math"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// flow is a net flow on the hops of an undirected graph: f[u][k] is the
// flow from u to adj[u][k].to, and f[v][rev] = -f[u][k].
type flow [][]float64

// maxFlow runs Edmonds–Karp from s to t on the hop capacities (an
// undirected hop of capacity c admits a net flow in [-c, c]) and returns
// the value and the flow. Augmenting paths are fewest-hop first, ties by
// node ID, so the result is deterministic.
func (w *weights) maxFlow(s, t int) (float64, flow) {
	g := w.g
	f := make(flow, len(g.adj))
	back := make([]float64, g.nhops)
	for u := range f {
		n := len(g.adj[u])
		f[u], back = back[:n:n], back[n:]
	}
	if s == t || !w.nodeOK[s] || !w.nodeOK[t] {
		return 0, f
	}
	var total float64
	parent, via := make([]int, len(g.ids)), make([]int, len(g.ids))
	queue := make([]int, 0, len(g.ids))
	for {
		if !w.augmentingPath(s, t, f, parent, via, queue) {
			return total, f
		}
		push := math.Inf(1)
		for v := t; v != s; v = parent[v] {
			u, k := parent[v], via[v]
			push = math.Min(push, w.hop[u][k]-f[u][k])
		}
		for v := t; v != s; v = parent[v] {
			u, k := parent[v], via[v]
			f[u][k] += push
			f[v][g.adj[u][k].rev] -= push
		}
		total += push
	}
}

// augmentingPath is a breadth-first search for a fewest-hop path from s to
// t with residual capacity; it fills parent and via and reports success.
// queue is scratch space.
func (w *weights) augmentingPath(s, t int, f flow, parent, via, queue []int) bool {
	for i := range parent {
		parent[i] = -1
	}
	parent[s] = s
	queue = append(queue[:0], s)
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for k, h := range w.g.adj[u] {
			v := h.to
			if parent[v] >= 0 || w.hop[u][k] < 0 || !w.nodeOK[v] || w.hop[u][k]-f[u][k] <= eps {
				continue
			}
			parent[v], via[v] = u, k
			if v == t {
				return true
			}
			queue = append(queue, v)
		}
	}
	return false
}

// flowPath is one path of a flow decomposition.
type flowPath struct {
	nodes []int
	rate  float64
}

// decompose splits a flow from s to t into paths, fewest hops first (ties
// by node ID); it consumes f. Flow on cycles, if any, is dropped.
func (g *graph) decompose(s, t int, f flow) []flowPath {
	var out []flowPath
	parent, via := make([]int, len(g.ids)), make([]int, len(g.ids))
	queue := make([]int, 0, len(g.ids))
	for {
		for i := range parent {
			parent[i] = -1
		}
		parent[s] = s
		queue = append(queue[:0], s)
		for len(queue) > 0 && parent[t] < 0 {
			u := queue[0]
			queue = queue[1:]
			for k, h := range g.adj[u] {
				if parent[h.to] < 0 && f[u][k] > eps {
					parent[h.to], via[h.to] = u, k
					queue = append(queue, h.to)
				}
			}
		}
		if parent[t] < 0 {
			return out
		}
		rate := math.Inf(1)
		var nodes []int
		for v := t; v != s; v = parent[v] {
			rate = math.Min(rate, f[parent[v]][via[v]])
			nodes = append(nodes, v)
		}
		nodes = append(nodes, s)
		for i, j := 0, len(nodes)-1; i < j; i, j = i+1, j-1 {
			nodes[i], nodes[j] = nodes[j], nodes[i]
		}
		for v := t; v != s; v = parent[v] {
			u, k := parent[v], via[v]
			f[u][k] -= rate
			f[v][g.adj[u][k].rev] += rate
		}
		out = append(out, flowPath{nodes: nodes, rate: rate})
	}
}

// MaxFlow returns the maximum end-to-end key rate, bit/s, between two nodes
// of t at the links' nominal rates: the min-cut of the network, where
// parallel links add up. It bounds what multipath relay can deliver
// (docs/performance.md) and matches the `reference_results` max_flow_bps of the
// shared topology files.
func MaxFlow(t *topology.Topology, from, to qkd.NodeID) (float64, error) {
	g := newGraph(t)
	s, d, err := g.pair(from, to)
	if err != nil {
		return 0, err
	}
	v, _ := nominalWeights(g).maxFlow(s, d)
	return v, nil
}

// MinCut returns the links of a minimum cut between two nodes of t at the
// links' nominal rates (the links whose sum is MaxFlow): every link from
// the nodes the source still reaches in the max-flow's residual network
// to the others. A delivered rate is compared with what these links
// produced (docs/performance.md).
func MinCut(t *topology.Topology, from, to qkd.NodeID) ([]topology.Link, error) {
	g := newGraph(t)
	s, d, err := g.pair(from, to)
	if err != nil {
		return nil, err
	}
	w := nominalWeights(g)
	_, f := w.maxFlow(s, d)
	reach := make([]bool, len(g.ids))
	reach[s] = true
	queue := []int{s}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for k, h := range g.adj[u] {
			if !reach[h.to] && w.hop[u][k]-f[u][k] > eps {
				reach[h.to] = true
				queue = append(queue, h.to)
			}
		}
	}
	var out []topology.Link
	for _, l := range g.links {
		if reach[g.index[l.A]] != reach[g.index[l.B]] {
			out = append(out, l)
		}
	}
	return out, nil
}

// WidestPath returns the route between two nodes of t with the largest
// bottleneck at nominal rates (parallel links add up), fewest hops and
// lowest node IDs breaking ties: the single-path bound docs/performance.md
// compares delivered rates with (`widest_single_path_bps`). Its Capacity is
// the bottleneck; its Rate is 0.
func WidestPath(t *topology.Topology, from, to qkd.NodeID) (Path, error) {
	g := newGraph(t)
	s, d, err := g.pair(from, to)
	if err != nil {
		return Path{}, err
	}
	w := nominalWeights(g)
	width := w.widths(s)[d]
	if width < 0 {
		return Path{}, fmt.Errorf("%s → %s: %w", from, to, ErrNoRoute)
	}
	tree := w.bfs(s, width)
	r := Route{Paths: []Path{w.newPath(tree.path(d), 0)}}
	if _, err := w.allocateRoute(&r); err != nil {
		return Path{}, err
	}
	return r.Paths[0], nil
}

func (g *graph) pair(from, to qkd.NodeID) (int, int, error) {
	s, ok1 := g.index[from]
	d, ok2 := g.index[to]
	switch {
	case !ok1:
		return 0, 0, fmt.Errorf("%w %q", ErrUnknownNode, from)
	case !ok2:
		return 0, 0, fmt.Errorf("%w %q", ErrUnknownNode, to)
	case s == d:
		return 0, 0, fmt.Errorf("%w: source and destination are both %q", ErrInvalid, from)
	}
	return s, d, nil
}
