package sdn

import "math"

// widths returns, for every node, the largest bottleneck capacity of a
// route from s over usable hops (+Inf at s, unusable where unreachable):
// Dijkstra with max-min in place of plus.
func (w *weights) widths(s int) []float64 {
	width := make([]float64, len(w.g.ids))
	for i := range width {
		width[i] = unusable
	}
	if !w.nodeOK[s] {
		return width
	}
	width[s] = math.Inf(1)
	done := make([]bool, len(width))
	q := widthQueue{{node: s, width: width[s]}}
	for len(q) > 0 {
		it := q.pop()
		u := it.node
		if done[u] {
			continue
		}
		done[u] = true
		for k, h := range w.g.adj[u] {
			c := w.hop[u][k]
			if c < 0 || done[h.to] {
				continue
			}
			if b := math.Min(width[u], c); b > width[h.to] {
				width[h.to] = b
				q.push(widthItem{node: h.to, width: b})
			}
		}
	}
	return width
}

type widthItem struct {
	node  int
	width float64
}

// widthQueue is a binary max-heap on width, then min on node number
// (typed, so pushes do not box).
type widthQueue []widthItem

func (q widthQueue) less(i, j int) bool {
	if q[i].width != q[j].width {
		return q[i].width > q[j].width
	}
	return q[i].node < q[j].node
}

func (q *widthQueue) push(it widthItem) {
	*q = append(*q, it)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *widthQueue) pop() widthItem {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l, best := 2*i+1, i
		if l < n && h.less(l, best) {
			best = l
		}
		if r := l + 1; r < n && h.less(r, best) {
			best = r
		}
		if best == i {
			break
		}
		h[i], h[best] = h[best], h[i]
		i = best
	}
	*q = h
	return top
}

// bfsTree is a breadth-first tree from s over the usable hops of capacity
// ≥ min. Neighbours are visited in node-ID order from a FIFO queue, so the
// tree path to every node is its fewest-hop route and, among those, the
// lexicographically smallest sequence of node IDs.
type bfsTree struct {
	parent []int // -1 for s and unreached nodes
	via    []int // position of the hop parent→node in adj[parent]
	dist   []int // hops from s; -1 if unreached
}

func (w *weights) bfs(s int, min float64) bfsTree {
	n := len(w.g.ids)
	t := bfsTree{parent: make([]int, n), via: make([]int, n), dist: make([]int, n)}
	for i := range n {
		t.parent[i], t.via[i], t.dist[i] = -1, -1, -1
	}
	t.dist[s] = 0
	queue := make([]int, 1, n)
	queue[0] = s
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for k, h := range w.g.adj[u] {
			c := w.hop[u][k]
			if c < 0 || c+eps < min || t.dist[h.to] >= 0 {
				continue
			}
			t.parent[h.to], t.via[h.to], t.dist[h.to] = u, k, t.dist[u]+1
			queue = append(queue, h.to)
		}
	}
	return t
}

// path returns the node numbers from the tree's root to v.
func (t bfsTree) path(v int) []int {
	out := make([]int, t.dist[v]+1)
	for i := t.dist[v]; i >= 0; i-- {
		out[i] = v
		v = t.parent[v]
	}
	return out
}
