package kmsproto

import "github.com/qkms/qkms/internal/qkd"

// SplitKeyReq splits one Ready key of a pair on the link into len(NewIDs)
// keys of equal size: key i holds bytes [i·s, (i+1)·s) of the
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
// the listed order, into the one key NewID.
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
// receiver, so that it can prepare (for an ETSI 004 key stream see
// StreamInfo: either end may send it). App names it (the key stream ID if
// there is one); a repeat is harmless.
type NewAppReq struct {
	App      string      `cbor:"1,keyasint"`
	Master   qkd.SAEID   `cbor:"2,keyasint"`
	Slaves   []qkd.SAEID `cbor:"3,keyasint"`
	SizeBits uint32      `cbor:"4,keyasint"`
	Stream   string      `cbor:"5,keyasint,omitempty"`
	QoS      *QoS        `cbor:"6,keyasint,omitempty"`
	// Etsi004: set for an ETSI 004 key stream (StreamInfo); the receiver
	// answers with a NewAppResp.
	Etsi004 *StreamInfo `cbor:"7,keyasint,omitempty"`
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

// StreamInfo is one end's view of an ETSI GS QKD 004 key stream,
// carried by new_app (NewAppReq.Etsi004). The new_app's App and
// Stream are the key stream ID, Master the stream's source application
// (whose node produces the keys), Slaves its destination application;
// either end may send it, whenever its application opens or closes the
// stream, or needs chunks the source has not produced yet.
type StreamInfo struct {
	// State of the sender's end: StreamOpen, StreamClosed, or "" (the
	// sender's application has not opened the stream yet).
	State    string `cbor:"1,keyasint,omitempty"`
	Mimetype string `cbor:"2,keyasint,omitempty"`
	// Want: the sender's application asks for chunks below Want (a
	// destination asks the source to produce them).
	Want uint32 `cbor:"3,keyasint,omitempty"`
}

// States of one end of a 004 key stream (StreamInfo.State, NewAppResp.State).
const (
	StreamOpen   = "open"
	StreamClosed = "closed"
	// StreamInUse (NewAppResp only): the key stream ID names a stream of
	// another application pair at the receiver.
	StreamInUse = "in_use"
	// StreamPeerSource (ForwardKeysResp.Etsi004 only): the destination's
	// node is itself the source of this stream, between the same two
	// applications (its application created it): the sender's node gave
	// the ID to a predefined stream by mistake and must turn destination.
	// The step's keys were dropped at the destination.
	StreamPeerSource = "peer_source"
)

// NewAppResp answers a new_app that carries a StreamInfo: the receiver's
// end of the stream (State as in StreamInfo, or StreamInUse) and the
// stream's source application as the receiver resolved it (two
// applications that open a predefined key stream ID at the same time
// both announce themselves as source; the lower SAE ID stays source).
// The QoS and Mimetype are the stream's as the receiver holds them (the
// source's win).
type NewAppResp struct {
	State    string    `cbor:"1,keyasint,omitempty"`
	Master   qkd.SAEID `cbor:"2,keyasint,omitempty"`
	QoS      *QoS      `cbor:"3,keyasint,omitempty"`
	Mimetype string    `cbor:"4,keyasint,omitempty"`
}
