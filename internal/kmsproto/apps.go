package kmsproto

import "github.com/qkms/qkms/internal/qkd"

// SplitKeyReq splits one Ready key of a pair on the link into len(NewIDs)
// keys of equal size (SPEC §3): key i holds bytes [i·s, (i+1)·s) of the
// old key, s = its size / len(NewIDs). The receiver applies the same split
// to its copy; OpID makes a repeat harmless.
type SplitKeyReq struct {
	OpID   string      `cbor:"1,keyasint"`
	Master qkd.SAEID   `cbor:"2,keyasint"`
	Slaves []qkd.SAEID `cbor:"3,keyasint"`
	ID     qkd.KeyID   `cbor:"4,keyasint"`
	NewIDs []qkd.KeyID `cbor:"5,keyasint"`
}

// MergeKeysReq merges Ready keys of a pair on the link, concatenated in
// the listed order, into the one key NewID (SPEC §3).
type MergeKeysReq struct {
	OpID   string      `cbor:"1,keyasint"`
	Master qkd.SAEID   `cbor:"2,keyasint"`
	Slaves []qkd.SAEID `cbor:"3,keyasint"`
	IDs    []qkd.KeyID `cbor:"4,keyasint"`
	NewID  qkd.KeyID   `cbor:"5,keyasint"`
}

// QoS is what an application pair asked for (ETSI GS QKD 004 §6.1.2
// names; zero = not given).
type QoS struct {
	KeyChunkSize uint32 `cbor:"1,keyasint,omitempty"` // bytes
	MaxBps       uint32 `cbor:"2,keyasint,omitempty"`
	MinBps       uint32 `cbor:"3,keyasint,omitempty"`
	Jitter       uint32 `cbor:"4,keyasint,omitempty"`
	Priority     uint32 `cbor:"5,keyasint,omitempty"`
	Timeout      uint32 `cbor:"6,keyasint,omitempty"` // ms
	TTL          uint32 `cbor:"7,keyasint,omitempty"` // s
}

// NewAppReq tells the peer of a new application pair or key stream, whose
// master is attached to the sender and whose slaves are attached to the
// receiver, so that it can prepare. App names it (the key stream ID if
// there is one); a repeat is harmless.
type NewAppReq struct {
	App      string      `cbor:"1,keyasint"`
	Master   qkd.SAEID   `cbor:"2,keyasint"`
	Slaves   []qkd.SAEID `cbor:"3,keyasint"`
	SizeBits uint32      `cbor:"4,keyasint"`
	Stream   string      `cbor:"5,keyasint,omitempty"`
	QoS      *QoS        `cbor:"6,keyasint,omitempty"`
}

// KeyStreamClosedReq tells the peer that an application pair or key
// stream is closed: it deletes the Ready keys of the pair on the link and
// forgets the app.
type KeyStreamClosedReq struct {
	App    string      `cbor:"1,keyasint"`
	Master qkd.SAEID   `cbor:"2,keyasint"`
	Slaves []qkd.SAEID `cbor:"3,keyasint"`
	Reason string      `cbor:"4,keyasint,omitempty"`
}

// KeyStreamClosedResp says how many keys the peer deleted.
type KeyStreamClosedResp struct {
	Deleted uint32 `cbor:"1,keyasint"`
}
