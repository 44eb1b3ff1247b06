package sdn

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/qkms/qkms/internal/qkd"
)

// booking is the rate a stream holds on one link. Best-effort streams hold
// 0 on the links they use, so a link going down still finds them.
type booking struct {
	link int
	rate float64
}

// allocateRoute chooses, for every hop of r, the parallel link(s) that
// carry its rate — the links with the most available rate first — and
// writes them into r's hops (Link, Shares) and Tree. A hop shared by the
// branches of a tree is allocated once. It returns the resulting bookings
// per link, by link position, or an error wrapping ErrStaleRoute (a node or
// link on the route is out of service) or ErrCapacity.
func (w *weights) allocateRoute(r *Route) ([]booking, error) {
	a := allocator{w: w, rem: slices.Clone(w.link), booked: make(map[int]float64)}
	if r.Multipath {
		for i := range r.Paths {
			p := &r.Paths[i]
			for j := range p.Hops {
				if err := a.hop(&p.Hops[j], p.Rate); err != nil {
					return nil, err
				}
			}
		}
	} else {
		done := make(map[[2]qkd.NodeID]Hop)
		for i := range r.Paths {
			p := &r.Paths[i]
			for j := range p.Hops {
				h := &p.Hops[j]
				key := [2]qkd.NodeID{h.From, h.To}
				if prev, ok := done[key]; ok {
					*h = prev
					continue
				}
				if err := a.hop(h, r.Rate); err != nil {
					return nil, err
				}
				done[key] = *h
			}
		}
		r.Tree = treeOf(r.Paths)
	}
	out := make([]booking, 0, len(a.booked))
	for li, rate := range a.booked {
		out = append(out, booking{link: li, rate: rate})
	}
	slices.SortFunc(out, func(x, y booking) int { return x.link - y.link })
	return out, nil
}

type allocator struct {
	w      *weights
	rem    []float64 // available rate left per link
	booked map[int]float64
}

func (a *allocator) hop(h *Hop, rate float64) error {
	g := a.w.g
	u, ok1 := g.index[h.From]
	v, ok2 := g.index[h.To]
	if !ok1 || !ok2 {
		return fmt.Errorf("%w: hop %s → %s: unknown node", ErrStaleRoute, h.From, h.To)
	}
	if !a.w.nodeOK[u] || !a.w.nodeOK[v] {
		return fmt.Errorf("%w: hop %s → %s: node not online", ErrStaleRoute, h.From, h.To)
	}
	k := g.hopAt(u, v)
	if k < 0 {
		return fmt.Errorf("%w: hop %s → %s: not neighbours", ErrStaleRoute, h.From, h.To)
	}
	var cands []int
	for _, li := range g.adj[u][k].links {
		if a.rem[li] >= 0 {
			cands = append(cands, li)
		}
	}
	if len(cands) == 0 {
		return fmt.Errorf("%w: hop %s → %s: every link is down", ErrStaleRoute, h.From, h.To)
	}
	slices.SortStableFunc(cands, func(x, y int) int { return cmp.Compare(a.rem[y], a.rem[x]) })
	h.Shares = nil
	left := rate
	for _, li := range cands {
		take := min(a.rem[li], left)
		if take <= eps && len(h.Shares) > 0 {
			continue
		}
		h.Shares = append(h.Shares, LinkShare{Link: g.links[li].ID, Rate: take})
		left -= take
		if left <= eps {
			break
		}
	}
	if left > eps {
		return fmt.Errorf("%w: hop %s → %s has %.0f bit/s less than the %.0f bit/s needed", ErrCapacity, h.From, h.To, left, rate)
	}
	h.Shares[0].Rate += left // rounding dust
	h.Link = h.Shares[0].Link
	for _, s := range h.Shares {
		li := g.linkIndex[s.Link]
		a.rem[li] -= s.Rate
		a.booked[li] += s.Rate
	}
	return nil
}
