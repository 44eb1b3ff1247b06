package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sdn"
	"github.com/qkms/qkms/internal/topology"
)

// BoundWidestPath names the bound a pair's delivered rate is compared to:
// the widest single path at nominal rates (sdn.WidestPath), what the
// network's default single-path relay can carry. The max-flow
// (sdn.MaxFlow, what multipath relay could carry) is recorded beside it.
const BoundWidestPath = "widest_path"

// Pair is one ordered SAE pair of a run and its bounds (bit/s, at the
// scaled link rates).
type Pair struct {
	Master qkd.SAEID  `json:"master"`
	Slave  qkd.SAEID  `json:"slave"`
	From   qkd.NodeID `json:"from"`
	To     qkd.NodeID `json:"to"`
	// WidestHops is the hop count of the widest path.
	WidestHops int `json:"widest_hops"`
	// Bound names the bound of Ratio (BoundWidestPath).
	Bound      string  `json:"bound"`
	WidestBps  float64 `json:"widest_path_bps"`
	MaxFlowBps float64 `json:"max_flow_bps"`
	// ShareBps is the pair's share of its widest path when every pair of
	// the run routes over its own widest path: min over the path's hops of
	// the hop's rate over the number of the run's pairs crossing it. It
	// sets the paced load (half of it) and is the uniform-demand ceiling
	// of the pair.
	ShareBps float64 `json:"share_bps"`

	path []qkd.NodeID
}

// choosePairs picks k distinct ordered pairs of SAEs at different nodes
// of t (all of them if there are fewer), deterministically from rng: the
// first is a neighbour pair when t has a link with SAEs at both ends (so
// that a run holds direct and relayed pairs), the others are uniform.
func choosePairs(t *topology.Topology, k int, rng *rand.Rand) []Pair {
	type cand struct{ m, s topology.SAE }
	var all []cand
	for _, m := range t.SAEs {
		for _, s := range t.SAEs {
			if m.Node != s.Node {
				all = append(all, cand{m, s})
			}
		}
	}
	if k <= 0 || k > len(all) {
		k = len(all)
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	if i := slices.IndexFunc(all, func(c cand) bool { return len(t.LinksBetween(c.m.Node, c.s.Node)) > 0 }); i > 0 {
		all[0], all[i] = all[i], all[0]
	}
	ps := make([]Pair, k)
	for i, c := range all[:k] {
		ps[i] = Pair{Master: c.m.ID, Slave: c.s.ID, From: c.m.Node, To: c.s.Node, Bound: BoundWidestPath}
	}
	return ps
}

// bound fills the pairs' bounds on t (its rates already scaled).
func bound(t *topology.Topology, ps []Pair) error {
	type hopKey [2]qkd.NodeID
	key := func(a, b qkd.NodeID) hopKey {
		if b < a {
			a, b = b, a
		}
		return hopKey{a, b}
	}
	crossing := map[hopKey]int{}
	for i := range ps {
		p := &ps[i]
		mf, err := sdn.MaxFlow(t, p.From, p.To)
		if err != nil {
			return fmt.Errorf("max-flow %s→%s: %w", p.From, p.To, err)
		}
		wp, err := sdn.WidestPath(t, p.From, p.To)
		if err != nil {
			return fmt.Errorf("widest path %s→%s: %w", p.From, p.To, err)
		}
		p.MaxFlowBps, p.WidestBps, p.WidestHops, p.path = mf, wp.Capacity, len(wp.Hops), wp.Nodes
		for j := 1; j < len(wp.Nodes); j++ {
			crossing[key(wp.Nodes[j-1], wp.Nodes[j])]++
		}
	}
	for i := range ps {
		p := &ps[i]
		p.ShareBps = p.WidestBps
		for j := 1; j < len(p.path); j++ {
			a, b := p.path[j-1], p.path[j]
			var hop float64
			for _, l := range t.LinksBetween(a, b) {
				hop += l.SKRbps
			}
			p.ShareBps = min(p.ShareBps, hop/float64(crossing[key(a, b)]))
		}
	}
	return nil
}
