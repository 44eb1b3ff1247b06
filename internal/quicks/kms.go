package quicks

import (
	"fmt"
	"math"
)

// Messages of openapi/sdn_to_kms_api.yaml (the server the KMS hosts).

// Capabilities is the answer of GET /monitor/capabilities.
type Capabilities struct {
	KeyRelaySupport bool         `json:"key_relay_support"`
	AppAPISupport   []AppAPI     `json:"app_api_support"`
	ETSI014Info     *ETSI014Info `json:"etsi_014_info,omitempty"`
	// Extension lists what this KMS can do beyond the fields of QUICKS
	// (ExtHybridPQC, ExtITSMACPoly1305, ...). It is a qkms addition: the
	// schema allows additional properties, and a QUICKS SDN agent ignores it.
	Extension []string `json:"capabilities_extension,omitempty"`
}

// ETSI014Info is the KMS-wide ETSI GS QKD 014 status of the capabilities
// answer. Every member but StatusExtension is required; counts are in keys
// of KeySize bits, sizes in bits.
type ETSI014Info struct {
	KMSID            string         `json:"kms_id"`
	KeySize          int            `json:"key_size"`
	StoredKeyCount   int            `json:"stored_key_count"`
	MaxKeyCount      int            `json:"max_key_count"`
	MaxKeyPerRequest int            `json:"max_key_per_request"`
	MaxKeySize       int            `json:"max_key_size"`
	MinKeySize       int            `json:"min_key_size"`
	MaxSAEIDCount    int            `json:"max_sae_id_count"`
	StatusExtension  map[string]any `json:"status_extension,omitempty"`
}

var capabilitiesShape = &shape{
	required: []string{"key_relay_support", "app_api_support"},
	children: []child{{name: "etsi_014_info", shape: &shape{required: []string{
		"kms_id", "key_size", "stored_key_count", "max_key_count", "max_key_per_request",
		"max_key_size", "min_key_size", "max_sae_id_count",
	}}}},
}

// Validate checks the enum values, the counts (minimum 0) and kms_id.
func (m *Capabilities) Validate() error {
	var c checker
	if m.AppAPISupport == nil {
		c.fail("app_api_support", "required")
	}
	for i, a := range m.AppAPISupport {
		c.enum(fmt.Sprintf("app_api_support[%d]", i), string(a), a.Valid(), "etsi_004, etsi_014, kmip, skip or another snake_case name")
	}
	if e := m.ETSI014Info; e != nil {
		c.required("etsi_014_info.kms_id", e.KMSID)
		for _, f := range []struct {
			name string
			v    int
		}{{"key_size", e.KeySize}, {"stored_key_count", e.StoredKeyCount}, {"max_key_count", e.MaxKeyCount},
			{"max_key_per_request", e.MaxKeyPerRequest}, {"max_key_size", e.MaxKeySize},
			{"min_key_size", e.MinKeySize}, {"max_sae_id_count", e.MaxSAEIDCount}} {
			c.nonNegative("etsi_014_info."+f.name, f.v)
		}
	}
	c.items("capabilities_extension", m.Extension)
	return c.err()
}

// DeviceInfo is the answer of GET /monitor/device-info.
type DeviceInfo struct {
	Vendor  string `json:"vendor"`
	Model   string `json:"model"`
	Version string `json:"version"` // semantic version
}

var deviceInfoShape = &shape{required: []string{"vendor", "model", "version"}}

// Validate checks the required members and the version pattern.
func (m *DeviceInfo) Validate() error {
	var c checker
	c.required("vendor", m.Vendor)
	c.required("model", m.Model)
	if !IsSemver(m.Version) {
		c.fail("version", fmt.Sprintf("must be a semantic version, not %q", clip(m.Version)))
	}
	return c.err()
}

// KMSStatus is the answer of GET /monitor/status.
type KMSStatus struct {
	State     State     `json:"state"`
	Operation Operation `json:"operation,omitempty"`
}

var kmsStatusShape = &shape{required: []string{"state"}}

// Validate checks the enums.
func (m *KMSStatus) Validate() error {
	var c checker
	c.enum("state", string(m.State), m.State.Valid(), "online, stopped or offline")
	if m.Operation != "" {
		c.enum("operation", string(m.Operation), m.Operation.Valid(), `"normal operation", warnings, errors or critical`)
	}
	return c.err()
}

// QKDDeviceList is the answer of GET /monitor/qkd-device.
type QKDDeviceList struct {
	QKDDevices []QKDDevice `json:"qkd_devices"`
}

