package topology

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/qkms/qkms/internal/qkd"
)

// sharedDir holds the repository's copies of the real-world topologies.
const sharedDir = "../../cmd/qkms/topologies"

// TestSharedTopologies loads every file of the shared topology directory.
func TestSharedTopologies(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(sharedDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Skipf("no shared topologies in %s", sharedDir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			topo, err := Load(f)
			if err != nil {
				t.Fatalf("Load(%s) = %v", f, err)
			}
			if len(topo.Nodes) == 0 || len(topo.SAEs) == 0 {
				t.Errorf("Load(%s): %d nodes, %d SAEs", f, len(topo.Nodes), len(topo.SAEs))
			}
			if err := topo.Validate(); err != nil {
				t.Errorf("Validate() after Load(%s) = %v", f, err)
			}
		})
	}
}

func TestSharedSizes(t *testing.T) {
	tests := []struct {
		file         string
		nodes, links int
	}{
		{"line2.json", 2, 1},
		{"ring5.json", 5, 6},
		{"tokyo-qkd-network-2010.json", 4, 4},
		{"metro-mesh-9.json", 9, 13},
		{"cn-beijing-shanghai-backbone.json", 32, 124},
		{"euroqci-synthetic.json", 277, 302},
	}
	for _, tt := range tests {
		path := filepath.Join(sharedDir, tt.file)
		if _, err := os.Stat(path); err != nil {
			t.Skipf("shared topology %s absent", path)
		}
		topo, err := Load(path)
		if err != nil {
			t.Fatalf("Load(%s) = %v", tt.file, err)
		}
		if len(topo.Nodes) != tt.nodes || len(topo.Links) != tt.links {
			t.Errorf("Load(%s) = %d nodes, %d links, want %d, %d", tt.file, len(topo.Nodes), len(topo.Links), tt.nodes, tt.links)
		}
	}
}

const ring5 = `{"name": "ring5", "extra": {"x": 1},
 "nodes": [{"id": "A", "lat": 1.5}, {"id": "B"}, {"id": "C"}, {"id": "D"}, {"id": "E"}],
 "links": [
  {"a": "A", "b": "B", "skr_bps": 40000, "length_km": 30},
  {"a": "B", "b": "C", "skr_bps": 25000},
  {"a": "C", "b": "D", "skr_bps": 40000},
  {"a": "D", "b": "E", "skr_bps": 15000},
  {"a": "E", "b": "A", "skr_bps": 30000},
  {"a": "B", "b": "D", "skr_bps": 10000, "kind": "fibre", "loss_db": 3}],
 "saes": [{"id": "SAE_A1", "node": "A"}, {"id": "SAE_A2", "node": "A"}, {"id": "SAE_C1", "node": "C"}]}`

func TestHelpers(t *testing.T) {
	topo, err := Parse([]byte(ring5))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := topo.Neighbours("B"), []qkd.NodeID{"A", "C", "D"}; !cmp.Equal(got, want) {
		t.Errorf("Neighbours(B) = %v, want %v", got, want)
	}
	if got := topo.Neighbours("Z"); len(got) != 0 {
		t.Errorf("Neighbours(Z) = %v, want none", got)
	}
	want := []Link{{ID: "E-A", A: "E", B: "A", SKRbps: 30000}}
	if got := topo.LinksBetween("A", "E"); !cmp.Equal(got, want) {
		t.Errorf("LinksBetween(A, E) = %v, want %v", got, want)
	}
	if got := topo.LinksBetween("A", "C"); len(got) != 0 {
		t.Errorf("LinksBetween(A, C) = %v, want none", got)
	}
	if got, want := len(topo.LinksAt("D")), 3; got != want {
		t.Errorf("len(LinksAt(D)) = %d, want %d", got, want)
	}
	if got, want := topo.SAEsAt("A"), []qkd.SAEID{"SAE_A1", "SAE_A2"}; !cmp.Equal(got, want) {
		t.Errorf("SAEsAt(A) = %v, want %v", got, want)
	}
	if got := topo.SAEsAt("B"); len(got) != 0 {
		t.Errorf("SAEsAt(B) = %v, want none", got)
	}
	if n, ok := topo.NodeOf("SAE_C1"); n != "C" || !ok {
		t.Errorf("NodeOf(SAE_C1) = %q, %v, want C, true", n, ok)
	}
	if n, ok := topo.NodeOf("SAE_X"); ok {
		t.Errorf("NodeOf(SAE_X) = %q, true, want false", n)
	}
	if l, ok := topo.Link("B-D"); !ok || l.Kind != "fibre" || l.Other("D") != "B" {
		t.Errorf("Link(B-D) = %+v, %v", l, ok)
	}
	if _, ok := topo.Node("E"); !ok {
		t.Errorf("Node(E) not found")
	}
}

