package quicks

import "fmt"

// Messages of openapi/kms_to_sdn_api.yaml (the server the SDN agent hosts).

// LinkStatus is the answer of GET /link/status: the ETSI 014 status of the
// whole path between two SAEs (every member but StatusExtension required,
// integers minimum 0).
type LinkStatus struct {
	SourceKMSID      string         `json:"source_kms_id"`
	TargetKMSID      string         `json:"target_kms_id"`
	KeySize          int            `json:"key_size"`
	StoredKeyCount   int            `json:"stored_key_count"`
	MaxKeyCount      int            `json:"max_key_count"`
	MaxKeyPerRequest int            `json:"max_key_per_request"`
	MaxKeySize       int            `json:"max_key_size"`
	MinKeySize       int            `json:"min_key_size"`
	MaxSAEIDCount    int            `json:"max_sae_id_count"`
	StatusExtension  map[string]any `json:"status_extension,omitempty"`
}

var linkStatusShape = &shape{required: []string{
	"source_kms_id", "target_kms_id", "key_size", "stored_key_count", "max_key_count",
	"max_key_per_request", "max_key_size", "min_key_size", "max_sae_id_count",
}}

// Validate checks the IDs and the counts.
func (m *LinkStatus) Validate() error {
	var c checker
	c.required("source_kms_id", m.SourceKMSID)
	c.required("target_kms_id", m.TargetKMSID)
	for _, f := range []struct {
		name string
		v    int
	}{{"key_size", m.KeySize}, {"stored_key_count", m.StoredKeyCount}, {"max_key_count", m.MaxKeyCount},
		{"max_key_per_request", m.MaxKeyPerRequest}, {"max_key_size", m.MaxKeySize},
		{"min_key_size", m.MinKeySize}, {"max_sae_id_count", m.MaxSAEIDCount}} {
		c.nonNegative(f.name, f.v)
	}
	return c.err()
}

// LinkRegistration is the body of POST /link/registration: a source
// application asked its KMS for keys with destination(s) (several = group
// key); the KMS reports its links' current performance for path selection.
type LinkRegistration struct {
	Source      string              `json:"source"`
	Destination []string            `json:"destination"`
	QoSRequest  QoSData             `json:"qos_request"`
	Performance []LinkKPI           `json:"performance"`
	Options     RegistrationOptions `json:"options,omitempty"`
}

// LinkKPI is one item of performance: a direct link and its latest entry.
type LinkKPI struct {
	LinkID     string            `json:"link_id,omitempty"` // UUID
	CurrentKPI *PerformanceEntry `json:"current_kpi,omitempty"`
}

// RegistrationOptions holds the optional features of a registration:
// "multipath" (boolean) is defined; QUICKS lets an implementation add its
// own key:value pairs, which are kept.
type RegistrationOptions map[string]any

// OptionMultipath asks for a multi-path establishment.
const OptionMultipath = "multipath"

// OptionSplit (qkms extension), with multipath, asks that every key be
// XOR-split over node-disjoint paths (docs/relay-design.md "Multipath
// relay") rather than spread over the paths of a max-flow.
const OptionSplit = "qkms_split"

// Multipath reports whether options ask for a multi-path establishment.
func (o RegistrationOptions) Multipath() bool {
	b, _ := o[OptionMultipath].(bool)
	return b
}

// Split reports whether options ask for split multipath keys.
func (o RegistrationOptions) Split() bool {
	b, _ := o[OptionSplit].(bool)
	return b
}

var linkRegistrationShape = &shape{
	required: []string{"source", "destination", "qos_request", "performance"},
	children: []child{
		{name: "qos_request", shape: qosShape},
		{name: "performance", array: true, shape: &shape{children: []child{{name: "current_kpi", shape: perfEntryShape}}}},
	},
}

// Validate checks a registration.
func (m *LinkRegistration) Validate() error {
	var c checker
	c.required("source", m.Source)
	c.list("destination", m.Destination, 1)
	m.QoSRequest.check(&c, "qos_request")
	switch {
	case m.Performance == nil:
		c.fail("performance", "required")
	case len(m.Performance) == 0:
		c.fail("performance", "must have at least 1 item(s)")
	}
	for i, p := range m.Performance {
		c.uuid(fmt.Sprintf("performance[%d].link_id", i), p.LinkID)
	}
	for _, o := range []string{OptionMultipath, OptionSplit} {
		if v, ok := m.Options[o]; ok {
			if _, isBool := v.(bool); !isBool {
				c.fail("options."+o, "must be a boolean")
			}
		}
	}
	return c.err()
}

