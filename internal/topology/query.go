package topology

import (
	"slices"

	"github.com/qkms/qkms/internal/qkd"
)

// index maps IDs to positions in the Topology's slices. It holds positions,
// not copies, so Scale stays visible through it.
type index struct {
	nodes  map[qkd.NodeID]int
	links  map[qkd.LinkID]int
	adj    map[qkd.NodeID][]int // link positions at each node, file order
	saes   map[qkd.SAEID]int
	saesAt map[qkd.NodeID][]int // SAE positions at each node, file order
}

func buildIndex(t *Topology) *index {
	x := &index{
		nodes:  make(map[qkd.NodeID]int, len(t.Nodes)),
		links:  make(map[qkd.LinkID]int, len(t.Links)),
		adj:    make(map[qkd.NodeID][]int, len(t.Nodes)),
		saes:   make(map[qkd.SAEID]int, len(t.SAEs)),
		saesAt: make(map[qkd.NodeID][]int, len(t.Nodes)),
	}
	for i, n := range t.Nodes {
		x.nodes[n.ID] = i
	}
	for i, l := range t.Links {
		x.links[l.ID] = i
		x.adj[l.A] = append(x.adj[l.A], i)
		if l.B != l.A {
			x.adj[l.B] = append(x.adj[l.B], i)
		}
	}
	for i, s := range t.SAEs {
		x.saes[s.ID] = i
		x.saesAt[s.Node] = append(x.saesAt[s.Node], i)
	}
	return x
}

// ix returns the index, or builds a throwaway one for a Topology that was
// not made by New (so a literal still answers correctly, if slowly).
func (t *Topology) ix() *index {
	if t.idx != nil {
		return t.idx
	}
	return buildIndex(t)
}

// Node returns the node with the given ID.
func (t *Topology) Node(id qkd.NodeID) (Node, bool) {
	i, ok := t.ix().nodes[id]
	if !ok {
		return Node{}, false
	}
	return t.Nodes[i], true
}

// Link returns the link with the given ID.
func (t *Topology) Link(id qkd.LinkID) (Link, bool) {
	i, ok := t.ix().links[id]
	if !ok {
		return Link{}, false
	}
	return t.Links[i], true
}

// LinksAt returns the links with n at either end, in file order.
func (t *Topology) LinksAt(n qkd.NodeID) []Link {
	return t.linksAt(t.ix(), n, func(Link) bool { return true })
}

// LinksBetween returns the links joining a and b (either direction), in
// file order: more than one for parallel links, none if not neighbours.
func (t *Topology) LinksBetween(a, b qkd.NodeID) []Link {
	return t.linksAt(t.ix(), a, func(l Link) bool { return l.Joins(a, b) })
}

func (t *Topology) linksAt(x *index, n qkd.NodeID, keep func(Link) bool) []Link {
	var out []Link
	for _, i := range x.adj[n] {
		if keep(t.Links[i]) {
			out = append(out, t.Links[i])
		}
	}
	return out
}

// Neighbours returns the nodes that share at least one link with n, sorted
// and without repeats.
func (t *Topology) Neighbours(n qkd.NodeID) []qkd.NodeID {
	var out []qkd.NodeID
	for _, i := range t.ix().adj[n] {
		out = append(out, t.Links[i].Other(n))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// SAEsAt returns the SAEs attached to node n, in file order.
func (t *Topology) SAEsAt(n qkd.NodeID) []qkd.SAEID {
	var out []qkd.SAEID
	for _, i := range t.ix().saesAt[n] {
		out = append(out, t.SAEs[i].ID)
	}
	return out
}

// NodeOf returns the node an SAE is attached to.
func (t *Topology) NodeOf(sae qkd.SAEID) (qkd.NodeID, bool) {
	i, ok := t.ix().saes[sae]
	if !ok {
		return "", false
	}
	return t.SAEs[i].Node, true
}