// QKDDevice is one item of qkd_devices: device_id plus qkd-device-info.
type QKDDevice struct {
	DeviceID  string    `json:"device_id"` // UUID
	LinkID    string    `json:"link_id"`   // UUID
	Label     string    `json:"label,omitempty"`
	State     State     `json:"state"`
	Interface Interface `json:"interface"`
	Protocol  string    `json:"protocol"`
	PeerKMS   string    `json:"peer_kms"`
}

var qkdDeviceListShape = &shape{children: []child{{name: "qkd_devices", array: true, shape: &shape{
	required: []string{"device_id", "link_id", "state", "interface", "protocol", "peer_kms"},
}}}}

// Validate checks every device.
func (m *QKDDeviceList) Validate() error {
	var c checker
	for i := range m.QKDDevices {
		d := &m.QKDDevices[i]
		p := fmt.Sprintf("qkd_devices[%d]", i)
		c.requiredUUID(p+".device_id", d.DeviceID)
		c.requiredUUID(p+".link_id", d.LinkID)
		c.enum(p+".state", string(d.State), d.State.Valid(), "online, stopped or offline")
		c.enum(p+".interface", string(d.Interface), d.Interface.Valid(), "etsi_004, etsi_014 or skip")
		c.required(p+".protocol", d.Protocol)
		c.required(p+".peer_kms", d.PeerKMS)
	}
	return c.err()
}

// StateChange is the body of PUT /control/status.
type StateChange struct {
	State State `json:"state"`
}

var stateChangeShape = &shape{required: []string{"state"}}

// Validate checks the enum.
func (m *StateChange) Validate() error {
	var c checker
	c.enum("state", string(m.State), m.State.Valid(), "stopped, offline or online")
	return c.err()
}

// DeviceConnection is qkd-device-info-connection, the body of
// POST (all of link_id, state, label, interface, protocol, peer_kms and
// server_address required) and PUT (partial: what is empty is unchanged)
// /control/qkd-device/{device_id}.
type DeviceConnection struct {
	LinkID        string         `json:"link_id,omitempty"` // UUID
	Label         string         `json:"label,omitempty"`
	State         State          `json:"state,omitempty"`
	Interface     Interface      `json:"interface,omitempty"`
	Protocol      string         `json:"protocol,omitempty"`
	PeerKMS       string         `json:"peer_kms,omitempty"`
	ServerAddress string         `json:"server_address,omitempty"` // host:port
	ETSI014       *DeviceETSI014 `json:"etsi_014,omitempty"`
	ETSI004       *DeviceETSI004 `json:"etsi_004,omitempty"`
}

// DeviceETSI014 names the SAE pair of an ETSI 014 QKD device (both required).
type DeviceETSI014 struct {
	PrimaryID   string `json:"primary_id"`   // master SAE ID
	SecondaryID string `json:"secondary_id"` // slave SAE ID
}

// DeviceETSI004 is etsi_004_device_QoS_data (source and destination required).
type DeviceETSI004 struct {
	Source           string `json:"source"`      // URI
	Destination      string `json:"destination"` // URI
	KeyChunkSize     int    `json:"key_chunk_size,omitempty"`
	MaxBPS           int    `json:"max_bps,omitempty"`
	MinBPS           int    `json:"min_bps,omitempty"`
	Jitter           int    `json:"jitter,omitempty"`
	Priority         int    `json:"priority,omitempty"`
	Timeout          int    `json:"timeout,omitempty"`
	TTL              int    `json:"ttl,omitempty"`
	MetadataMimetype string `json:"metadata_mimetype,omitempty"`
}

var deviceBlocks = []child{
	{name: "etsi_014", shape: &shape{required: []string{"primary_id", "secondary_id"}}},
	{name: "etsi_004", shape: &shape{required: []string{"source", "destination"}}},
}

var (
	deviceRegistrationShape = &shape{
		required: []string{"link_id", "state", "label", "interface", "protocol", "peer_kms", "server_address"},
		children: deviceBlocks,
	}
	deviceUpdateShape = &shape{children: deviceBlocks}
)

// Validate checks a registration (POST): every required member present.
func (m *DeviceConnection) Validate() error {
	var c checker
	c.requiredUUID("link_id", m.LinkID)
	c.required("label", m.Label)
	c.required("protocol", m.Protocol)
	c.required("peer_kms", m.PeerKMS)
	c.required("server_address", m.ServerAddress)
	if m.State == "" {
		c.fail("state", "required")
	}
	if m.Interface == "" {
		c.fail("interface", "required")
	}
	m.check(&c)
	return c.err()
}

// ValidateUpdate checks an update (PUT): only what is given.
func (m *DeviceConnection) ValidateUpdate() error {
	var c checker
	c.uuid("link_id", m.LinkID)
	m.check(&c)
	return c.err()
}

