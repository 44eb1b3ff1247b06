// Package etsi004 is the vocabulary of ETSI GS QKD 004 V2.1.1 (the
// application interface, pull mode): the QoS
// block, the status codes, the three calls as Go values, and the Service
// the bindings serve. It has no I/O. The bindings are
// internal/etsi004/tcp004 (the binary TCP/TLS framing of ETSI's reference
// implementation) and internal/etsi004/coap004 (qkms's
// CoAP profile, docs/coap-profiles.md); the service behind them is the
// node's key stream service.
package etsi004

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/qkms/qkms/internal/qkd"
)

// Status is a 004 status code.
type Status uint32

// Status codes.
const (
	StatusSuccessful         Status = 0 // Successful
	StatusPeerNotConnected   Status = 1 // Successful connection, but peer not connected
	StatusInsufficientKey    Status = 2 // GET_KEY failed because insufficient key available
	StatusPeerNotConnectedGK Status = 3 // GET_KEY failed because peer application is not yet connected
	StatusNoQKDConnection    Status = 4 // No QKD connection available
	StatusKSIDInUse          Status = 5 // OPEN_CONNECT failed because the KSID is already in use
	StatusTimeout            Status = 6 // TIMEOUT_ERROR
	StatusQoSNotMet          Status = 7 // OPEN failed: requested QoS could not be met; counter-proposal returned
	StatusMetadataTooSmall   Status = 8 // GET_KEY failed: metadata buffer too small; needed size returned
)

var statusText = [...]string{
	"successful", "successful connection, but peer not connected", "insufficient key available",
	"peer application is not yet connected", "no QKD connection available", "key stream ID already in use",
	"timeout", "requested QoS could not be met", "metadata buffer too small",
}

func (s Status) String() string {
	if int(s) < len(statusText) {
		return statusText[s]
	}
	return fmt.Sprintf("status %d", uint32(s))
}

// MimeJSON is the metadata type every KM must accept (ETSI GS QKD 004).
const MimeJSON = "application/json"

// MaxMimeLen is the size of the Metadata_mimetype field (NUL included).
const MaxMimeLen = 256

// QoS is the 004 QoS block. Units as in the standard: KeyChunkSize in
// bytes, MaxBps, MinBps and Jitter in bit/s, Timeout in ms, TTL in s. A
// zero field on input lets the KM choose.
type QoS struct {
	KeyChunkSize     uint32 `json:"key_chunk_size" cbor:"key_chunk_size"`
	MaxBps           uint32 `json:"max_bps" cbor:"max_bps"`
	MinBps           uint32 `json:"min_bps" cbor:"min_bps"`
	Jitter           uint32 `json:"jitter" cbor:"jitter"`
	Priority         uint32 `json:"priority" cbor:"priority"`
	Timeout          uint32 `json:"timeout" cbor:"timeout"`
	TTL              uint32 `json:"ttl" cbor:"ttl"`
	MetadataMimetype string `json:"metadata_mimetype" cbor:"metadata_mimetype"`
}

// KSID is a key stream ID: a UUID, 16 bytes in RFC 4122 (network) byte
// order. The zero value is NULL.
type KSID [16]byte

// IsNull reports whether k is the NULL key stream ID.
func (k KSID) IsNull() bool { return k == KSID{} }

// String formats k as a canonical lower-case UUID.
func (k KSID) String() string { return qkd.KeyID(k).String() }

// NewKSID returns a fresh random (version 4) UUID.
func NewKSID() (KSID, error) {
	var k KSID
	if _, err := rand.Read(k[:]); err != nil {
		return KSID{}, err
	}
	k[6] = k[6]&0x0f | 0x40
	k[8] = k[8]&0x3f | 0x80
	return k, nil
}

// ParseKSID parses a canonical UUID string.
func ParseKSID(s string) (KSID, error) {
	id, err := qkd.ParseKeyID(s)
	if err != nil {
		return KSID{}, fmt.Errorf("etsi004: key stream ID %q is not a UUID", clip(s))
	}
	return KSID(id), nil
}

// OpenRequest is OPEN_CONNECT's input. Source names the calling
// application and Destination its peer: a bare SAE ID or a URI whose
// authority is the SAE ID (sae://SAE_A1, client://SAE_A1).
type OpenRequest struct {
	Source, Destination string
	QoS                 QoS
	KeyStreamID         KSID // NULL: the KM allocates one
}

// OpenResponse is OPEN_CONNECT's output: the status, the QoS agreed (or
// counter-proposed with StatusQoSNotMet), and the key stream ID.
type OpenResponse struct {
	Status      Status
	QoS         QoS
	KeyStreamID KSID
}

// GetKeyRequest is GET_KEY's input. MetadataSize is the caller's metadata
// buffer size (0: no metadata wanted).
type GetKeyRequest struct {
	KeyStreamID  KSID
	Index        uint32
	MetadataSize uint32
}

// GetKeyResponse is GET_KEY's output. Key is exactly KeyChunkSize bytes on
// success (owned by the caller, who wipes it after sending); Metadata is
// the metadata in the agreed type. With StatusMetadataTooSmall,
// MetadataSize holds the size needed and no key is consumed.
type GetKeyResponse struct {
	Status       Status
	Index        uint32
	Key          []byte
	Metadata     []byte
	MetadataSize uint32
}

// CloseRequest is CLOSE's input.
type CloseRequest struct{ KeyStreamID KSID }

// CloseResponse is CLOSE's output.
type CloseResponse struct{ Status Status }

// Service is the 004 key stream service behind the bindings. caller is the
// SAE ID from the client certificate. A 004 outcome (including refusals)
// is a Status in the response with a nil error; an error means the call
// could not be carried out at all (the binding answers with a transport
// error and logs it) or that the request was malformed (ErrBadRequest).
type Service interface {
	OpenConnect(ctx context.Context, caller qkd.SAEID, req OpenRequest) (OpenResponse, error)
	GetKey(ctx context.Context, caller qkd.SAEID, req GetKeyRequest) (GetKeyResponse, error)
	Close(ctx context.Context, caller qkd.SAEID, req CloseRequest) (CloseResponse, error)
}

// ErrBadRequest: a malformed request (bindings: CoAP 4.00, or the
// connection closed for the binary framing).
var ErrBadRequest = errors.New("etsi004: malformed request")

// AppID returns the SAE ID an application URI or bare ID names: the
// authority of scheme://authority[/...], or the string itself.
func AppID(s string) (qkd.SAEID, error) {
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
		if j := strings.IndexAny(s, "/?#"); j >= 0 {
			s = s[:j]
		}
		if j := strings.LastIndex(s, "@"); j >= 0 {
			s = s[j+1:] // user information (credentials) is not the application
		}
	}
	if s == "" || len(s) > 128 || strings.ContainsAny(s, "\x00 \t\r\n") {
		return "", fmt.Errorf("%w: application %q is not a URI or SAE ID", ErrBadRequest, clip(s))
	}
	return qkd.SAEID(s), nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
