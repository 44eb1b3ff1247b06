package sdn

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
)

// checkForwarding verifies the entries of s: one per node of each path (or
// of the tree), the source without a previous hop, each next hop matching
// the next node's previous hop (same node pair, same links), the
// destinations delivering, and leaves being destinations.
func checkForwarding(t *testing.T, s Stream) {
	t.Helper()
	entries := Forwarding(s)
	type key struct {
		path int
		node qkd.NodeID
	}
	at := map[key]ForwardingEntry{}
	for _, e := range entries {
		k := key{e.Path, e.Node}
		if _, dup := at[k]; dup {
			t.Fatalf("two entries for %s on path %d", e.Node, e.Path)
		}
		at[k] = e
		if e.StreamID != s.ID || e.Source != s.Source || !cmp.Equal(e.Destinations, s.Destinations) {
			t.Errorf("entry %s: stream %s source %s destinations %v", e.Node, e.StreamID, e.Source, e.Destinations)
		}
		if (e.Prev == nil) != (e.Node == s.Source) {
			t.Errorf("entry %s: prev %v", e.Node, e.Prev)
		}
		if len(e.Next) == 0 && !e.Deliver {
			t.Errorf("entry %s is a leaf but no destination", e.Node)
		}
	}
	for _, e := range entries {
		for _, n := range e.Next {
			next, ok := at[key{e.Path, n.Node}]
			if !ok {
				t.Errorf("%s → %s: no entry for %s", e.Node, n.Node, n.Node)
				continue
			}
			want := HopRef{Node: e.Node, Link: n.Link, Shares: n.Shares}
			if next.Prev == nil || !cmp.Equal(*next.Prev, want) {
				t.Errorf("%s next hop %+v, but %s prev hop %+v", e.Node, n, n.Node, next.Prev)
			}
		}
	}
	nodes := map[key]bool{}
	for i, p := range s.Route.Paths {
		for _, n := range p.Nodes {
			if s.Route.Multipath {
				nodes[key{i, n}] = true
			} else {
				nodes[key{0, n}] = true
			}
		}
	}
	if len(nodes) != len(entries) {
		t.Errorf("%d entries for %d route nodes", len(entries), len(nodes))
	}
	for _, d := range s.Destinations {
		found := false
		for _, e := range entries {
			found = found || (e.Node == d && e.Deliver)
		}
		if !found {
			t.Errorf("destination %s does not deliver", d)
		}
	}
}

func TestForwardingConsistent(t *testing.T) {
	tests := []struct {
		file string
		req  Request
	}{
		{"line2.json", Request{Source: "A", Destinations: nodes("B"), Rate: 1000}},
		{"ring5.json", Request{Source: "A", Destinations: nodes("D"), Rate: 20000}},
		{"ring5.json", Request{Source: "A", Destinations: nodes("C", "D")}},
		{"ring5.json", Request{Source: "C", Destinations: nodes("E", "A", "B"), Rate: 9000}},
		{"metro-mesh-9.json", Request{Source: "S2", Destinations: nodes("S4"), Rate: 500000, Options: RequestOptions{Multipath: true}}},
		{"metro-mesh-9.json", Request{Source: "T1", Destinations: nodes("T3"), Options: RequestOptions{Multipath: true}}},
		{"metro-mesh-9.json", Request{Source: "S5", Destinations: nodes("S1", "S3", "T2", "S6"), Rate: 100000}},
		{"cn-beijing-shanghai-backbone.json", Request{Source: "BJ", Destinations: nodes("SH"), Rate: 40000}},
		{"cn-beijing-shanghai-backbone.json", Request{Source: "HF", Destinations: nodes("BJ", "SH", "JN")}},
		{"euroqci-synthetic.json", Request{Source: "LIS", Destinations: nodes("HEL"), Rate: 5000}},
		{"euroqci-synthetic.json", Request{Source: "DUB", Destinations: nodes("NIC", "VLT", "TLL"), Rate: 1000}},
		{"euroqci-synthetic.json", Request{Source: "BER", Destinations: nodes("PAR"), Options: RequestOptions{Multipath: true}}},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s→%v", tt.file, tt.req.Source, tt.req.Destinations), func(t *testing.T) {
			c := newController(t, load(t, tt.file), Options{})
			s := register(t, c, i, tt.req)
			checkForwarding(t, s)
		})
	}
}

func TestForwardingRing5(t *testing.T) {
	c := newController(t, load(t, "ring5.json"), Options{})
	r := mustRoute(t, c, Request{Source: "A", Destinations: nodes("C", "D"), Rate: 1000})
	s, err := c.Register(Stream{
		ID: sid(7), SourceSAE: "SAE_A1", Source: "A",
		DestinationSAEs: []qkd.SAEID{"SAE_C1", "SAE_D1"}, Destinations: nodes("C", "D"), Route: r,
	})
	if err != nil {
		t.Fatal(err)
	}
	base := ForwardingEntry{
		StreamID: sid(7), Source: "A", SourceSAE: "SAE_A1",
		Destinations: nodes("C", "D"), DestinationSAEs: []qkd.SAEID{"SAE_C1", "SAE_D1"}, Rate: 1000,
	}
	entry := func(n qkd.NodeID, deliver bool, prev *HopRef, next ...HopRef) ForwardingEntry {
		e := base
		e.Node, e.Deliver, e.Prev, e.Next = n, deliver, prev, next
		return e
	}
	want := []ForwardingEntry{
		entry("A", false, nil, HopRef{Node: "B", Link: "A-B"}),
		entry("B", false, &HopRef{Node: "A", Link: "A-B"}, HopRef{Node: "C", Link: "B-C"}),
		entry("C", true, &HopRef{Node: "B", Link: "B-C"}, HopRef{Node: "D", Link: "C-D"}),
		entry("D", true, &HopRef{Node: "C", Link: "C-D"}),
	}
	got := Forwarding(s)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Forwarding (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(nodes("B", "D"), got[2].Neighbours()); diff != "" {
		t.Errorf("Neighbours (-want +got):\n%s", diff)
	}
}
