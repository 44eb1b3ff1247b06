package sdn

import (
	"fmt"
	"math"
	"slices"

	"github.com/qkms/qkms/internal/qkd"
)

// Request asks for a route for a key stream (QUICKS link/registration).
type Request struct {
	Source qkd.NodeID `json:"source"`
	// Destinations: one for a pairwise key, several for a group key. They
	// must be distinct and differ from Source.
	Destinations []qkd.NodeID   `json:"destination"`
	Rate         float64        `json:"rate_bps"` // requested key rate, bit/s; 0 = best effort
	Options      RequestOptions `json:"options"`
}

// RequestOptions are the QUICKS registration options.
type RequestOptions struct {
	// Multipath allows splitting a pairwise stream over several paths when
	// no single path carries the rate (or, for best effort, to reach the
	// max-flow). Ignored for group keys.
	Multipath bool `json:"multipath"`
	// Split, with Multipath, asks for node-disjoint paths that each carry
	// one XOR share of every key (docs/relay-design.md "Multipath relay"):
	// no single intermediate node learns a key, and the stream's rate is
	// that of its narrowest path. Without it a multipath stream spreads
	// its keys over the paths of a max-flow. Where the network has no
	// second node-disjoint route, the stream takes one route.
	Split bool `json:"split,omitempty"`
}

// Route answers a Request.
type Route struct {
	Source       qkd.NodeID     `json:"source"`
	Destinations []qkd.NodeID   `json:"destination"`
	Options      RequestOptions `json:"options"`
	Requested    float64        `json:"requested_bps"` // the request's rate
	// Rate is the rate the route offers and Register promises: Requested
	// when it can be met, else the best on offer (CounterProposal); 0 for
	// best effort.
	Rate            float64 `json:"rate_bps"`
	CounterProposal bool    `json:"counter_proposal,omitempty"`
	// Capacity is the rate available along the route when it was computed:
	// its bottleneck (for a tree, the narrowest hop of the tree), or the
	// max-flow for a multipath route.
	Capacity float64 `json:"capacity_bps"`
	// Multipath: Paths carry separate parts of the key (their rates add up
	// to Rate). Otherwise every path carries the same key at Rate and Tree
	// holds the forwarding tree.
	Multipath bool `json:"multipath,omitempty"`
	// Paths: one per destination (branches of the tree, sharing their
	// common prefix), or the paths of a multipath route, fewest hops first.
	Paths []Path `json:"paths"`
	// Tree gives, for every node of a single-path or group route that
	// forwards, its next hops (by next node ID). Nil for multipath routes.
	Tree map[qkd.NodeID][]Hop `json:"tree,omitempty"`
}

// Path is a sequence of hops from the source to one destination.
type Path struct {
	Nodes []qkd.NodeID `json:"nodes"`
	Hops  []Hop        `json:"hops"`
	Rate  float64      `json:"rate_bps"` // rate this path carries
	// Capacity is the path's bottleneck available rate, or its share of the
	// max-flow in a multipath route.
	Capacity float64 `json:"capacity_bps"`
}

// Hop is one step of a path between neighbour nodes.
type Hop struct {
	From qkd.NodeID `json:"from"`
	To   qkd.NodeID `json:"to"`
	// Link is the link this hop uses: the parallel link with the most
	// available rate. When the rate needs several parallel links, Shares
	// lists them, Link first.
	Link   qkd.LinkID  `json:"link"`
	Shares []LinkShare `json:"shares"`
}

// LinkShare is the part of a hop's rate carried by one parallel link.
type LinkShare struct {
	Link qkd.LinkID `json:"link"`
	Rate float64    `json:"rate_bps"`
}

// Hops returns the number of hops of the longest path.
func (r Route) Hops() int {
	n := 0
	for _, p := range r.Paths {
		n = max(n, len(p.Hops))
	}
	return n
}

// Route selects a route for req with the current state (see the package
// documentation for the choice). It books nothing: Register does. When the
// requested rate cannot be met the route offers the best rate and sets
// CounterProposal; when no route exists, or a rate is requested and every
// route is saturated, the error wraps ErrNoRoute.
func (c *Controller) Route(req Request) (Route, error) {
	c.mu.RLock()
	w := c.weights(c.now())
	c.mu.RUnlock()
	return c.route(req, w)
}