// RegistrationResult is the 201 answer of POST /link/registration.
type RegistrationResult struct {
	KeyStreamID         string                `json:"key_stream_id"`  // UUID
	NextNodeInfo        []string              `json:"next_node_info"` // URI authorities, at least one
	QoS                 *QoSProposal          `json:"qos,omitempty"`  // ETSI 004 only
	PeerApplicationInfo []PeerApplicationInfo `json:"peer_application_info,omitempty"`
}

// QoSProposal is the ETSI 004 QoS counter-proposal of the SDN (qos, a free
// object in the schema; its example uses these ETSI 004 names). Nil
// members are not proposed.
type QoSProposal struct {
	KeyChunkSize     *int   `json:"key_chunk_size,omitempty"`
	MaxBPS           *int   `json:"max_bps,omitempty"`
	MinBPS           *int   `json:"min_bps,omitempty"`
	Jitter           *int   `json:"jitter,omitempty"`
	Priority         *int   `json:"priority,omitempty"`
	Timeout          *int   `json:"timeout,omitempty"`
	TTL              *int   `json:"ttl,omitempty"`
	MetadataMimetype string `json:"metadata_mimetype,omitempty"`
}

var registrationResultShape = &shape{required: []string{"key_stream_id", "next_node_info"}}

// Validate checks the key stream ID and the next nodes.
func (m *RegistrationResult) Validate() error {
	var c checker
	c.requiredUUID("key_stream_id", m.KeyStreamID)
	c.list("next_node_info", m.NextNodeInfo, 1)
	return c.err()
}

// RegistrationUpdate is the body of PATCH /link/registration, sent by the
// destination KMS once the keys were established.
type RegistrationUpdate struct {
	KeyStreamID string   `json:"key_stream_id"` // UUID
	Destination []string `json:"destination"`
}

var registrationUpdateShape = &shape{required: []string{"key_stream_id", "destination"}}

// Validate checks the key stream ID and the destinations.
func (m *RegistrationUpdate) Validate() error {
	var c checker
	c.requiredUUID("key_stream_id", m.KeyStreamID)
	c.list("destination", m.Destination, 1)
	return c.err()
}

// KMSRegistration is the body of POST /notification/registration: a KMS
// joined the network.
type KMSRegistration struct {
	KMSID     string   `json:"kms_id"` // UUID
	Model     KMSModel `json:"model"`
	DeviceIDs []string `json:"device_ids,omitempty"` // UUIDs
	LinkIDs   []string `json:"link_ids,omitempty"`   // UUIDs
}

// KMSModel names the KMS (all required).
type KMSModel struct {
	DeviceVendor  string `json:"device_vendor"`
	DeviceModel   string `json:"device_model"`
	DeviceVersion string `json:"device_version"`
}

var kmsRegistrationShape = &shape{
	required: []string{"kms_id", "model"},
	children: []child{{name: "model", shape: &shape{required: []string{"device_vendor", "device_model", "device_version"}}}},
}

// Validate checks the IDs and the model.
func (m *KMSRegistration) Validate() error {
	var c checker
	c.requiredUUID("kms_id", m.KMSID)
	c.required("model.device_vendor", m.Model.DeviceVendor)
	c.required("model.device_model", m.Model.DeviceModel)
	c.required("model.device_version", m.Model.DeviceVersion)
	c.uuids("device_ids", m.DeviceIDs)
	c.uuids("link_ids", m.LinkIDs)
	return c.err()
}

// StatusNotification is the body of PATCH /notification/status. State is
// a free string here (the KMS states are State's values).
type StatusNotification struct {
	State  string `json:"state"`
	Reason string `json:"reason"`
}

var statusNotificationShape = &shape{required: []string{"state", "reason"}}

// Validate checks the required members.
func (m *StatusNotification) Validate() error {
	var c checker
	c.required("state", m.State)
	c.required("reason", m.Reason)
	return c.err()
}

// Event is the body of PUT /notification/event. Code is vendor specific.
type Event struct {
	Level  EventLevel `json:"level"`
	Code   *int       `json:"code,omitempty"`
	Reason string     `json:"reason"`
}

var eventShape = &shape{required: []string{"level", "reason"}}

// Validate checks the level and the reason.
func (m *Event) Validate() error {
	var c checker
	c.enum("level", string(m.Level), m.Level.Valid(), "debug, info, warning, error or critical")
	c.required("reason", m.Reason)
	return c.err()
}
