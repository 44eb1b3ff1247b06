package kmsproto

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/qkms/qkms/internal/qkd"
)

// Version is the protocol version in every Header.
const Version = 1

// Type names a KMS↔KMS message.
type Type string

// The KMS↔KMS messages.
const (
	NewKeyBatch      Type = "new_key_batch"
	ForwardKeys      Type = "forward_keys"
	SplitKey         Type = "split_key"
	MergeKeys        Type = "merge_keys"
	DeleteKeys       Type = "delete_keys"
	MakeKeysInternal Type = "make_keys_internal"
	MakeKeysExternal Type = "make_keys_external"
	NewApp           Type = "new_app"
	KeyStreamClosed  Type = "key_stream_closed"
	GetStatus        Type = "get_status"
	PostStatus       Type = "post_status"
)

// Types lists every message type (the CoAP resources /kms/v1/<type>).
var Types = []Type{NewKeyBatch, ForwardKeys, SplitKey, MergeKeys, DeleteKeys,
	MakeKeysInternal, MakeKeysExternal, NewApp, KeyStreamClosed, GetStatus, PostStatus}

// Known reports whether t is a message type of this version.
func (t Type) Known() bool {
	for _, k := range Types {
		if k == t {
			return true
		}
	}
	return false
}

// Sealed is what goes on the wire: the encoded Header (request) or Reply
// (response) and the ITS tag over exactly those bytes.
type Sealed struct {
	_    struct{} `cbor:",toarray"`
	Data []byte
	Tag  []byte
}

// Header is the authenticated part of a request.
type Header struct {
	V    uint8           `cbor:"1,keyasint"`
	Type Type            `cbor:"2,keyasint"`
	Link qkd.LinkID      `cbor:"3,keyasint"`
	From qkd.NodeID      `cbor:"4,keyasint"`
	To   qkd.NodeID      `cbor:"5,keyasint"`
	Seq  uint64          `cbor:"6,keyasint"`
	Body cbor.RawMessage `cbor:"7,keyasint,omitempty"`
	// MAC names the sender's ITS MAC scheme ("wegman_carter"); omitted for
	// the default, Poly1305. It is covered by the tag; the receiver checks
	// it against its own setting only to report a mismatch clearly.
	MAC string `cbor:"8,keyasint,omitempty"`
}

// Code is the outcome of a request, carried in an authenticated Reply.
type Code uint8

// Reply codes.
const (
	OK         Code = 0
	BadRequest Code = 1 // malformed or inconsistent body
	Conflict   Code = 2 // would allocate material that is not free
	Retry      Code = 3 // not yet possible (e.g. a gap in allocations); try again later
	Inactive   Code = 4 // the peer is zeroised or stopped
	Internal   Code = 5
	NoRoute    Code = 6 // forward_keys: no forwarding entry for the stream here
	UnknownSAE Code = 7 // new_app: a slave SAE is not attached to the receiving node
	// Hybrid: forward_keys refused for its post-quantum part (docs/hybrid.md): a
	// stream that requires hybrid keys got none, a header or signature
	// does not verify, the KEM offer is unknown, or the signed forwarding
	// path is not the configured route. The source drops the keys.
	Hybrid Code = 8
	// HybridStale: forward_keys refused because the destination lacks
	// what the source's cached KEM offer assumed (its decapsulation key
	// after a restart, or a certificate of a node new on the route). Not
	// an attack: the source drops the keys, asks for a new offer and
	// tries again.
	HybridStale Code = 9
	// KeyExists: refused for good, a key with one of the request's IDs
	// exists at the receiver (e.g. two nodes relaying the chunks of one
	// ETSI 004 stream, whose IDs both derive from the stream).
	KeyExists Code = 10
)

func (c Code) String() string {
	switch c {
	case OK:
		return "ok"
	case BadRequest:
		return "bad_request"
	case Conflict:
		return "conflict"
	case Retry:
		return "retry"
	case Inactive:
		return "inactive"
	case NoRoute:
		return "no_route"
	case UnknownSAE:
		return "unknown_sae"
	case Hybrid:
		return "hybrid"
	case HybridStale:
		return "hybrid_stale"
	case KeyExists:
		return "key_exists"
	}
	return "internal"
}

