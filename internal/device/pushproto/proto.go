package pushproto

import (
	"errors"
	"fmt"
	"io"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Resource paths of a device (one QKD module per CoAP endpoint).
const (
	PathOpenConnect = "/etsi004/open_connect"
	PathGetKey      = "/etsi004/get_key"
	PathClose       = "/etsi004/close"
)

// Query parameters of GET_KEY.
const (
	QueryKeyStreamID = "ksid"
	QueryIndex       = "index"
)

// MaxMessageSize bounds every payload of the profile that is not a key
// notification (requests, OPEN_CONNECT and CLOSE responses).
const MaxMessageSize = 4096

// Status is an ETSI GS QKD 004 status value (004 clause 6.3).
type Status uint32

// The 004 status values.
const (
	StatusSuccess             Status = 0 // successful
	StatusPeerNotConnected    Status = 1 // connection made, peer not (yet) connected
	StatusInsufficientKey     Status = 2 // GET_KEY: no key available now
	StatusPeerAppNotConnected Status = 3 // GET_KEY: peer application not connected (also: unknown KSID)
	StatusNoQKDConnection     Status = 4 // no QKD connection available
	StatusKSIDInUse           Status = 5 // OPEN_CONNECT: KSID already in use (by another application)
	StatusTimeout             Status = 6 // call exceeded the QoS timeout
	StatusQoSNotMet           Status = 7 // requested QoS not possible; counter-proposal returned
	StatusMetadataTooSmall    Status = 8 // metadata buffer too small
)

func (s Status) String() string {
	switch s {
	case StatusSuccess:
		return "successful"
	case StatusPeerNotConnected:
		return "peer not connected"
	case StatusInsufficientKey:
		return "insufficient key available"
	case StatusPeerAppNotConnected:
		return "peer application not connected"
	case StatusNoQKDConnection:
		return "no QKD connection available"
	case StatusKSIDInUse:
		return "key stream ID already in use"
	case StatusTimeout:
		return "timeout"
	case StatusQoSNotMet:
		return "requested QoS cannot be met"
	case StatusMetadataTooSmall:
		return "metadata buffer too small"
	}
	return fmt.Sprintf("status %d", uint32(s))
}

// OK reports whether s is 0 or 1, the two successful OPEN_CONNECT outcomes.
func (s Status) OK() bool { return s == StatusSuccess || s == StatusPeerNotConnected }

// KeyStreamID is a 004 Key_stream_ID: a UUID, the 16 bytes in RFC 4122
// order. The zero value is NULL ("let the device choose").
type KeyStreamID [16]byte

// NewKeyStreamID returns a random version-4 UUID read from r (crypto/rand if
// nil). It is derived from nothing but r, so it reveals no key material.
func NewKeyStreamID(r io.Reader) (KeyStreamID, error) {
	id, err := qkd.NewKeyID(r)
	return KeyStreamID(id), err
}

// ParseKeyStreamID parses the canonical UUID text form.
func ParseKeyStreamID(s string) (KeyStreamID, error) {
	id, err := qkd.ParseKeyID(s)
	if err != nil {
		return KeyStreamID{}, ErrBadKeyStreamID
	}
	return KeyStreamID(id), nil
}

// ErrBadKeyStreamID is returned for a key stream ID that is not a UUID.
var ErrBadKeyStreamID = errors.New("pushproto: malformed key stream ID")

func (k KeyStreamID) String() string { return qkd.KeyID(k).String() }

// IsZero reports whether k is NULL.
func (k KeyStreamID) IsZero() bool { return k == KeyStreamID{} }

// QoS is the 004 QoS record (004 clause 6.2). Units: key_chunk_size bytes;
// max_bps, min_bps and jitter bits/s; timeout milliseconds; ttl seconds.
type QoS struct {
	KeyChunkSize     uint32 `json:"key_chunk_size"`
	MaxBps           uint32 `json:"max_bps"`
	MinBps           uint32 `json:"min_bps"`
	Jitter           uint32 `json:"jitter"`
	Priority         uint32 `json:"priority"`
	Timeout          uint32 `json:"timeout"`
	TTL              uint32 `json:"ttl"`
	MetadataMimetype string `json:"metadata_mimetype"`
}

// OpenConnect is the body of POST /etsi004/open_connect (004 OPEN_CONNECT).
type OpenConnect struct {
	Source      string      `json:"source"`
	Destination string      `json:"destination"`
	QoS         QoS         `json:"qos"`
	KeyStreamID KeyStreamID `json:"key_stream_id,omitzero"`
}

// OpenConnectReply answers OpenConnect.
type OpenConnectReply struct {
	Status      Status      `json:"status"`
	Source      string      `json:"source,omitempty"`
	Destination string      `json:"destination,omitempty"`
	QoS         QoS         `json:"qos"`
	KeyStreamID KeyStreamID `json:"key_stream_id,omitzero"`
}

// Close is the body of POST /etsi004/close (004 CLOSE).
type Close struct {
	KeyStreamID KeyStreamID `json:"key_stream_id"`
}

// StatusReply is the body of every answer that carries only a status (CLOSE,
// refusals).
type StatusReply struct {
	Status Status `json:"status"`
}

// Notification is one GET_KEY answer: the first response to the Observe
// registration, a later notification, or the answer to a pull by index.
// With Status 0 it carries one key block; otherwise Key is empty.
type Notification struct {
	Status Status
	// Index is the 004 index of the block (position = index × key_chunk_size),
	// the same at both ends of the link for the same bytes. Without a key it
	// is the index the device will deliver next (informational).
	Index       uint32
	Key         secret.Bytes
	KeyStreamID KeyStreamID
	// AgeMS is the time in milliseconds since the block was made (004 "age").
	AgeMS uint64
}

// Wipe wipes the key bytes of n.
func (n *Notification) Wipe() { n.Key.Wipe() }
