package controller_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/sdn"
)

// Valid samples of every message of the controller's API.
const (
	sampleNodeReport = `{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A","qkdn_status":"etsi-qkd-node-types:OPERATING",
"qkdn_capabilities":{"link_stats_support":true,"application_stats_support":false,"key_relay_mode_enable":true},
"qkd_links":{"qkd_link":[{"qkdl_id":"A-B","qkdl_status":"etsi-qkd-node-types:ACTIVE","qkdl_local":{"qkdn_id":"A"},
"qkdl_remote":{"qkdn_id":"B"},"qkdl_type":"etsi-qkd-node-types:PHYS",
"qkdl_performance":{"expected_consumption":400,"skr":8000,"eskr":7200,"qkms:kav":4000}}]}},
"qkms:agent":{"url":"https://127.0.0.1:9443","kms_id":"5e0f6a1c-2d55-4b4e-9c3c-0c7f5f1d2a11",
"etsi_014":{"kme_id":"KME_A","key_size":256,"max_key_count":1000,"max_key_per_request":128,"max_key_size":1024,"min_key_size":64,"max_sae_id_count":0}}}`

	sampleAppRegistration = `{"etsi-qkd-sdn-node:qkd_app":{"app_id":"","app_type":"etsi-qkd-node-types:CLIENT",
"server_app_id":"SAE_A1","client_app_id":["SAE_C1"],"app_qos":{"max_bandwidth":1000,"min_bandwidth":500,
"clients_shared_path_enable":false,"clients_shared_keys_required":false},"local_qkdn_id":"A"},"qkms:multipath":true}`

	sampleAppRegistered = `{"etsi-qkd-sdn-node:qkd_app":{"app_id":"0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00",
"app_status":"etsi-qkd-node-types:ON","app_type":"etsi-qkd-node-types:CLIENT","server_app_id":"SAE_A1",
"client_app_id":["SAE_C1"],"backing_qkdl_id":["0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00"],"local_qkdn_id":"A","remote_qkdn_id":"C"},
"qkms:route":["A","B","C"],"qkms:next_hop":"B","qkms:rate_bps":1000,"qkms:counter_proposal":true}`

	sampleNotification = `{"type":"sdqkdn_link_down","qkdn_id":"A","severity":"warning","code":1001,
"message":"QKD link A-B is down","qkdl_id":"A-B","app_id":"0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00","status":"down",
"timestamp":"2026-01-02T03:04:05.123456789+01:00","reported_by":"A"}`

	sampleNodeDocument = `{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"B","qkdn_status":"etsi-qkd-node-types:OPERATING",
"qkd_links":{"qkd_link":[{"qkdl_id":"A-B","qkdl_status":"etsi-qkd-node-types:ACTIVE","qkdl_enable":true,
"qkdl_local":{"qkdn_id":"B"},"qkdl_remote":{"qkdn_id":"A"},"qkdl_type":"etsi-qkd-node-types:PHYS"},
{"qkdl_id":"0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00","qkdl_enable":true,"qkdl_local":{"qkdn_id":"B","qkdi_id":7},
"qkdl_remote":{"qkdn_id":"C"},"qkdl_type":"etsi-qkd-node-types:VIRT","virt_prev_hop":"A","virt_next_hop":["C"],
"virt_bandwidth":1000,"qkms:server_app_id":"SAE_A1","qkms:client_app_id":["SAE_C1"]}]}}}`

	samplePathStatus = `{"source_kms_id":"KME_A","target_kms_id":"KME_C","key_size":256,"stored_key_count":12,
"max_key_count":1000,"max_key_per_request":128,"max_key_size":1024,"min_key_size":64,"max_sae_id_count":0,"qkms:route":["A","B","C"]}`
)

// equateEmpty: an empty list and an absent one mean the same on the wire.
var equateEmpty = cmpopts.EquateEmpty()