// Reply is the authenticated part of a response. Seq and Type repeat the
// request's so a reply cannot be moved to another request.
type Reply struct {
	Seq  uint64          `cbor:"1,keyasint"`
	Type Type            `cbor:"2,keyasint"`
	Code Code            `cbor:"3,keyasint"`
	Err  string          `cbor:"4,keyasint,omitempty"` // safe public text
	Body cbor.RawMessage `cbor:"5,keyasint,omitempty"`
}

// Piece is bytes [Off, Off+Len) of block Index.
type Piece struct {
	_     struct{} `cbor:",toarray"`
	Index uint64
	Off   uint32
	Len   uint32
}

// NewKeyBatchReq asks the peer to confirm blocks (docs/coap-profiles.md): key
// IDs only, never key bytes. Check is a one-time Poly1305 tag over the
// batch's material computed with the batch's first 32 bytes as key, so a
// mismatch of the two ends' material is detected; the message itself is
// authenticated by the envelope tag.
type NewKeyBatchReq struct {
	BatchID string   `cbor:"1,keyasint"`
	Indices []uint64 `cbor:"2,keyasint"`
	Check   []byte   `cbor:"3,keyasint"`
}

// Batch results.
const (
	BatchConfirmed = "confirmed"
	BatchMismatch  = "mismatch" // material differs: discarded at both ends
	BatchMissing   = "missing"  // some blocks are lost at the receiver: those discarded at both ends
	BatchPending   = "pending"  // some blocks have not arrived yet: ask again
)

// NewKeyBatchResp answers a NewKeyBatchReq.
type NewKeyBatchResp struct {
	Result  string   `cbor:"1,keyasint"`
	Missing []uint64 `cbor:"2,keyasint,omitempty"`
}

// MakeKeysInternalReq turns confirmed material of the sender's parity into
// MAC key slots First..First+Count-1 for messages sent by Sender.
type MakeKeysInternalReq struct {
	Sender qkd.NodeID `cbor:"1,keyasint"`
	First  uint64     `cbor:"2,keyasint"`
	Count  uint32     `cbor:"3,keyasint"`
	Pieces []Piece    `cbor:"4,keyasint"`
}

// MakeKeysExternalReq reserves keys for an SAE pair: the
// concatenated pieces are cut into len(IDs) keys of SizeBits each.
type MakeKeysExternalReq struct {
	AllocID  string      `cbor:"1,keyasint"`
	Master   qkd.SAEID   `cbor:"2,keyasint"`
	Slaves   []qkd.SAEID `cbor:"3,keyasint"`
	SizeBits uint32      `cbor:"4,keyasint"`
	IDs      []qkd.KeyID `cbor:"5,keyasint"`
	Pieces   []Piece     `cbor:"6,keyasint"`
	Created  int64       `cbor:"7,keyasint"` // Unix ms
	Expires  int64       `cbor:"8,keyasint"` // Unix ms
	// Stream: the ETSI 004 key stream (KSID) the keys are chunks of, ""
	// (absent) for ordinary keys of the pair. Both ends store it with the
	// keys (keystore.Key.Stream), which are then delivered by ID only.
	Stream string `cbor:"9,keyasint,omitempty"`
}

