package quicks_test

import (
	"github.com/qkms/qkms/internal/quicks"
)

// Valid messages, shaped after the examples of the OpenAPI files.
const (
	ksid   = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
	linkID = "7184f8e9-4503-45d6-a399-afb9c0e61d06"
	kmsID  = "53d3fa09-9e87-40d5-a7c0-974fcfe95c72"

	entryJSON = `{"timestamp":"2024-08-27T17:41:28Z","delta_t":10000,"IKR":144,"SKR":1250,"EXKR":320,"KAV":1810}`
	qos014    = `{"type":"etsi_014","etsi_014":{"number":1,"size":256,"extensions":[{"example_key":"example_value"}]}}`
	qos004    = `{"type":"etsi_004","etsi_004":{"key_chunk_size":32,"max_bps":128,"min_bps":64,"jitter":1,"priority":3,"timeout":50,"ttl":5,"metadata_mimetype":"application/json"}}`
)

// decoder is one Decode function with a valid sample.
type decoder struct {
	name   string
	decode func([]byte) error
	valid  string
}

func wrap[T any](f func([]byte) (T, error)) func([]byte) error {
	return func(b []byte) error { _, err := f(b); return err }
}

var decoders = []decoder{
	{"VersionInfo", wrap(quicks.DecodeVersionInfo), `{"version":"2.2.0"}`},
	{"Capabilities", wrap(quicks.DecodeCapabilities), `{"key_relay_support":true,"app_api_support":["etsi_014","etsi_004"],
		"etsi_014_info":{"kms_id":"KME_A","key_size":256,"stored_key_count":10,"max_key_count":100,"max_key_per_request":16,
		"max_key_size":1024,"min_key_size":64,"max_sae_id_count":0,"status_extension":{"x":1}},"capabilities_extension":["hybrid_pqc"]}`},
	{"DeviceInfo", wrap(quicks.DecodeDeviceInfo), `{"vendor":"AIT","model":"AURORA KMS","version":"1.0.0"}`},
	{"KMSStatus", wrap(quicks.DecodeKMSStatus), `{"state":"online","operation":"normal operation"}`},
	{"QKDDeviceList", wrap(quicks.DecodeQKDDeviceList), `{"qkd_devices":[{"device_id":"` + ksid + `","link_id":"` + linkID + `",
		"label":"'Alice & Bob Quantum Inc.' on node AIT","state":"online","interface":"etsi_014","protocol":"https","peer_kms":"` + kmsID + `"}]}`},
	{"StateChange", wrap(quicks.DecodeStateChange), `{"state":"offline"}`},
	{"DeviceRegistration", wrap(quicks.DecodeDeviceRegistration), `{"link_id":"` + linkID + `","label":"dev","state":"online",
		"interface":"etsi_014","protocol":"https","peer_kms":"B","server_address":"172.0.10.101:5683",
		"etsi_014":{"primary_id":"6a45ee57-8673-40cb-97ed-6f4f06e1f975","secondary_id":"55169914-40a0-43de-8cf1-d3472db644bd"}}`},
	{"DeviceUpdate", wrap(quicks.DecodeDeviceUpdate), `{"state":"stopped","etsi_004":{"source":"coap://a","destination":"coap://b","max_bps":128}}`},
	{"Performance", wrap(quicks.DecodePerformance), `{"current":` + entryJSON + `,"history":[` + entryJSON + `]}`},
	{"RelayConfig", wrap(quicks.DecodeRelayConfig), `{"source":"application_ID_1","destination":["application_ID_2"],
		"next_node_info":["kms-1.net:5683","kms-3.net:5683"],"qos_request":` + qos004 + `,
		"peer_application_info":[{"kms_id":"KME_C","application_ids":["application_ID_2"]}]}`},
	{"RelayUpdate", wrap(quicks.DecodeRelayUpdate), `{"next_node_info":["172.0.10.103:5683"],"qos_request":{"key_chunk_size":4,"max_bps":128}}`},
	{"LinkStatus", wrap(quicks.DecodeLinkStatus), `{"source_kms_id":"A","target_kms_id":"C","key_size":256,"stored_key_count":5,
		"max_key_count":100,"max_key_per_request":16,"max_key_size":1024,"min_key_size":64,"max_sae_id_count":0,"status_extension":{}}`},
	{"LinkRegistration", wrap(quicks.DecodeLinkRegistration), `{"source":"application_ID_1","destination":["application_ID_2"],
		"qos_request":` + qos014 + `,"performance":[{"link_id":"` + linkID + `","current_kpi":` + entryJSON + `}],
		"options":{"multipath":true,"hybrid_pqc":true}}`},
	{"RegistrationResult", wrap(quicks.DecodeRegistrationResult), `{"key_stream_id":"` + ksid + `","next_node_info":["kms-1.net:5683"],
		"qos":{"max_bps":0,"min_bps":128,"jitter":2,"priority":0,"ttl":1},"peer_application_info":[{"kms_id":"C","application_ids":["x"]}]}`},
	{"RegistrationUpdate", wrap(quicks.DecodeRegistrationUpdate), `{"key_stream_id":"` + ksid + `","destination":["application_ID_3a","application_ID_3b"]}`},
	{"KMSRegistration", wrap(quicks.DecodeKMSRegistration), `{"kms_id":"` + kmsID + `","model":{"device_vendor":"AIT",
		"device_model":"AURORA KMS","device_version":"1.0.0"},"device_ids":["` + ksid + `"],"link_ids":["` + linkID + `"]}`},
	{"StatusNotification", wrap(quicks.DecodeStatusNotification), `{"state":"stopped","reason":"maintenance"}`},
	{"Event", wrap(quicks.DecodeEvent), `{"level":"warning","code":14,"reason":"stopped"}`},
	{"Problem", func(b []byte) error { _, err := quicks.DecodeProblem(b); return err }, `{"type":"about:blank","title":"Not Found","status":404,"detail":"x"}`},
}
