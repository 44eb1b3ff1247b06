package node

import (
	"testing"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

// TestCheckRoute: a qkms_route must run from the entry's source to its
// destination through this node, between this entry's neighbours.
func TestCheckRoute(t *testing.T) {
	src := relay.Entry{Source: "A", Dest: "C", Next: "B"}
	mid := relay.Entry{Source: "A", Dest: "C", Prev: "A", Next: "C"}
	dst := relay.Entry{Source: "A", Dest: "C", Prev: "B"}
	for _, tt := range []struct {
		name  string
		route []string
		en    relay.Entry
		self  qkd.NodeID
		ok    bool
	}{
		{"source", []string{"A", "B", "C"}, src, "A", true},
		{"intermediate", []string{"A", "B", "C"}, mid, "B", true},
		{"intermediate, neighbours swapped", []string{"A", "B", "C"}, relay.Entry{Source: "A", Dest: "C", Prev: "C", Next: "A"}, "B", true},
		{"destination", []string{"A", "B", "C"}, dst, "C", true},
		{"other neighbour", []string{"A", "E", "D", "C"}, dst, "C", false},
		{"not through this node", []string{"A", "E", "C"}, mid, "B", false},
		{"wrong source", []string{"E", "B", "C"}, dst, "C", false},
		{"wrong destination", []string{"A", "B", "D"}, src, "A", false},
		{"loop", []string{"A", "B", "A", "B", "C"}, dst, "C", false},
		{"one node", []string{"C"}, dst, "C", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkRoute(tt.route, tt.en, tt.self)
			if (err == nil) != tt.ok {
				t.Fatalf("checkRoute(%v) = %v, %v; want ok=%v", tt.route, got, err, tt.ok)
			}
			if tt.ok && len(got) != len(tt.route) {
				t.Errorf("route = %v", got)
			}
		})
	}
}
