package sdn

import (
	"slices"

	"github.com/qkms/qkms/internal/qkd"
)

// HopRef names a neighbour on a route and the link(s) to it.
type HopRef struct {
	Node   qkd.NodeID  `json:"node"`
	Link   qkd.LinkID  `json:"link"`
	Shares []LinkShare `json:"shares,omitempty"` // when the rate is spread over parallel links
}

// ForwardingEntry is what one KMS on a route must be configured with to
// forward a key stream (QUICKS link/relay/{key_stream_id}).
type ForwardingEntry struct {
	StreamID StreamID   `json:"key_stream_id"`
	Node     qkd.NodeID `json:"node"` // the KMS this entry is for
	// Path is the index of the path in a multipath route (each path
	// carries its own part of the key); 0 otherwise.
	Path            int          `json:"path"`
	Source          qkd.NodeID   `json:"source"`
	SourceSAE       qkd.SAEID    `json:"source_sae,omitempty"`
	Destinations    []qkd.NodeID `json:"destination"`
	DestinationSAEs []qkd.SAEID  `json:"destination_saes,omitempty"`
	// Deliver: Node is a destination and stores the key for its SAEs (it
	// may also forward it, in a group-key tree).
	Deliver bool     `json:"deliver,omitempty"`
	Prev    *HopRef  `json:"prev_hop,omitempty"`  // nil at the source
	Next    []HopRef `json:"next_hops,omitempty"` // by node ID; empty at a leaf
	Rate    float64  `json:"rate_bps"`            // rate of this path or tree
}

// Neighbours lists the adjacent KMSes of the entry, previous hop first
// (QUICKS next_node_info, before mapping node IDs to URI authorities).
func (e ForwardingEntry) Neighbours() []qkd.NodeID {
	var out []qkd.NodeID
	if e.Prev != nil {
		out = append(out, e.Prev.Node)
	}
	for _, n := range e.Next {
		out = append(out, n.Node)
	}
	return out
}

// Forwarding returns the forwarding entries of every node on s's route:
// for a single path or a group-key tree one entry per node, from the
// source down the tree (depth first, branches by node ID); for a
// multipath route one entry per node of each path, path by path. Each
// entry's next hop is the next node's previous hop, with the same links.
func Forwarding(s Stream) []ForwardingEntry {
	r := s.Route
	base := ForwardingEntry{
		StreamID: s.ID, Source: r.Source, SourceSAE: s.SourceSAE,
		Destinations: slices.Clone(r.Destinations), DestinationSAEs: slices.Clone(s.DestinationSAEs),
	}
	var out []ForwardingEntry
	if r.Multipath {
		for i, p := range r.Paths {
			for j, n := range p.Nodes {
				e := base.with(n, r.Destinations, p.Rate)
				e.Path = i
				if j > 0 {
					e.Prev = refFrom(p.Hops[j-1])
				}
				if j < len(p.Hops) {
					e.Next = []HopRef{*refTo(p.Hops[j])}
				}
				out = append(out, e)
			}
		}
		return out
	}
	tree := r.Tree
	if tree == nil {
		tree = treeOf(r.Paths)
	}
	var walk func(n qkd.NodeID, prev *HopRef)
	walk = func(n qkd.NodeID, prev *HopRef) {
		e := base.with(n, r.Destinations, r.Rate)
		e.Prev = prev
		for _, h := range tree[n] {
			e.Next = append(e.Next, *refTo(h))
		}
		out = append(out, e)
		for _, h := range tree[n] {
			walk(h.To, refFrom(h))
		}
	}
	walk(r.Source, nil)
	return out
}

func (e ForwardingEntry) with(n qkd.NodeID, dests []qkd.NodeID, rate float64) ForwardingEntry {
	e.Destinations = slices.Clone(e.Destinations)
	e.DestinationSAEs = slices.Clone(e.DestinationSAEs)
	e.Node, e.Rate, e.Deliver = n, rate, slices.Contains(dests, n)
	return e
}

// refTo is the hop seen from its start: the next node.
func refTo(h Hop) *HopRef {
	return &HopRef{Node: h.To, Link: h.Link, Shares: sharesIfSplit(h)}
}

// refFrom is the hop seen from its end: the previous node.
func refFrom(h Hop) *HopRef {
	return &HopRef{Node: h.From, Link: h.Link, Shares: sharesIfSplit(h)}
}

func sharesIfSplit(h Hop) []LinkShare {
	if len(h.Shares) < 2 {
		return nil
	}
	return slices.Clone(h.Shares)
}