func (m *DeviceConnection) check(c *checker) {
	if m.State != "" {
		c.enum("state", string(m.State), m.State.Valid(), "online, stopped or offline")
	}
	if m.Interface != "" {
		c.enum("interface", string(m.Interface), m.Interface.Valid(), "etsi_004, etsi_014 or skip")
	}
	if e := m.ETSI014; e != nil {
		c.required("etsi_014.primary_id", e.PrimaryID)
		c.required("etsi_014.secondary_id", e.SecondaryID)
	}
	if e := m.ETSI004; e != nil {
		c.required("etsi_004.source", e.Source)
		c.required("etsi_004.destination", e.Destination)
	}
}

// Performance is the answer of GET /link/performance/{link_id}: the latest
// entry and, unless entries=0 was asked, the history (newest first).
type Performance struct {
	Current PerformanceEntry   `json:"current"`
	History []PerformanceEntry `json:"history,omitempty"`
}

var performanceShape = &shape{
	required: []string{"current"},
	children: []child{{name: "current", shape: perfEntryShape}, {name: "history", array: true, shape: perfEntryShape}},
}

// Validate has nothing to check beyond the Go types.
func (m *Performance) Validate() error { return nil }

// RelayConfig is a forwarding entry, the body of POST (source, destination
// and next_node_info required) and PUT (partial update: what is absent is
// unchanged) /link/relay/{key_stream_id}. NextNodeInfo lists URI
// authorities (host:port) of the next KMSes; it is empty, not absent, at
// the last node.
type RelayConfig struct {
	Source              string                `json:"source,omitempty"`
	Destination         []string              `json:"destination,omitzero"`
	NextNodeInfo        []string              `json:"next_node_info,omitzero"`
	QoSRequest          *QoSData              `json:"qos_request,omitempty"`
	PeerApplicationInfo []PeerApplicationInfo `json:"peer_application_info,omitempty"`
	// Route (qkms extension) names every KMS of the configured route,
	// source first, destination last: the destination checks the signed
	// forwarding path of hybrid keys against it (docs/hybrid.md).
	Route []string `json:"qkms_route,omitempty"`
	// Multipath (qkms extension): the entry is one path of a multipath
	// key stream (docs/relay-design.md "Multipath relay").
	Multipath *RelayMultipath `json:"qkms_multipath,omitempty"`
}

// RelayMultipath names the multipath key stream a relay entry is one path
// of: Group is the stream the applications registered, Path this path's
// index among Paths, Mode "spread" or "split", WeightBPS the path's share
// of the stream's rate, bit/s.
type RelayMultipath struct {
	Group     string  `json:"group"`
	Path      int     `json:"path"`
	Paths     int     `json:"paths"`
	Mode      string  `json:"mode"`
	WeightBPS float64 `json:"weight_bps,omitempty"`
}

var (
	relayConfigShape = &shape{
		required: []string{"source", "destination", "next_node_info"},
		children: []child{{name: "qos_request", shape: qosShape}},
	}
	// PUT declares qos_request as a free-form object.
	relayUpdateShape = &shape{}
)

// Validate checks a new entry (POST).
func (m *RelayConfig) Validate() error {
	var c checker
	c.required("source", m.Source)
	c.list("destination", m.Destination, 1)
	if m.NextNodeInfo == nil {
		c.fail("next_node_info", "required (an empty list at the last node)")
	}
	m.check(&c, false)
	return c.err()
}

// ValidateUpdate checks a partial update (PUT).
func (m *RelayConfig) ValidateUpdate() error {
	var c checker
	if m.Destination != nil {
		c.list("destination", m.Destination, 1)
	}
	m.check(&c, true)
	return c.err()
}

func (m *RelayConfig) check(c *checker, update bool) {
	c.items("next_node_info", m.NextNodeInfo)
	if m.Route != nil {
		c.list("qkms_route", m.Route, 2)
		c.items("qkms_route", m.Route)
	}
	if q := m.QoSRequest; q != nil && (!update || q.Type != "") {
		q.check(c, "qos_request")
	}
	if mp := m.Multipath; mp != nil {
		c.required("qkms_multipath.group", mp.Group)
		switch {
		case mp.Paths < 2 || mp.Path < 0 || mp.Path >= mp.Paths:
			c.fail("qkms_multipath.path", "must be between 0 and paths-1, paths at least 2")
		case mp.Mode != "spread" && mp.Mode != "split":
			c.fail("qkms_multipath.mode", `must be "spread" or "split"`)
		case !(mp.WeightBPS >= 0) || math.IsInf(mp.WeightBPS, 0):
			c.fail("qkms_multipath.weight_bps", "must be a finite rate >= 0")
		}
	}
}