func TestLiteralTopologyHelpers(t *testing.T) {
	topo := &Topology{
		Nodes: []Node{{ID: "A"}, {ID: "B"}},
		Links: []Link{{ID: "l", A: "A", B: "B", SKRbps: 1}},
		SAEs:  []SAE{{ID: "s", Node: "B"}},
	}
	if got := topo.Neighbours("A"); !cmp.Equal(got, []qkd.NodeID{"B"}) {
		t.Errorf("Neighbours(A) on a literal = %v, want [B]", got)
	}
	if n, _ := topo.NodeOf("s"); n != "B" {
		t.Errorf("NodeOf(s) on a literal = %q, want B", n)
	}
}

func TestGeneratedLinkIDs(t *testing.T) {
	in := `{"nodes": [{"id": "A"}, {"id": "B"}, {"id": "C"}],
	 "links": [
	  {"a": "A", "b": "B", "skr_bps": 1},
	  {"a": "A", "b": "B", "skr_bps": 2},
	  {"id": "A-B#3", "a": "B", "b": "C", "skr_bps": 3},
	  {"a": "A", "b": "B", "skr_bps": 4},
	  {"a": "B", "b": "A", "skr_bps": 5},
	  {"id": "x", "a": "A", "b": "B", "skr_bps": 6}]}`
	topo, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []qkd.LinkID
	for _, l := range topo.Links {
		got = append(got, l.ID)
	}
	want := []qkd.LinkID{"A-B", "A-B#2", "A-B#3", "A-B#4", "B-A", "x"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("link IDs (-want +got):\n%s", diff)
	}
	if n := len(topo.LinksBetween("B", "A")); n != 5 {
		t.Errorf("len(LinksBetween(B, A)) = %d, want 5", n)
	}
}

func TestScale(t *testing.T) {
	topo, err := Parse([]byte(ring5))
	if err != nil {
		t.Fatal(err)
	}
	topo.Scale(0.5)
	if l, _ := topo.Link("A-B"); l.SKRbps != 20000 {
		t.Errorf("after Scale(0.5), A-B rate = %v, want 20000", l.SKRbps)
	}
	if ls := topo.LinksBetween("B", "C"); ls[0].SKRbps != 12500 {
		t.Errorf("after Scale(0.5), B-C rate = %v, want 12500", ls[0].SKRbps)
	}
	for _, f := range []float64{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Scale(%v) did not panic", f)
				}
			}()
			topo.Scale(f)
		}()
	}
}

func TestNewCopies(t *testing.T) {
	in := Topology{Nodes: []Node{{ID: "A"}, {ID: "B"}}, Links: []Link{{A: "A", B: "B", SKRbps: 1}}}
	topo, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	if in.Links[0].ID != "" {
		t.Errorf("New modified its argument: link ID %q", in.Links[0].ID)
	}
	topo.Scale(2)
	if in.Links[0].SKRbps != 1 {
		t.Errorf("Scale on New's result changed the argument's rate to %v", in.Links[0].SKRbps)
	}
}