// route computes a route on w; it only reads the controller's fixed fields.
func (c *Controller) route(req Request, w *weights) (Route, error) {
	s, dests, err := c.checkRequest(req)
	if err != nil {
		return Route{}, err
	}
	r := Route{
		Source: req.Source, Destinations: slices.Clone(req.Destinations),
		Options: req.Options, Requested: req.Rate,
	}
	if req.Options.Multipath && req.Rate == 0 && w.nominal != nil {
		// A best-effort multipath stream is laid on the links' nominal
		// rates (less promises), not on their last reports: right after
		// start, or after a burst of internal use, a report can make a
		// good path look empty, and the stream keeps its paths until it
		// is rerouted. Links that are down and nodes offline stay out.
		w = newWeights(c.g, w.nodeOK, w.nominal)
	}
	switch {
	case req.Options.Multipath && req.Options.Split && len(dests) == 1:
		err = c.split(w, &r, s, dests[0])
	case req.Options.Multipath && len(dests) == 1:
		err = c.multipath(w, &r, s, dests[0])
	default:
		err = c.tree(w, &r, s, dests)
	}
	if err != nil {
		return Route{}, err
	}
	if _, err := w.allocateRoute(&r); err != nil {
		return Route{}, fmt.Errorf("sdn: internal: %w", err)
	}
	return r, nil
}

func (c *Controller) checkRequest(req Request) (int, []int, error) {
	if !(req.Rate >= 0) || math.IsInf(req.Rate, 0) {
		return 0, nil, fmt.Errorf("%w: rate %v must be finite and >= 0", ErrInvalid, req.Rate)
	}
	if len(req.Destinations) == 0 {
		return 0, nil, fmt.Errorf("%w: no destination", ErrInvalid)
	}
	s, ok := c.g.index[req.Source]
	if !ok {
		return 0, nil, fmt.Errorf("%w %q", ErrUnknownNode, req.Source)
	}
	dests := make([]int, 0, len(req.Destinations))
	for _, id := range req.Destinations {
		d, ok := c.g.index[id]
		switch {
		case !ok:
			return 0, nil, fmt.Errorf("%w %q", ErrUnknownNode, id)
		case d == s:
			return 0, nil, fmt.Errorf("%w: destination %q is the source", ErrInvalid, id)
		case slices.Contains(dests, d):
			return 0, nil, fmt.Errorf("%w: destination %q twice", ErrInvalid, id)
		}
		dests = append(dests, d)
	}
	return s, dests, nil
}

// tree routes to one or several destinations over a breadth-first tree.
func (c *Controller) tree(w *weights, r *Route, s int, dests []int) error {
	width := w.widths(s)
	best := math.Inf(1)
	for _, d := range dests {
		if width[d] < 0 {
			return c.noRoute(w, s, d)
		}
		best = min(best, width[d])
	}
	if r.Requested > 0 && best <= eps {
		return fmt.Errorf("%w: every route from %s to %s is saturated", ErrNoRoute, c.g.ids[s], c.g.ids[dests[0]])
	}
	threshold := best
	if c.policy == FewestHops && r.Requested > 0 && r.Requested <= best+eps {
		threshold = r.Requested
	}
	t := w.bfs(s, threshold)
	r.Capacity = math.Inf(1)
	for _, d := range dests {
		p := w.newPath(t.path(d), 0)
		r.Capacity = min(r.Capacity, p.Capacity)
		r.Paths = append(r.Paths, p)
	}
	r.Rate = offer(r.Requested, r.Capacity, &r.CounterProposal)
	for i := range r.Paths {
		r.Paths[i].Rate = r.Rate
	}
	return nil // allocateRoute fills the hops' links and the tree
}

// offer is the rate to promise for a request given what is available.
func offer(requested, available float64, counter *bool) float64 {
	if requested > available+eps {
		*counter = true
		return available
	}
	return requested
}

