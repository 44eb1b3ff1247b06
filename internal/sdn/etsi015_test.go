package sdn

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden015 builds a small ring5 state with a pairwise stream through B and
// a group stream from B, a reported link and a link that is down.
func golden015(t *testing.T) *Controller {
	t.Helper()
	clk := newClock()
	c := newController(t, load(t, "ring5.json"), Options{Now: clk.Now})
	if err := c.Report("A-B", PerfFromQUICKS(clk.Now(), 5000, 125, 2500, 65536)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetLinkStatus("B-D", LinkDown); err != nil {
		t.Fatal(err)
	}
	for i, st := range []struct {
		src     qkd.NodeID
		srcSAE  qkd.SAEID
		dsts    []qkd.NodeID
		dstSAEs []qkd.SAEID
		rate    float64
	}{
		{"A", "SAE_A1", nodes("C"), []qkd.SAEID{"SAE_C1"}, 8000},
		{"B", "SAE_B1", nodes("A", "E"), []qkd.SAEID{"SAE_A2", "SAE_E1"}, 2000},
	} {
		r := mustRoute(t, c, Request{Source: st.src, Destinations: st.dsts, Rate: st.rate})
		_, err := c.Register(Stream{ID: sid(i + 1), SourceSAE: st.srcSAE, Source: st.src, DestinationSAEs: st.dstSAEs, Destinations: st.dsts, Route: r})
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestQKDNodeGolden(t *testing.T) {
	c := golden015(t)
	for _, node := range []qkd.NodeID{"A", "B", "D"} {
		t.Run(string(node), func(t *testing.T) {
			n, err := c.QKDNode(node)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(QKDNodeDocument{Node: n}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "qkd_node_ring5_"+string(node)+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("QKDNode(%s) differs from %s (-want +got):\n%s", node, path, cmp.Diff(string(want), string(got)))
			}
			// The JSON reads back into the same structure.
			var back QKDNodeDocument
			if err := json.Unmarshal(want, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(n, back.Node); diff != "" {
				t.Errorf("round trip (-rendered +parsed):\n%s", diff)
			}
		})
	}
	if _, err := c.QKDNode("X"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("QKDNode(X) = %v, want ErrUnknownNode", err)
	}
}

// TestQKDNodeFieldNames pins the ETSI GS QKD 015 V2.1.1 leaf names
// (container qkd_node), independently of the golden files.
func TestQKDNodeFieldNames(t *testing.T) {
	c := golden015(t)
	n, err := c.QKDNode("B")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(QKDNodeDocument{Node: n})
	var doc map[string]map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	node := doc["etsi-qkd-sdn-node:qkd_node"]
	keys := func(m any) []string {
		var out []string
		for k := range m.(map[string]any) {
			out = append(out, k)
		}
		return out
	}
	sorted := cmpSortStrings
	tests := []struct {
		name string
		obj  any
		want []string
	}{
		{"qkd_node", node, []string{"qkdn_id", "qkdn_status", "qkdn_capabilities", "qkd_applications", "qkd_links"}},
		{"qkdn_capabilities", node["qkdn_capabilities"], []string{"link_stats_support", "application_stats_support", "key_relay_mode_enable"}},
		{"qkd_app", node["qkd_applications"].(map[string]any)["qkd_app"].([]any)[0],
			[]string{"app_id", "app_status", "app_type", "server_app_id", "client_app_id", "app_qos", "backing_qkdl_id", "local_qkdn_id", "remote_qkdn_id"}},
		{"app_qos", node["qkd_applications"].(map[string]any)["qkd_app"].([]any)[0].(map[string]any)["app_qos"],
			[]string{"max_bandwidth", "min_bandwidth", "clients_shared_path_enable", "clients_shared_keys_required"}},
		{"PHYS qkd_link", node["qkd_links"].(map[string]any)["qkd_link"].([]any)[0],
			[]string{"qkdl_id", "qkdl_status", "qkdl_enable", "qkdl_local", "qkdl_remote", "qkdl_type", "qkdl_applications", "qkdl_performance"}},
		{"qkdl_performance", node["qkd_links"].(map[string]any)["qkd_link"].([]any)[0].(map[string]any)["qkdl_performance"],
			[]string{"expected_consumption", "skr", "eskr"}},
		{"VIRT qkd_link (relay)", node["qkd_links"].(map[string]any)["qkd_link"].([]any)[3],
			[]string{"qkdl_id", "qkdl_status", "qkdl_enable", "qkdl_local", "qkdl_remote", "qkdl_type", "qkdl_applications", "virt_prev_hop", "virt_next_hop", "virt_bandwidth",
				"qkms:server_app_id", "qkms:client_app_id", "qkms:route"}},
		{"qkdl_local", node["qkd_links"].(map[string]any)["qkd_link"].([]any)[0].(map[string]any)["qkdl_local"], []string{"qkdn_id"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, keys(tt.obj), sorted); diff != "" {
			t.Errorf("%s keys (-want +got):\n%s", tt.name, diff)
		}
	}
	virt := node["qkd_links"].(map[string]any)["qkd_link"].([]any)[3].(map[string]any)
	if virt["qkdl_type"] != QKDLinkVirt || QKDLinkVirt != "etsi-qkd-node-types:VIRT" || QKDLinkPhys != "etsi-qkd-node-types:PHYS" {
		t.Errorf("qkdl_type = %v", virt["qkdl_type"])
	}
}

var cmpSortStrings = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestApplyQKDNode(t *testing.T) {
	c := newController(t, load(t, "ring5.json"), Options{})
	s := register(t, c, 1, Request{Source: "A", Destinations: nodes("C"), Rate: 10000}) // A-B-C
	if diff := cmp.Diff(nodes("A", "B", "C"), s.Route.Paths[0].Nodes); diff != "" {
		t.Fatalf("route (-want +got):\n%s", diff)
	}
	off := false
	report := QKDNode{
		ID: "B", Status: QKDNodeOperating,
		Links: &QKDLinks{Links: []QKDLink{
			{ID: "A-B", Type: QKDLinkPhys, Status: QKDLinkActive, Performance: &QKDLinkPerformance{SKR: 41000, ESKR: 39000}},
			{ID: "B-C", Type: QKDLinkPhys, Status: QKDLinkActive, Enable: &off},
			{ID: string(sid(1)), Type: QKDLinkVirt}, // the controller's own: ignored
		}},
	}
	rr, err := c.ApplyQKDNode(report)
	if err != nil {
		t.Fatalf("ApplyQKDNode = %v", err)
	}
	if len(rr) != 1 || rr[0].Err != nil {
		t.Fatalf("ApplyQKDNode rerouted %+v", rr)
	}
	if diff := cmp.Diff(nodes("A", "E", "D", "C"), rr[0].Stream.Route.Paths[0].Nodes); diff != "" {
		t.Errorf("rerouted (-want +got):\n%s", diff)
	}
	for _, l := range c.Links() {
		switch l.ID {
		case "A-B":
			if l.Perf == nil || l.Perf.ESKR != 39000 || l.Capacity != 39000 {
				t.Errorf("A-B after report: %+v", l)
			}
		case "B-C":
			if l.Status != LinkDown {
				t.Errorf("B-C status %s, want down", l.Status)
			}
		}
	}
	// A node reporting OUT leaves service: the stream moves to the chord.
	rr, err = c.ApplyQKDNode(QKDNode{ID: "E", Status: QKDNodeOut})
	if err != nil || len(rr) != 1 || rr[0].Err != nil {
		t.Fatalf("ApplyQKDNode(E OUT) = %+v, %v", rr, err)
	}
	if diff := cmp.Diff(nodes("A", "B", "D", "C"), rr[0].Stream.Route.Paths[0].Nodes); diff != "" {
		t.Errorf("rerouted (-want +got):\n%s", diff)
	}
	if st := c.Nodes()[4]; st.ID != "E" || st.Status != NodeStopped {
		t.Errorf("E after OUT: %+v", st)
	}
	// Problems are reported, the rest applied.
	_, err = c.ApplyQKDNode(QKDNode{ID: "A", Links: &QKDLinks{Links: []QKDLink{
		{ID: "nope", Type: QKDLinkPhys},
		{ID: "C-D", Type: QKDLinkPhys},
		{ID: "A-B", Type: QKDLinkPhys, Status: QKDLinkOff},
	}}})
	if !errors.Is(err, ErrUnknownLink) || !errors.Is(err, ErrInvalid) {
		t.Errorf("ApplyQKDNode(bad links) = %v, want ErrUnknownLink and ErrInvalid", err)
	}
	if l := c.Links()[0]; l.ID != "A-B" || l.Status != LinkDown {
		t.Errorf("A-B after OFF: %+v", l)
	}
	if _, err := c.ApplyQKDNode(QKDNode{ID: "X"}); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("ApplyQKDNode(X) = %v", err)
	}
}
