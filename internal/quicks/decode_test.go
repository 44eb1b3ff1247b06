package quicks_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/quicks"
)

func TestDecodeValid(t *testing.T) {
	for _, d := range decoders {
		t.Run(d.name, func(t *testing.T) {
			if err := d.decode([]byte(d.valid)); err != nil {
				t.Errorf("Decode%s(valid) = %v, want nil", d.name, err)
			}
		})
	}
}

// Inputs every decoder refuses, with the field the detail must name.
func TestDecodeGarbage(t *testing.T) {
	garbage := []struct{ in, field string }{
		{``, "body"},
		{`{`, "body: malformed JSON"},
		{`[]`, "body: must be a JSON object"},
		{`"x"`, "body: must be a JSON object"},
		{`null`, "body: must be a JSON object"},
		{`{} {}`, "body: malformed JSON"},
	}
	for _, d := range decoders {
		for _, g := range garbage {
			err := d.decode([]byte(g.in))
			if !errors.Is(err, quicks.ErrBadRequest) || !strings.Contains(err.Error(), g.field) {
				t.Errorf("Decode%s(%q) = %v, want ErrBadRequest naming %q", d.name, g.in, err, g.field)
			}
		}
	}
}

func dec(name string) func([]byte) error {
	for _, d := range decoders {
		if d.name == name {
			return d.decode
		}
	}
	panic(name)
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		dec, in string
		want    []string // substrings of the detail
	}{
		// missing required members
		{"StateChange", `{}`, []string{"state: required"}},
		{"StateChange", `{"state":null}`, []string{"state: required, must not be null"}},
		{"DeviceRegistration", `{"label":"x"}`, []string{"link_id: required", "server_address: required", "peer_kms: required"}},
		{"DeviceUpdate", `{"etsi_014":{"primary_id":"a"}}`, []string{"etsi_014.secondary_id: required"}},
		{"RelayConfig", `{"source":"a","destination":["b"]}`, []string{"next_node_info: required"}},
		{"RelayConfig", `{"source":"a","destination":["b"],"next_node_info":[],"qos_request":{"type":"etsi_014","etsi_014":{"size":8}}}`, []string{"qos_request.etsi_014.number: required"}},
		{"LinkRegistration", `{"source":"a","destination":["b"],"performance":[{}]}`, []string{"qos_request: required"}},
		{"LinkRegistration", `{"source":"a","destination":["b"],"qos_request":{"type":"etsi_004","etsi_004":{"key_chunk_size":1,"max_bps":0,"min_bps":0}},"performance":[{}]}`, []string{"qos_request.etsi_004.ttl: required"}},
		{"LinkRegistration", `{"source":"a","destination":["b"],"qos_request":{"type":"etsi_014"},"performance":[{"current_kpi":{"timestamp":"2024-08-27T17:41:28Z"}}]}`, []string{"performance[0].current_kpi.delta_t: required", "performance[0].current_kpi.KAV: required"}},
		{"KMSRegistration", `{"kms_id":"` + kmsID + `","model":{"device_vendor":"AIT"}}`, []string{"model.device_model: required", "model.device_version: required"}},
		{"Event", `{"level":"info"}`, []string{"reason: required"}},
		{"Performance", `{"history":[]}`, []string{"current: required"}},
		{"Capabilities", `{"key_relay_support":true,"app_api_support":[],"etsi_014_info":{"kms_id":"a"}}`, []string{"etsi_014_info.key_size: required", "etsi_014_info.max_sae_id_count: required"}},
		// wrong JSON types
		{"StateChange", `{"state":1}`, []string{"state: must be a string, not number"}},
		{"RelayConfig", `{"source":"a","destination":"b","next_node_info":[]}`, []string{"destination: must be an array, not string"}},
		{"LinkRegistration", `{"source":"a","destination":["b"],"qos_request":{"type":"etsi_014","etsi_014":{"number":"1","size":8}},"performance":[{}]}`, []string{"qos_request.etsi_014.number: must be an integer, not string"}},
		{"LinkRegistration", `{"source":"a","destination":["b"],"qos_request":{"type":"etsi_014"},"performance":[{}],"options":{"multipath":"yes"}}`, []string{"options.multipath: must be a boolean"}},
		{"LinkRegistration", `{"source":"a","destination":["b"],"qos_request":{"type":"etsi_014"},"performance":[{}],"options":[]}`, []string{"options: must be an object"}},
		{"Performance", `{"current":{"timestamp":"2024-08-27T17:41:28Z","delta_t":1.5,"IKR":1,"EXKR":1,"SKR":1,"KAV":1}}`, []string{"current.delta_t: must be an integer (int32), not number"}},
		{"Performance", `{"current":{"timestamp":"2024-08-27T17:41:28Z","delta_t":1,"IKR":1,"EXKR":1,"SKR":1,"KAV":3000000000}}`, []string{"current.KAV: must be an integer (int32)"}},
		{"Performance", `{"current":{"timestamp":"yesterday","delta_t":1,"IKR":1,"EXKR":1,"SKR":1,"KAV":1}}`, []string{"current.timestamp: must be an RFC 3339 date-time"}},
		{"Event", `{"level":"info","reason":"x","code":"14"}`, []string{"code: must be an integer, not string"}},
		{"Capabilities", `{"key_relay_support":"yes","app_api_support":[]}`, []string{"key_relay_support: must be a boolean, not string"}},
		// unknown enum values
		{"StateChange", `{"state":"ONLINE"}`, []string{`state: unknown value "ONLINE"`}},
		{"KMSStatus", `{"state":"online","operation":"fine"}`, []string{`operation: unknown value "fine"`}},
		{"DeviceRegistration", `{"link_id":"` + linkID + `","label":"d","state":"online","interface":"etsi_020","protocol":"https","peer_kms":"B","server_address":"h:1"}`, []string{`interface: unknown value "etsi_020"`}},
		{"RelayConfig", `{"source":"a","destination":["b"],"next_node_info":[],"qos_request":{"type":"etsi_999"}}`, []string{`qos_request.type: unknown value "etsi_999"`}},
		{"RelayUpdate", `{"qos_request":{"type":"etsi_999"}}`, []string{`qos_request.type: unknown value`}},
		{"Event", `{"level":"fatal","reason":"x"}`, []string{`level: unknown value "fatal"`}},
		{"Capabilities", `{"key_relay_support":true,"app_api_support":["ETSI 014"]}`, []string{`app_api_support[0]: unknown value`}},
		// formats and values
		{"RegistrationUpdate", `{"key_stream_id":"ks-1","destination":["b"]}`, []string{`key_stream_id: must be a UUID`}},
		{"RegistrationUpdate", `{"key_stream_id":"` + ksid + `","destination":[]}`, []string{`destination: must have at least 1 item`}},
		{"RegistrationResult", `{"key_stream_id":"` + ksid + `","next_node_info":[]}`, []string{`next_node_info: must have at least 1 item`}},
		{"KMSRegistration", `{"kms_id":"KME_A","model":{"device_vendor":"a","device_model":"b","device_version":"1"},"link_ids":["x"]}`, []string{"kms_id: must be a UUID", "link_ids[0]: must be a UUID"}},
		{"VersionInfo", `{"version":"v2"}`, []string{"version: must be a semantic version"}},
		{"DeviceInfo", `{"vendor":"","model":"m","version":"1.0"}`, []string{"vendor: required", "version: must be a semantic version"}},
		{"LinkStatus", `{"source_kms_id":"A","target_kms_id":"C","key_size":-1,"stored_key_count":5,"max_key_count":100,"max_key_per_request":16,"max_key_size":1024,"min_key_size":64,"max_sae_id_count":0}`, []string{"key_size: must not be negative"}},
		{"QKDDeviceList", `{"qkd_devices":[{"device_id":"d","link_id":"` + linkID + `","state":"online","interface":"skip","protocol":"p","peer_kms":"B"}]}`, []string{"qkd_devices[0].device_id: must be a UUID"}},
		{"QKDDeviceList", `{"qkd_devices":[{"device_id":"` + ksid + `"}]}`, []string{"qkd_devices[0].link_id: required", "qkd_devices[0].interface: required"}},
		{"Problem", `{"title":"x","status":99,"detail":"d"}`, []string{"status: must be an HTTP status code"}},
	}
	for _, tt := range tests {
		err := dec(tt.dec)([]byte(tt.in))
		if !errors.Is(err, quicks.ErrBadRequest) {
			t.Errorf("Decode%s(%s) = %v, want ErrBadRequest", tt.dec, tt.in, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Decode%s(%s) = %q, want it to contain %q", tt.dec, tt.in, err, w)
			}
		}
	}
}