// multipath splits a pairwise stream over the paths of a max-flow when no
// single path carries the rate.
func (c *Controller) multipath(w *weights, r *Route, s, d int) error {
	width := w.widths(s)[d]
	if width < 0 {
		return c.noRoute(w, s, d)
	}
	if r.Requested > 0 && width+eps >= r.Requested {
		return c.tree(w, r, s, []int{d})
	}
	total, f := w.maxFlow(s, d)
	if r.Requested > 0 && total <= eps {
		return fmt.Errorf("%w: every route from %s to %s is saturated", ErrNoRoute, c.g.ids[s], c.g.ids[d])
	}
	fps := w.g.decompose(s, d, f)
	if len(fps) > maxSpreadPaths { // fewest hops first: the longest detours go
		fps = fps[:maxSpreadPaths]
		total = 0
		for _, fp := range fps {
			total += fp.rate
		}
	}
	if len(fps) <= 1 {
		return c.tree(w, r, s, []int{d})
	}
	r.Multipath, r.Capacity = true, total
	r.Rate = offer(r.Requested, total, &r.CounterProposal)
	left := r.Rate
	for _, fp := range fps {
		p := w.newPath(fp.nodes, fp.rate)
		if r.Requested > 0 {
			p.Rate = min(p.Capacity, left)
			left -= p.Rate
			if p.Rate <= eps {
				break
			}
		}
		r.Paths = append(r.Paths, p)
	}
	if len(r.Paths) == 1 { // the rate fitted the first path after all
		r.Multipath = false
		r.Paths[0].Rate = r.Rate
	}
	return nil
}

// maxSpreadPaths bounds the paths of a spread stream: each costs a
// forwarding entry at every node on it and a configuration push to each,
// and the max-flow's last paths are its longest and narrowest.
const maxSpreadPaths = 8

// splitPaths is the number of node-disjoint paths a split stream takes:
// two, the fewest that keep its keys from every single node; each more
// path costs key on every hop of it and adds no rate.
const splitPaths = 2

// split routes a pairwise stream over splitPaths node-disjoint paths
// whose narrowest is as wide as can be (disjointPaths), each carrying the
// whole rate (one share of every key).
func (c *Controller) split(w *weights, r *Route, s, d int) error {
	width := w.widths(s)[d]
	if width < 0 {
		return c.noRoute(w, s, d)
	}
	paths := w.disjointPaths(s, d, splitPaths)
	if len(paths) < 2 {
		return c.tree(w, r, s, []int{d})
	}
	r.Multipath, r.Capacity = true, math.Inf(1)
	for _, nodes := range paths {
		p := w.newPath(nodes, 0)
		r.Capacity = min(r.Capacity, p.Capacity)
		r.Paths = append(r.Paths, p)
	}
	if r.Requested > 0 && r.Capacity <= eps {
		return fmt.Errorf("%w: every route from %s to %s is saturated", ErrNoRoute, c.g.ids[s], c.g.ids[d])
	}
	r.Rate = offer(r.Requested, r.Capacity, &r.CounterProposal)
	for i := range r.Paths {
		r.Paths[i].Rate = r.Rate
	}
	return nil
}

// disjointPaths returns k paths from s to d that share no node but s and
// d, with the largest narrowest hop such paths can have (fewest hops
// first among those), or nil if there are no k such paths. It tries the
// hop capacities from the widest down: at each, only hops at least that
// wide count, and k augmentations of a unit max-flow over the graph with
// every node but s and d split in two (in → out, capacity 1) find the
// paths if they exist.
func (w *weights) disjointPaths(s, d, k int) [][]int {
	var caps []float64
	for u := range w.hop {
		for _, c := range w.hop[u] {
			if c > eps {
				caps = append(caps, c)
			}
		}
	}
	slices.Sort(caps)
	caps = slices.Compact(caps)
	for i := len(caps) - 1; i >= 0; i-- {
		if ps := w.unitPaths(s, d, k, caps[i]); ps != nil {
			return ps
		}
	}
	return nil
}