// ForwardKeysReq relays keys one hop along a key stream's route
// (docs/relay-design.md): Cipher is the keys' bytes XOR a one-time pad made
// of Pieces of this link's material (from the sender's parity). Step names
// the relay batch at every hop (the idempotency key); Path lists the nodes
// crossed so far, sender last.
type ForwardKeysReq struct {
	Stream   string       `cbor:"1,keyasint"`
	Step     string       `cbor:"2,keyasint"`
	Source   qkd.NodeID   `cbor:"3,keyasint"`
	Dest     qkd.NodeID   `cbor:"4,keyasint"`
	Master   qkd.SAEID    `cbor:"5,keyasint"`
	Slaves   []qkd.SAEID  `cbor:"6,keyasint"`
	SizeBits uint32       `cbor:"7,keyasint"`
	IDs      []qkd.KeyID  `cbor:"8,keyasint"`
	Pieces   []Piece      `cbor:"9,keyasint"`
	Cipher   []byte       `cbor:"10,keyasint"`
	Created  int64        `cbor:"11,keyasint"` // Unix ms
	Expires  int64        `cbor:"12,keyasint"` // Unix ms
	Path     []qkd.NodeID `cbor:"13,keyasint"`
	// Etsi004: set when the keys are chunks of an ETSI 004 key stream
	// between applications on the route's end nodes (RelayStream); the
	// destination answers with its end's StreamInfo.
	Etsi004 *RelayStream `cbor:"14,keyasint,omitempty"`
	// Hybrid is the source's signed hybrid header (hybrid.Header, CBOR)
	// when the keys are hybrid (docs/hybrid.md): intermediate nodes pass it on
	// untouched. Path is the signed forwarding path so far
	// (hybrid.MarshalPath): the source's step, then one per intermediate
	// node, each added by that node.
	Hybrid    []byte `cbor:"15,keyasint,omitempty"`
	PathSigns []byte `cbor:"16,keyasint,omitempty"`
	// OfferReq asks the destination for its current KEM offer (no keys:
	// IDs, Pieces and Cipher are empty); intermediate nodes forward it
	// without consuming anything, and the destination answers with
	// ForwardKeysResp.Offer.
	OfferReq bool `cbor:"17,keyasint,omitempty"`
	// Certs, with OfferReq: the encoded ML-DSA certificates of the nodes
	// in Path, each added by its node. The destination keeps them for
	// the stream, so that the signed path steps need not carry them.
	Certs [][]byte `cbor:"18,keyasint,omitempty"`
	// Back: the step runs the stream's route backwards, from its
	// destination node (Dest) to its source node (Source), carrying keys
	// of the same pair (Master, Slaves) that the slaves' node relays
	// ahead towards the master's (docs/relay-design.md "Both ends relay
	// ahead"). Source and Dest still name the stream's ends. Never with
	// Hybrid or Etsi004.
	Back bool `cbor:"19,keyasint,omitempty"`
	// Share: the step carries one XOR share of the keys of a multipath
	// key stream (docs/relay-design.md "Multipath relay"), not the keys
	// themselves: Stream is the path's key stream, the keys (IDs) those of
	// the pair. Never with Hybrid or Etsi004.
	Share *Share `cbor:"20,keyasint,omitempty"`
}

// Share describes one XOR share of a split multipath step. The keys are
// the XOR of the shares, one per path of the multipath stream Group: the
// shares other than the last are stored at the receiving end as one row
// each (Row, never delivered to an application), and the last share's
// step names them in Combine; the receiving end then stores the keys,
// the XOR of the last share and the stored ones, in the same transaction
// that deletes the stored shares.
type Share struct {
	Group   string      `cbor:"1,keyasint"`
	Row     qkd.KeyID   `cbor:"2,keyasint,omitempty"` // a share to store
	Combine []qkd.KeyID `cbor:"3,keyasint,omitempty"` // the last share: the stored shares to combine with
}

// RelayStream is the ETSI GS QKD 004 key stream a relay step's keys
// belong to (ETSI GS QKD 004 clause 6.2, network case): the source node
// tells the destination node the stream with its chunks. The step's keys
// are chunks First, First+1, … of the stream, in the order of IDs.
type RelayStream struct {
	KSID     string    `cbor:"1,keyasint"`
	Source   qkd.SAEID `cbor:"2,keyasint"` // source application (the keys' master)
	Dest     qkd.SAEID `cbor:"3,keyasint"` // destination application
	QoS      *QoS      `cbor:"4,keyasint,omitempty"`
	Mimetype string    `cbor:"5,keyasint,omitempty"`
	// State of the source's end when the step was made (StreamOpen,
	// StreamClosed); a retried step repeats it, so receivers never let
	// it undo a later state.
	State string `cbor:"6,keyasint,omitempty"`
	First uint32 `cbor:"7,keyasint,omitempty"`
}