func TestDecodeKeepsValues(t *testing.T) {
	got, err := quicks.DecodeLinkRegistration([]byte(`{"source":"a","destination":["b","c"],"qos_request":` + qos004 +
		`,"performance":[{"link_id":"` + linkID + `","current_kpi":` + entryJSON + `}],"options":{"multipath":true,"vendor_x":"y"},"unknown":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Options.Multipath() || got.Options["vendor_x"] != "y" {
		t.Errorf("Options = %v, want multipath and vendor_x kept", got.Options)
	}
	want004 := &quicks.ETSI004QoS{KeyChunkSize: 32, MaxBPS: 128, MinBPS: 64, Jitter: 1, Priority: 3, Timeout: 50, TTL: 5, MetadataMimetype: "application/json"}
	if diff := cmp.Diff(want004, got.QoSRequest.ETSI004); diff != "" {
		t.Errorf("qos_request.etsi_004 mismatch (-want +got):\n%s", diff)
	}
	kpi := got.Performance[0].CurrentKPI
	if kpi == nil || kpi.KAV != 1810 || kpi.DeltaT != 10000 || kpi.Timestamp.Unix() != 1724780488 {
		t.Errorf("performance[0].current_kpi = %+v", kpi)
	}
}

// A relay update tells absent from empty next_node_info.
func TestRelayUpdatePresence(t *testing.T) {
	absent, err := quicks.DecodeRelayUpdate([]byte(`{"source":"a"}`))
	if err != nil || absent.NextNodeInfo != nil {
		t.Errorf("DecodeRelayUpdate(absent) = %v, %v; want nil next_node_info", absent.NextNodeInfo, err)
	}
	empty, err := quicks.DecodeRelayUpdate([]byte(`{"next_node_info":[]}`))
	if err != nil || empty.NextNodeInfo == nil || len(empty.NextNodeInfo) != 0 {
		t.Errorf("DecodeRelayUpdate(empty) = %v, %v; want an empty list", empty.NextNodeInfo, err)
	}
}

func TestValidateBeforeSending(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"relay without next nodes", (&quicks.RelayConfig{Source: "a", Destination: []string{"b"}}).Validate(), "next_node_info: required"},
		{"relay at the last node", (&quicks.RelayConfig{Source: "a", Destination: []string{"b"}, NextNodeInfo: []string{}}).Validate(), ""},
		{"event", (&quicks.Event{Level: "loud", Reason: "x"}).Validate(), "level: unknown value"},
		{"registration", (&quicks.LinkRegistration{Source: "a", Destination: []string{"b"}, QoSRequest: quicks.QoSData{Type: quicks.QoSETSI014}}).Validate(), "performance: required"},
		{"device", (&quicks.DeviceConnection{}).Validate(), "link_id: required"},
		{"device update", (&quicks.DeviceConnection{LinkID: "x"}).ValidateUpdate(), "link_id: must be a UUID"},
	}
	for _, tt := range tests {
		switch {
		case tt.want == "" && tt.err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, tt.err)
		case tt.want != "" && (tt.err == nil || !strings.Contains(tt.err.Error(), tt.want)):
			t.Errorf("%s: Validate() = %v, want %q", tt.name, tt.err, tt.want)
		}
	}
}