// unitPaths finds k node-disjoint paths from s to d over hops of capacity
// at least min (nil if there are none), by k breadth-first augmentations
// on the node-split graph: node v is v_in (2v) and v_out (2v+1).
func (w *weights) unitPaths(s, d, k int, min float64) [][]int {
	n := len(w.g.ids)
	type arc struct{ to, rev, cap int }
	adj := make([][]arc, 2*n)
	add := func(u, v int) {
		adj[u] = append(adj[u], arc{to: v, rev: len(adj[v]), cap: 1})
		adj[v] = append(adj[v], arc{to: u, rev: len(adj[u]) - 1, cap: 0})
	}
	for v := range n {
		if !w.nodeOK[v] {
			continue
		}
		c := 1
		if v == s || v == d {
			c = k
		}
		for range c {
			add(2*v, 2*v+1)
		}
	}
	for u := range n {
		for j, h := range w.g.adj[u] {
			if w.hop[u][j]+eps >= min && h.to != s && u != d {
				add(2*u+1, 2*h.to)
			}
		}
	}
	src, dst := 2*s+1, 2*d
	prev := make([][2]int, 2*n) // node, arc index
	for found := 0; found < k; found++ {
		for i := range prev {
			prev[i] = [2]int{-1, -1}
		}
		prev[src] = [2]int{src, -1}
		queue := []int{src}
		for len(queue) > 0 && prev[dst][0] < 0 {
			u := queue[0]
			queue = queue[1:]
			for i, a := range adj[u] {
				if a.cap > 0 && prev[a.to][0] < 0 {
					prev[a.to] = [2]int{u, i}
					queue = append(queue, a.to)
				}
			}
		}
		if prev[dst][0] < 0 {
			return nil
		}
		for v := dst; v != src; v = prev[v][0] {
			u, i := prev[v][0], prev[v][1]
			adj[u][i].cap--
			adj[v][adj[u][i].rev].cap++
		}
	}
	// Read the k paths off the flow: an arc u_out → v_in that carries
	// flow has no capacity left (it had 1).
	var out [][]int
	used := make(map[[2]int]bool)
	for range k {
		path := []int{s}
		for v := s; v != d; {
			next := -1
			for i, a := range adj[2*v+1] {
				if a.to%2 == 0 && a.cap == 0 && !used[[2]int{2*v + 1, i}] && a.to/2 != v {
					used[[2]int{2*v + 1, i}] = true
					next = a.to / 2
					break
				}
			}
			if next < 0 || len(path) > n {
				return nil
			}
			path = append(path, next)
			v = next
		}
		out = append(out, path)
	}
	slices.SortStableFunc(out, func(a, b []int) int { return len(a) - len(b) })
	return out
}

// noRoute explains why d cannot be reached from s.
func (c *Controller) noRoute(w *weights, s, d int) error {
	switch {
	case !w.nodeOK[s]:
		return fmt.Errorf("%w: source %s is not online", ErrNoRoute, c.g.ids[s])
	case !w.nodeOK[d]:
		return fmt.Errorf("%w: destination %s is not online", ErrNoRoute, c.g.ids[d])
	}
	return fmt.Errorf("%w: %s and %s are not connected over online nodes and up links", ErrNoRoute, c.g.ids[s], c.g.ids[d])
}

// newPath builds a Path over node numbers; capacity 0 means the path's
// bottleneck. Hops get their links from allocate later.
func (w *weights) newPath(nodes []int, capacity float64) Path {
	p := Path{Nodes: make([]qkd.NodeID, len(nodes)), Hops: make([]Hop, len(nodes)-1)}
	bottleneck := math.Inf(1)
	for i, u := range nodes {
		p.Nodes[i] = w.g.ids[u]
		if i > 0 {
			v := nodes[i-1]
			bottleneck = min(bottleneck, w.hop[v][w.g.hopAt(v, u)])
			p.Hops[i-1] = Hop{From: w.g.ids[v], To: w.g.ids[u]}
		}
	}
	p.Capacity = bottleneck
	if capacity > 0 {
		p.Capacity = capacity
	}
	return p
}

// treeOf merges the paths of a single-path or group route into per-node
// next hops, sorted by next node ID.
func treeOf(paths []Path) map[qkd.NodeID][]Hop {
	tree := make(map[qkd.NodeID][]Hop)
	for _, p := range paths {
		for _, h := range p.Hops {
			if !slices.ContainsFunc(tree[h.From], func(x Hop) bool { return x.To == h.To }) {
				tree[h.From] = append(tree[h.From], h)
			}
		}
	}
	for _, hs := range tree {
		slices.SortFunc(hs, func(a, b Hop) int { return compareStrings(string(a.To), string(b.To)) })
	}
	return tree
}