func TestDecodeSamples(t *testing.T) {
	code := 1001
	tru := true
	iface := uint32(7)
	tests := []struct {
		name   string
		decode func([]byte) (any, error)
		in     string
		want   any
	}{
		{"NodeReport", wrap(controller.DecodeNodeReport), sampleNodeReport, controller.NodeReport{
			Node: sdn.QKDNode{ID: "A", Status: sdn.QKDNodeOperating,
				Capabilities: &sdn.QKDNodeCapabilities{LinkStatsSupport: true, KeyRelayModeEnable: true},
				Links: &sdn.QKDLinks{Links: []sdn.QKDLink{{ID: "A-B", Status: sdn.QKDLinkActive, Local: sdn.QKDLinkEnd{NodeID: "A"},
					Remote: sdn.QKDLinkEnd{NodeID: "B"}, Type: sdn.QKDLinkPhys,
					Performance: &sdn.QKDLinkPerformance{ExpectedConsumption: 400, SKR: 8000, ESKR: 7200, KAV: 4000}}}}},
			Agent: controller.AgentInfo{URL: "https://127.0.0.1:9443", KMSID: "5e0f6a1c-2d55-4b4e-9c3c-0c7f5f1d2a11",
				ETSI014: &controller.Limits{KMEID: "KME_A", KeySize: 256, MaxKeyCount: 1000, MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64}},
		}},
		{"AppRegistration", wrap(controller.DecodeAppRegistration), sampleAppRegistration, controller.AppRegistration{
			App: sdn.QKDApp{Type: sdn.QKDAppClient, ServerAppID: "SAE_A1", ClientAppIDs: []string{"SAE_C1"},
				QoS: &sdn.AppQoS{MaxBandwidth: 1000, MinBandwidth: 500}, LocalNodeID: "A"},
			Multipath: true,
		}},
		{"AppRegistered", wrap(controller.DecodeAppRegistered), sampleAppRegistered, controller.AppRegistered{
			App: sdn.QKDApp{ID: "0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00", Status: sdn.QKDAppOn, Type: sdn.QKDAppClient,
				ServerAppID: "SAE_A1", ClientAppIDs: []string{"SAE_C1"}, BackingLinks: []string{"0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00"},
				LocalNodeID: "A", RemoteNodeID: "C"},
			Route: []qkd.NodeID{"A", "B", "C"}, NextHop: "B", RateBPS: 1000, CounterProposal: true,
		}},
		{"Notification", wrap(controller.DecodeNotification), sampleNotification, controller.Notification{
			Type: controller.NoteLinkDown, NodeID: "A", Severity: "warning", Code: &code, Message: "QKD link A-B is down",
			LinkID: "A-B", AppID: "0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00", Status: "down",
			Time: time.Date(2026, 1, 2, 2, 4, 5, 123456789, time.UTC), From: "A",
		}},
		{"NodeDocument", wrap(controller.DecodeNodeDocument), sampleNodeDocument, sdn.QKDNodeDocument{Node: sdn.QKDNode{
			ID: "B", Status: sdn.QKDNodeOperating, Links: &sdn.QKDLinks{Links: []sdn.QKDLink{
				{ID: "A-B", Status: sdn.QKDLinkActive, Enable: &tru, Local: sdn.QKDLinkEnd{NodeID: "B"}, Remote: sdn.QKDLinkEnd{NodeID: "A"}, Type: sdn.QKDLinkPhys},
				{ID: "0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00", Enable: &tru, Local: sdn.QKDLinkEnd{NodeID: "B", InterfaceID: &iface},
					Remote: sdn.QKDLinkEnd{NodeID: "C"}, Type: sdn.QKDLinkVirt, VirtPrevHop: "A", VirtNextHop: []string{"C"},
					VirtBandwidth: 1000, ServerAppID: "SAE_A1", ClientAppIDs: []string{"SAE_C1"}},
			}}}}},
		{"PathStatus", wrap(controller.DecodePathStatus), samplePathStatus, controller.PathStatus{LinkStatus: quicks.LinkStatus{
			SourceKMSID: "KME_A", TargetKMSID: "KME_C", KeySize: 256, StoredKeyCount: 12, MaxKeyCount: 1000,
			MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64}, Route: []qkd.NodeID{"A", "B", "C"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.decode([]byte(tc.in))
			if err != nil {
				t.Fatalf("decode = %v", err)
			}
			if diff := cmp.Diff(tc.want, got, equateEmpty); diff != "" {
				t.Errorf("decode mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func wrap[T any](f func([]byte) (T, error)) func([]byte) (any, error) {
	return func(b []byte) (any, error) { return f(b) }
}

// patch returns the JSON sample with the member at path (dot separated
// object keys) replaced by v, or deleted if v is del.
func patch(t testing.TB, sample, path string, v any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(sample), &m); err != nil {
		t.Fatalf("sample: %v", err)
	}
	keys := strings.Split(path, ".")
	cur := m
	for _, k := range keys[:len(keys)-1] {
		switch next := cur[k].(type) {
		case map[string]any:
			cur = next
		case []any: // descend into the first item
			cur = next[0].(map[string]any)
		default:
			t.Fatalf("path %s: %s is not an object", path, k)
		}
	}
	if _, isDel := v.(deleted); isDel {
		delete(cur, keys[len(keys)-1])
	} else {
		cur[keys[len(keys)-1]] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type deleted struct{}

var del = deleted{}

func TestDecodeFieldErrors(t *testing.T) {
	const (
		node = "etsi-qkd-sdn-node:qkd_node"
		app  = "etsi-qkd-sdn-node:qkd_app"
		link = node + ".qkd_links.qkd_link" // first link
	)
	long := strings.Repeat("x", 257)
	many := make([]any, 65)
	for i := range many {
		many[i] = "SAE_C1"
	}
	tests := []struct {
		name   string
		decode func([]byte) (any, error)
		in     string
		field  string // in the error text
	}{
		// Syntax and framing.
		{"report/not JSON", wrap(controller.DecodeNodeReport), `{`, "malformed"},
		{"report/trailing", wrap(controller.DecodeNodeReport), sampleNodeReport + `{}`, "trailing data"},
		{"report/wrong type", wrap(controller.DecodeNodeReport), `{"qkms:agent":{"url":7}}`, "malformed"},
		{"report/empty", wrap(controller.DecodeNodeReport), ``, "malformed"},
		{"report/over 1 MiB", wrap(controller.DecodeNodeReport), `"` + strings.Repeat("a", 1<<20) + `"`, "over"},
		// NodeReport fields.
		{"report/no qkdn_id", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, node+".qkdn_id", del), "qkd_node.qkdn_id"},
		{"report/long qkdn_id", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, node+".qkdn_id", long), "qkd_node.qkdn_id"},
		{"report/newline qkdn_id", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, node+".qkdn_id", "A\nB"), "qkd_node.qkdn_id"},
		{"report/no agent url", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, "qkms:agent.url", del), "qkms:agent.url"},
		{"report/http agent url", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, "qkms:agent.url", "http://127.0.0.1:1"), "qkms:agent.url"},
		{"report/agent url without host", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, "qkms:agent.url", "https:///x"), "qkms:agent.url"},
		{"report/agent url unparsable", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, "qkms:agent.url", "https://[::1"), "qkms:agent.url"},
		{"report/no link id", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, link+".qkdl_id", del), "qkd_links.qkd_link[0].qkdl_id"},
		{"report/VIRT link", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, link+".qkdl_type", sdn.QKDLinkVirt), "qkd_links.qkd_link[0].qkdl_type"},
		{"report/no link type", wrap(controller.DecodeNodeReport), patch(t, sampleNodeReport, link+".qkdl_type", del), "qkd_links.qkd_link[0].qkdl_type"},
		// AppRegistration fields.
		{"registration/no server_app_id", wrap(controller.DecodeAppRegistration), patch(t, sampleAppRegistration, app+".server_app_id", del), "qkd_app.server_app_id"},
		{"registration/NUL server_app_id", wrap(controller.DecodeAppRegistration), patch(t, sampleAppRegistration, app+".server_app_id", "SAE\x00"), "qkd_app.server_app_id"},
		{"registration/no client_app_id", wrap(controller.DecodeAppRegistration), patch(t, sampleAppRegistration, app+".client_app_id", del), "qkd_app.client_app_id"},
		{"registration/empty client_app_id", wrap(controller.DecodeAppRegistration), patch(t, sampleAppRegistration, app+".client_app_id", []any{}), "qkd_app.client_app_id"},
		{"registration/65 client_app_id", wrap(controller.DecodeAppRegistration), patch(t, sampleAppRegistration, app+".client_app_id", many), "qkd_app.client_app_id"},
		{"registration/empty client", wrap(controller.DecodeAppRegistration), patch(t, sampleAppRegistration, app+".client_app_id", []any{"SAE_C1", ""}), "qkd_app.client_app_id[1]"},
		{"registration/bad bandwidth", wrap(controller.DecodeAppRegistration), patch(t, sampleAppRegistration, app+".app_qos.max_bandwidth", -1), "malformed"},
		// AppRegistered fields.
		{"registered/no app_id", wrap(controller.DecodeAppRegistered), patch(t, sampleAppRegistered, app+".app_id", del), "qkd_app.app_id"},
		{"registered/app_id not UUID", wrap(controller.DecodeAppRegistered), patch(t, sampleAppRegistered, app+".app_id", "stream-1"), "qkd_app.app_id"},
		{"registered/one-node route", wrap(controller.DecodeAppRegistered), patch(t, sampleAppRegistered, "qkms:route", []any{"A"}), "qkms:route"},
		{"registered/no route", wrap(controller.DecodeAppRegistered), patch(t, sampleAppRegistered, "qkms:route", del), "qkms:route"},
		{"registered/no next hop", wrap(controller.DecodeAppRegistered), patch(t, sampleAppRegistered, "qkms:next_hop", del), "qkms:route"},
		// Notification fields.
		{"notification/no type", wrap(controller.DecodeNotification), patch(t, sampleNotification, "type", del), "type"},
		{"notification/bad type", wrap(controller.DecodeNotification), patch(t, sampleNotification, "type", "sdqkdn_link_new"), "type"},
		{"notification/no severity", wrap(controller.DecodeNotification), patch(t, sampleNotification, "severity", del), "severity"},
		{"notification/bad severity", wrap(controller.DecodeNotification), patch(t, sampleNotification, "severity", "MAJOR"), "severity"},
		{"notification/no message", wrap(controller.DecodeNotification), patch(t, sampleNotification, "message", del), "message"},
		{"notification/long message", wrap(controller.DecodeNotification), patch(t, sampleNotification, "message", strings.Repeat("m", 1025)), "message"},
		{"notification/bad time", wrap(controller.DecodeNotification), patch(t, sampleNotification, "timestamp", "yesterday"), "malformed"},
		{"notification/fractional code", wrap(controller.DecodeNotification), patch(t, sampleNotification, "code", 1.5), "malformed"},
		// NodeDocument fields.
		{"document/no qkdn_id", wrap(controller.DecodeNodeDocument), patch(t, sampleNodeDocument, node+".qkdn_id", del), "qkd_node.qkdn_id"},
		{"document/VIRT not UUID", wrap(controller.DecodeNodeDocument), strings.Replace(sampleNodeDocument, "0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00", "stream-1", 1), "qkd_links.qkd_link[1].qkdl_id"},
		{"document/not an object", wrap(controller.DecodeNodeDocument), `[]`, "malformed"},
		// PathStatus fields.
		{"path/negative stored", wrap(controller.DecodePathStatus), patch(t, samplePathStatus, "stored_key_count", -1), "stored_key_count"},
		{"path/negative size", wrap(controller.DecodePathStatus), patch(t, samplePathStatus, "key_size", -1), "negative"},
		{"path/negative max", wrap(controller.DecodePathStatus), patch(t, samplePathStatus, "max_key_count", -1), "negative"},
		{"path/string count", wrap(controller.DecodePathStatus), patch(t, samplePathStatus, "stored_key_count", "12"), "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.decode([]byte(tc.in))
			if !errors.Is(err, controller.ErrBadMessage) {
				t.Fatalf("decode = %v, want an error wrapping ErrBadMessage", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("decode = %q, want it to name %q", err, tc.field)
			}
		})
	}
}