// ForwardKeysResp answers a forward_keys once the destination holds the
// keys: Hops is the number of trusted nodes crossed after this one.
type ForwardKeysResp struct {
	Delivered bool  `cbor:"1,keyasint"`
	Hops      uint8 `cbor:"2,keyasint"`
	// Etsi004: the destination's end of the step's ETSI 004 key stream
	// (State, and Want: chunks its application asked for), also in the
	// answer to a retry of the step.
	Etsi004 *StreamInfo `cbor:"3,keyasint,omitempty"`
	// Offer is the destination's signed KEM offer (hybrid.Offer, CBOR),
	// the answer to an OfferReq.
	Offer []byte `cbor:"4,keyasint,omitempty"`
}

// DeleteKeysReq deletes reserved keys at the peer (TTL, abort).
type DeleteKeysReq struct {
	IDs    []qkd.KeyID `cbor:"1,keyasint"`
	Reason string      `cbor:"2,keyasint,omitempty"`
}

// DeleteKeysResp says how many keys the peer deleted.
type DeleteKeysResp struct {
	Deleted uint32 `cbor:"1,keyasint"`
}

// Node states in Status.
const (
	StateActive   = "active"
	StateInactive = "inactive"
)

// Status is a node's state as seen by a peer (get_status reply, post_status body).
type Status struct {
	Node  qkd.NodeID `cbor:"1,keyasint"`
	State string     `cbor:"2,keyasint"`
	Time  int64      `cbor:"3,keyasint"` // Unix ms
	// Per-link counts of the sender's view of this link.
	ConfirmedBytes int64 `cbor:"4,keyasint"`
	ReadyKeys      int64 `cbor:"5,keyasint"`
	Slots          int64 `cbor:"6,keyasint"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  8,
		MaxArrayElements: 1 << 16,
		MaxMapPairs:      64,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// ErrMalformed wraps every decoding failure.
var ErrMalformed = errors.New("kmsproto: malformed message")

// Marshal encodes v deterministically.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes data into v with the package's limits.
func Unmarshal(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// DecodeSealed decodes a wire message.
func DecodeSealed(b []byte) (Sealed, error) {
	var s Sealed
	if err := Unmarshal(b, &s); err != nil {
		return Sealed{}, err
	}
	if len(s.Tag) != 16 || len(s.Data) == 0 {
		return Sealed{}, fmt.Errorf("%w: bad tag or empty data", ErrMalformed)
	}
	return s, nil
}

// DecodeHeader decodes and checks a request header.
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	if err := Unmarshal(b, &h); err != nil {
		return Header{}, err
	}
	if h.V != Version || !h.Type.Known() || h.Link == "" || h.From == "" || h.To == "" {
		return Header{}, fmt.Errorf("%w: bad header", ErrMalformed)
	}
	return h, nil
}

// SeqGone is a receiver's answer to a request whose message number it
// holds no key for any more (used, or never allocated) and whose reply it
// has not kept (internal/link: the reply cache). It is not
// authenticated: nothing is left to authenticate it with. It names the
// request it answers by number, type and Hash, the SHA-256 of the sealed
// request's Data followed by its Tag as the receiver got them, so that a
// sender acts on it only for exactly the bytes it sent (a request
// corrupted on the way gets a notice that names other bytes). On the wire
// it is a CBOR map, never confused with a Sealed (an array).
type SeqGone struct {
	Seq  uint64 `cbor:"1,keyasint"`
	Type Type   `cbor:"2,keyasint"`
	Hash []byte `cbor:"3,keyasint"`
}

// DecodeSeqGone decodes and checks a SeqGone notice.
func DecodeSeqGone(b []byte) (SeqGone, error) {
	var g SeqGone
	if err := Unmarshal(b, &g); err != nil {
		return SeqGone{}, err
	}
	if len(g.Hash) != 32 || !g.Type.Known() {
		return SeqGone{}, fmt.Errorf("%w: bad seq_gone notice", ErrMalformed)
	}
	return g, nil
}

// DecodeReply decodes a response.
func DecodeReply(b []byte) (Reply, error) {
	var r Reply
	if err := Unmarshal(b, &r); err != nil {
		return Reply{}, err
	}
	return r, nil
}
