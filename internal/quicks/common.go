package quicks

import (
	"fmt"
	"time"
)

// VersionInfo is the answer of GET /version on both servers.
type VersionInfo struct {
	// Version is a semantic version (the QUICKS API version, Version).
	Version string `json:"version"`
}

// Validate checks the required semantic version.
func (v *VersionInfo) Validate() error {
	var c checker
	if !IsSemver(v.Version) {
		c.fail("version", fmt.Sprintf("must be a semantic version, not %q", clip(v.Version)))
	}
	return c.err()
}

// PerformanceEntry is kms-performance-entry: the key rates of one link over
// DeltaT milliseconds ending at Timestamp. Rates are in bytes per second,
// KAV in bytes; all are format int32 (see Int32). Every member is required.
type PerformanceEntry struct {
	Timestamp time.Time `json:"timestamp"` // RFC 3339
	DeltaT    int32     `json:"delta_t"`   // milliseconds
	IKR       int32     `json:"IKR"`       // internal key rate, B/s
	EXKR      int32     `json:"EXKR"`      // external key rate, B/s
	SKR       int32     `json:"SKR"`       // secret key rate from the QKD devices, B/s
	KAV       int32     `json:"KAV"`       // key available to applications, B
}

var perfEntryShape = &shape{
	required: []string{"timestamp", "delta_t", "IKR", "EXKR", "SKR", "KAV"},
	times:    []string{"timestamp"},
}

// QoSData is qos-data: the QoS an application asked its KMS for, by
// ETSI GS QKD 014 or 004. Type is required; the block named by Type is
// normally present.
type QoSData struct {
	Type    QoSType     `json:"type"`
	ETSI014 *ETSI014QoS `json:"etsi_014,omitempty"`
	ETSI004 *ETSI004QoS `json:"etsi_004,omitempty"`
}

// ETSI014QoS is the ETSI 014 key request: Number keys of Size bits
// (both required) and the request's extensions.
type ETSI014QoS struct {
	Number     int              `json:"number"`
	Size       int              `json:"size"`
	Extensions []map[string]any `json:"extensions,omitempty"`
}

// ETSI004QoS is the ETSI GS QKD 004 QoS of qos-data (key_chunk_size,
// max_bps, min_bps and ttl required).
type ETSI004QoS struct {
	KeyChunkSize     int    `json:"key_chunk_size"` // bytes
	MaxBPS           int    `json:"max_bps"`
	MinBPS           int    `json:"min_bps"`
	Jitter           int    `json:"jitter,omitempty"`
	Priority         int    `json:"priority,omitempty"`
	Timeout          int    `json:"timeout,omitempty"`
	TTL              int    `json:"ttl"`
	MetadataMimetype string `json:"metadata_mimetype,omitempty"`
}

var qosShape = &shape{
	required: []string{"type"},
	children: []child{
		{name: "etsi_014", shape: &shape{required: []string{"number", "size"}}},
		{name: "etsi_004", shape: &shape{required: []string{"key_chunk_size", "max_bps", "min_bps", "ttl"}}},
	},
}

func (q *QoSData) check(c *checker, path string) {
	c.enum(join(path, "type"), string(q.Type), q.Type.Valid(), "etsi_004 or etsi_014")
	if e := q.ETSI014; e != nil {
		p := join(path, "etsi_014")
		c.nonNegative(join(p, "number"), e.Number)
		c.nonNegative(join(p, "size"), e.Size)
	}
	if e := q.ETSI004; e != nil {
		p := join(path, "etsi_004")
		for _, f := range []struct {
			name string
			v    int
		}{{"key_chunk_size", e.KeyChunkSize}, {"max_bps", e.MaxBPS}, {"min_bps", e.MinBPS}, {"jitter", e.Jitter}, {"priority", e.Priority}, {"timeout", e.Timeout}, {"ttl", e.TTL}} {
			c.nonNegative(join(p, f.name), f.v)
		}
	}
}

// PeerApplicationInfo (peer_application_info_schema) says which peer
// applications a KMS serves.
type PeerApplicationInfo struct {
	KMSID          string   `json:"kms_id,omitempty"`
	ApplicationIDs []string `json:"application_ids,omitempty"`
}