// TestDecodeLenient: what the decoders accept beyond the samples.
func TestDecodeLenient(t *testing.T) {
	tests := []struct {
		name   string
		decode func([]byte) (any, error)
		in     string
	}{
		{"report without links", wrap(controller.DecodeNodeReport), `{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A"},"qkms:agent":{"url":"https://h:1"}}`},
		{"report with unknown members", wrap(controller.DecodeNodeReport), `{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A","x":1},"qkms:agent":{"url":"https://h:1"},"y":[]}`},
		{"report trailing space", wrap(controller.DecodeNodeReport), sampleNodeReport + " \n\t"},
		{"document with PHYS only", wrap(controller.DecodeNodeDocument), `{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A","qkd_links":{"qkd_link":[{"qkdl_id":"A-B","qkdl_type":"etsi-qkd-node-types:PHYS","qkdl_local":{"qkdn_id":"A"},"qkdl_remote":{"qkdn_id":"B"}}]}}}`},
		{"empty path status", wrap(controller.DecodePathStatus), `{}`},
		{"notification at 1024 bytes", wrap(controller.DecodeNotification), patch(t, sampleNotification, "message", strings.Repeat("m", 1024))},
		{"registration with 64 clients", wrap(controller.DecodeAppRegistration), patch(t, sampleAppRegistration, "etsi-qkd-sdn-node:qkd_app.client_app_id", func() []any {
			out := make([]any, 64)
			for i := range out {
				out[i] = "SAE_C1"
			}
			return out
		}())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.decode([]byte(tc.in)); err != nil {
				t.Errorf("decode = %v, want nil", err)
			}
		})
	}
}

func TestDecodeNodeDocumentNonCanonicalUUID(t *testing.T) {
	id := "0b6f0d3e-4a43-4c5e-8a55-8e2d1d1b9f00"
	for _, form := range []string{"urn:uuid:" + id, "{" + id + "}", strings.ReplaceAll(id, "-", "")} {
		doc := strings.Replace(sampleNodeDocument, id, form, 1)
		if _, err := controller.DecodeNodeDocument([]byte(doc)); !errors.Is(err, controller.ErrBadMessage) {
			t.Errorf("VIRT link %q: DecodeNodeDocument = %v, want ErrBadMessage", form, err)
		}
		reg := strings.Replace(sampleAppRegistered, id, form, 1)
		if _, err := controller.DecodeAppRegistered([]byte(reg)); !errors.Is(err, controller.ErrBadMessage) {
			t.Errorf("app_id %q: DecodeAppRegistered = %v, want ErrBadMessage", form, err)
		}
	}
}
