package quicks_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/quickstest"
)

func ptr[T any](v T) *T { return &v }

// Go values encode to the published member names and JSON types; optional
// members are left out when empty, required ones never are.
func TestEncodeNames(t *testing.T) {
	entry := quicks.PerformanceEntry{Timestamp: time.Date(2024, 8, 27, 17, 41, 28, 0, time.UTC), DeltaT: 10000, IKR: 1, EXKR: 2, SKR: 3, KAV: 4}
	entryTree := map[string]any{"timestamp": "string", "delta_t": "number", "IKR": "number", "EXKR": "number", "SKR": "number", "KAV": "number"}
	tests := []struct {
		name string
		v    any
		want any
	}{
		{"zero Capabilities keeps required members", quicks.Capabilities{AppAPISupport: []quicks.AppAPI{}},
			map[string]any{"key_relay_support": "boolean", "app_api_support": []any{}}},
		{"zero ETSI014Info keeps required members", quicks.ETSI014Info{}, map[string]any{
			"kms_id": "string", "key_size": "number", "stored_key_count": "number", "max_key_count": "number",
			"max_key_per_request": "number", "max_key_size": "number", "min_key_size": "number", "max_sae_id_count": "number"}},
		{"zero ETSI004QoS keeps required members", quicks.ETSI004QoS{}, map[string]any{
			"key_chunk_size": "number", "max_bps": "number", "min_bps": "number", "ttl": "number"}},
		{"PerformanceEntry", entry, entryTree},
		{"Performance without history", quicks.Performance{Current: entry}, map[string]any{"current": entryTree}},
		{"RelayConfig at the last node", quicks.RelayConfig{Source: "a", Destination: []string{"b"}, NextNodeInfo: []string{}},
			map[string]any{"source": "string", "destination": []any{"string"}, "next_node_info": []any{}}},
		{"partial RelayConfig", quicks.RelayConfig{Source: "a"}, map[string]any{"source": "string"}},
		{"Event without code", quicks.Event{Level: quicks.LevelInfo, Reason: "r"}, map[string]any{"level": "string", "reason": "string"}},
		{"Event with code 0", quicks.Event{Level: quicks.LevelInfo, Code: ptr(0), Reason: "r"}, map[string]any{"level": "string", "code": "number", "reason": "string"}},
		{"QoSProposal with 0", quicks.QoSProposal{MaxBPS: ptr(0)}, map[string]any{"max_bps": "number"}},
		{"KMSStatus", quicks.KMSStatus{State: quicks.StateOnline}, map[string]any{"state": "string"}},
		{"LinkRegistration", quicks.LinkRegistration{Source: "a", Destination: []string{"b"}, QoSRequest: quicks.QoSData{Type: quicks.QoSETSI014,
			ETSI014: &quicks.ETSI014QoS{Number: 1, Size: 256}}, Performance: []quicks.LinkKPI{{LinkID: linkID, CurrentKPI: &entry}},
			Options: quicks.RegistrationOptions{quicks.OptionMultipath: true}},
			map[string]any{"source": "string", "destination": []any{"string"},
				"qos_request": map[string]any{"type": "string", "etsi_014": map[string]any{"number": "number", "size": "number"}},
				"performance": []any{map[string]any{"link_id": "string", "current_kpi": entryTree}},
				"options":     map[string]any{"multipath": "boolean"}}},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, quickstest.TypeTree(t, b)); diff != "" {
			t.Errorf("%s: json.Marshal mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}