func TestParseErrors(t *testing.T) {
	const nodes = `"nodes": [{"id": "A"}, {"id": "B"}]`
	tests := []struct {
		name string
		in   string
		want []error
		msg  string // substring of the error text
	}{
		{"no nodes", `{"nodes": []}`, []error{ErrNoNodes}, "no nodes"},
		{"empty node ID", `{"nodes": [{"id": ""}]}`, []error{ErrMissingID}, "nodes[0]"},
		{"missing node ID", `{"nodes": [{"name": "x"}]}`, []error{ErrMissingID}, "nodes[0]"},
		{"bad node ID", `{"nodes": [{"id": "A/B"}]}`, []error{ErrBadID}, `"A/B"`},
		{"dot node ID", `{"nodes": [{"id": ".."}]}`, []error{ErrBadID}, `".."`},
		{"long node ID", `{"nodes": [{"id": "` + strings.Repeat("x", 65) + `"}]}`, []error{ErrBadID}, "nodes[0]"},
		{"duplicate node", `{"nodes": [{"id": "A"}, {"id": "A"}]}`, []error{ErrDuplicateNode}, "nodes[1]"},
		{"unknown end", `{` + nodes + `, "links": [{"a": "A", "b": "C", "skr_bps": 1}]}`, []error{ErrUnknownNode}, `b: unknown node "C"`},
		{"missing end", `{` + nodes + `, "links": [{"a": "A", "skr_bps": 1}]}`, []error{ErrMissingID}, "links[0] (A-): b"},
		{"self loop", `{` + nodes + `, "links": [{"a": "A", "b": "A", "skr_bps": 1}]}`, []error{ErrSelfLoop}, "links[0] (A-A)"},
		{"zero rate", `{` + nodes + `, "links": [{"a": "A", "b": "B", "skr_bps": 0}]}`, []error{ErrBadRate}, "got 0"},
		{"no rate", `{` + nodes + `, "links": [{"a": "A", "b": "B"}]}`, []error{ErrBadRate}, "links[0]"},
		{"negative rate", `{` + nodes + `, "links": [{"a": "A", "b": "B", "skr_bps": -5}]}`, []error{ErrBadRate}, "got -5"},
		{"negative length", `{` + nodes + `, "links": [{"a": "A", "b": "B", "skr_bps": 1, "length_km": -1}]}`, []error{ErrBadLength}, "links[0]"},
		{"duplicate link", `{` + nodes + `, "links": [{"id": "l", "a": "A", "b": "B", "skr_bps": 1}, {"id": "l", "a": "B", "b": "A", "skr_bps": 1}]}`, []error{ErrDuplicateLink}, "links[1] (l)"},
		{"bad link ID", `{` + nodes + `, "links": [{"id": "a b", "a": "A", "b": "B", "skr_bps": 1}]}`, []error{ErrBadID}, `"a b"`},
		{"SAE on unknown node", `{` + nodes + `, "saes": [{"id": "S", "node": "Z"}]}`, []error{ErrUnknownNode}, `saes[0]: node: unknown node "Z"`},
		{"SAE without node", `{` + nodes + `, "saes": [{"id": "S"}]}`, []error{ErrMissingID}, "saes[0]: node"},
		{"duplicate SAE", `{` + nodes + `, "saes": [{"id": "S", "node": "A"}, {"id": "S", "node": "B"}]}`, []error{ErrDuplicateSAE}, "saes[1]"},
		{"bad SAE ID", `{` + nodes + `, "saes": [{"id": "S A", "node": "A"}]}`, []error{ErrBadID}, "saes[0]: SAE invalid ID"},
		{"all at once", `{"nodes": [{"id": "A"}, {"id": "A"}, {"id": "B"}],
		  "links": [{"a": "A", "b": "A", "skr_bps": 0}, {"a": "A", "b": "X", "skr_bps": 1}],
		  "saes": [{"id": "S", "node": "Y"}, {"id": "S", "node": "A"}]}`,
			[]error{ErrDuplicateNode, ErrSelfLoop, ErrBadRate, ErrUnknownNode, ErrDuplicateSAE}, "links[1] (A-X)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%s) = nil error, want %v", tt.in, tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Parse(%s) = %v, want errors.Is %v", tt.in, err, w)
				}
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Parse(%s) = %v, want text containing %q", tt.in, err, tt.msg)
			}
		})
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"nodes": "A"}`, `{"nodes": [{"id": 1}]}`, `{"links": [{"skr_bps": "fast"}]}`, `{} x`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) = nil error, want a decoding error", in)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"A", true}, {"SAE_A1", true}, {"AMS-BRU-R01", true}, {"n.1", true},
		{strings.Repeat("a", 64), true}, {strings.Repeat("a", 65), false},
		{"", false}, {".", false}, {"..", false}, {"a/b", false}, {"a b", false},
		{"a~b", false}, {"é", false}, {"a:b", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.in); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if !ValidLinkID("AMS~AMS-BRU-R01#2") || ValidLinkID("a/b") {
		t.Errorf("ValidLinkID disagrees with its rule")
	}
}

// ignoreIndex compares Topologies by their exported fields.
var ignoreIndex = cmpopts.IgnoreUnexported(Topology{})
