package tcp004

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/qkms/qkms/internal/etsi004"
)

// ServiceType is the header's service type byte (signed in the reference).
type ServiceType int8

// Service types of the reference framing.
const (
	OpenConnectRequest  ServiceType = 0x02
	OpenConnectResponse ServiceType = 0x03
	GetKeyRequest       ServiceType = 0x04
	GetKeyResponse      ServiceType = 0x05
	CloseRequest        ServiceType = 0x08
	CloseResponse       ServiceType = 0x09
)

func (t ServiceType) String() string {
	switch t {
	case OpenConnectRequest:
		return "OPEN_CONNECT request"
	case OpenConnectResponse:
		return "OPEN_CONNECT response"
	case GetKeyRequest:
		return "GET_KEY request"
	case GetKeyResponse:
		return "GET_KEY response"
	case CloseRequest:
		return "CLOSE request"
	case CloseResponse:
		return "CLOSE response"
	}
	return fmt.Sprintf("service type %#02x", uint8(t))
}

// Sizes and limits of the framing.
const (
	HeaderLen  = 8       // version (3), service type (1), payload length (4)
	MaxPayload = 1 << 20 // larger payloads are refused before they are read

	VersionMajor, VersionMinor, VersionPatch = 1, 0, 1

	ksidLen      = 16
	qosLen       = 7*4 + etsi004.MaxMimeLen // 284
	openRespLen  = 4 + qosLen + ksidLen     // 304
	getKeyReqLen = ksidLen + 4 + 4          // 24
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("tcp004: malformed frame")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Header is a decoded frame header.
type Header struct {
	Major, Minor, Patch uint8
	Type                ServiceType
	Length              uint32 // payload length
}

// ParseHeader decodes a frame header. It refuses a major version other than
// 1 and a payload longer than MaxPayload; it does not judge the type.
func ParseHeader(b []byte) (Header, error) {
	if len(b) != HeaderLen {
		return Header{}, malformed("header is %d bytes, want %d", len(b), HeaderLen)
	}
	h := Header{Major: b[0], Minor: b[1], Patch: b[2], Type: ServiceType(b[3]),
		Length: binary.BigEndian.Uint32(b[4:])}
	if h.Major != VersionMajor {
		return h, malformed("version %d.%d.%d, want %d.x.x", h.Major, h.Minor, h.Patch, VersionMajor)
	}
	if h.Length > MaxPayload {
		return h, malformed("payload of %d bytes exceeds %d", h.Length, MaxPayload)
	}
	return h, nil
}

// AppendFrame appends a version 1.0.1 header of type t and payload to b.
func AppendFrame(b []byte, t ServiceType, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return b, fmt.Errorf("tcp004: %v payload of %d bytes exceeds %d", t, len(payload), MaxPayload)
	}
	b = append(b, VersionMajor, VersionMinor, VersionPatch, byte(t))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...), nil
}

// --- OPEN_CONNECT ---

// AppendOpenRequest appends an OPEN_CONNECT request payload: source and
// destination NUL-terminated, the QoS block, the KSID.
func AppendOpenRequest(b []byte, r etsi004.OpenRequest) ([]byte, error) {
	for _, s := range []string{r.Source, r.Destination} {
		if err := checkCString(s); err != nil {
			return b, err
		}
	}
	b = append(append(b, r.Source...), 0)
	b = append(append(b, r.Destination...), 0)
	b, err := appendQoS(b, r.QoS)
	if err != nil {
		return b, err
	}
	return append(b, r.KeyStreamID[:]...), nil
}

// DecodeOpenRequest decodes an OPEN_CONNECT request payload.
func DecodeOpenRequest(p []byte) (etsi004.OpenRequest, error) {
	var r etsi004.OpenRequest
	var err error
	if r.Source, p, err = cutCString(p, "source"); err != nil {
		return etsi004.OpenRequest{}, err
	}
	if r.Destination, p, err = cutCString(p, "destination"); err != nil {
		return etsi004.OpenRequest{}, err
	}
	if len(p) != qosLen+ksidLen {
		return etsi004.OpenRequest{}, malformed("OPEN_CONNECT request: %d bytes after the URIs, want %d", len(p), qosLen+ksidLen)
	}
	if r.QoS, err = decodeQoS(p[:qosLen]); err != nil {
		return etsi004.OpenRequest{}, err
	}
	copy(r.KeyStreamID[:], p[qosLen:])
	return r, nil
}

// AppendOpenResponse appends an OPEN_CONNECT response payload: status, QoS
// block, KSID — the full layout whatever the status.
func AppendOpenResponse(b []byte, r etsi004.OpenResponse) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, uint32(r.Status))
	b, err := appendQoS(b, r.QoS)
	if err != nil {
		return b, err
	}
	return append(b, r.KeyStreamID[:]...), nil
}

// DecodeOpenResponse decodes an OPEN_CONNECT response payload: the full
// layout, or (QUBIP's answer to a refused call) a non-zero status alone.
func DecodeOpenResponse(p []byte) (etsi004.OpenResponse, error) {
	switch len(p) {
	case 4:
		st := etsi004.Status(binary.BigEndian.Uint32(p))
		if st == etsi004.StatusSuccessful || st == etsi004.StatusPeerNotConnected {
			return etsi004.OpenResponse{}, malformed("OPEN_CONNECT response: status %d without QoS and key stream ID", st)
		}
		return etsi004.OpenResponse{Status: st}, nil
	case openRespLen:
		q, err := decodeQoS(p[4 : 4+qosLen])
		if err != nil {
			return etsi004.OpenResponse{}, err
		}
		r := etsi004.OpenResponse{Status: etsi004.Status(binary.BigEndian.Uint32(p)), QoS: q}
		copy(r.KeyStreamID[:], p[4+qosLen:])
		return r, nil
	}
	return etsi004.OpenResponse{}, malformed("OPEN_CONNECT response is %d bytes, want 4 or %d", len(p), openRespLen)
}

// --- GET_KEY ---

// AppendGetKeyRequest appends a GET_KEY request payload: KSID, index,
// metadata buffer size.
func AppendGetKeyRequest(b []byte, r etsi004.GetKeyRequest) []byte {
	b = append(b, r.KeyStreamID[:]...)
	b = binary.BigEndian.AppendUint32(b, r.Index)
	return binary.BigEndian.AppendUint32(b, r.MetadataSize)
}

// DecodeGetKeyRequest decodes a GET_KEY request payload.
func DecodeGetKeyRequest(p []byte) (etsi004.GetKeyRequest, error) {
	if len(p) != getKeyReqLen {
		return etsi004.GetKeyRequest{}, malformed("GET_KEY request is %d bytes, want %d", len(p), getKeyReqLen)
	}
	var r etsi004.GetKeyRequest
	copy(r.KeyStreamID[:], p)
	r.Index = binary.BigEndian.Uint32(p[16:])
	r.MetadataSize = binary.BigEndian.Uint32(p[20:])
	return r, nil
}

// AppendGetKeyResponse appends a GET_KEY response payload. Status 0: status,
// index, key length, key, metadata length, metadata. Status 8: status and
// the metadata size needed. Any other status: the status alone. The key
// bytes are copied into b; whoever owns b wipes it after use.
func AppendGetKeyResponse(b []byte, r etsi004.GetKeyResponse) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, uint32(r.Status))
	switch r.Status {
	case etsi004.StatusSuccessful:
		if len(r.Key)+len(r.Metadata) > MaxPayload-16 {
			return b, fmt.Errorf("tcp004: GET_KEY response of %d key and %d metadata bytes exceeds %d", len(r.Key), len(r.Metadata), MaxPayload)
		}
		// Grow once, before the key is copied, so that no stale copy of
		// it is left in an abandoned backing array.
		b = slices.Grow(b, 12+len(r.Key)+len(r.Metadata))
		b = binary.BigEndian.AppendUint32(b, r.Index)
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Key)))
		b = append(b, r.Key...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Metadata)))
		return append(b, r.Metadata...), nil
	case etsi004.StatusMetadataTooSmall:
		return binary.BigEndian.AppendUint32(b, r.MetadataSize), nil
	}
	return b, nil
}

// DecodeGetKeyResponse decodes a GET_KEY response payload (see
// AppendGetKeyResponse). Key and Metadata are fresh copies; on success
// MetadataSize is the length of Metadata. The caller wipes p.
func DecodeGetKeyResponse(p []byte) (etsi004.GetKeyResponse, error) {
	if len(p) < 4 {
		return etsi004.GetKeyResponse{}, malformed("GET_KEY response is %d bytes, want at least 4", len(p))
	}
	r := etsi004.GetKeyResponse{Status: etsi004.Status(binary.BigEndian.Uint32(p))}
	p = p[4:]
	switch r.Status {
	case etsi004.StatusSuccessful:
		return decodeGetKeyOK(r, p)
	case etsi004.StatusMetadataTooSmall:
		if len(p) != 4 {
			return etsi004.GetKeyResponse{}, malformed("GET_KEY response with status 8 is %d bytes, want 8", len(p)+4)
		}
		r.MetadataSize = binary.BigEndian.Uint32(p)
		return r, nil
	}
	if len(p) != 0 {
		return etsi004.GetKeyResponse{}, malformed("GET_KEY response with status %d has %d trailing bytes", r.Status, len(p))
	}
	return r, nil
}

func decodeGetKeyOK(r etsi004.GetKeyResponse, p []byte) (etsi004.GetKeyResponse, error) {
	if len(p) < 8 {
		return etsi004.GetKeyResponse{}, malformed("GET_KEY response: %d bytes for index and key length", len(p))
	}
	r.Index = binary.BigEndian.Uint32(p)
	key, p, err := cutSized(p[4:], "key")
	if err != nil {
		return etsi004.GetKeyResponse{}, err
	}
	meta, p, err := cutSized(p, "metadata")
	if err != nil {
		return etsi004.GetKeyResponse{}, err
	}
	if len(p) != 0 {
		return etsi004.GetKeyResponse{}, malformed("GET_KEY response has %d trailing bytes", len(p))
	}
	r.Key = append([]byte{}, key...) // never nil on success
	if len(meta) > 0 {
		r.Metadata = bytes.Clone(meta)
	}
	r.MetadataSize = uint32(len(meta))
	return r, nil
}

// --- CLOSE ---

// AppendCloseRequest appends a CLOSE request payload: the KSID.
func AppendCloseRequest(b []byte, r etsi004.CloseRequest) []byte {
	return append(b, r.KeyStreamID[:]...)
}

// DecodeCloseRequest decodes a CLOSE request payload.
func DecodeCloseRequest(p []byte) (etsi004.CloseRequest, error) {
	if len(p) != ksidLen {
		return etsi004.CloseRequest{}, malformed("CLOSE request is %d bytes, want %d", len(p), ksidLen)
	}
	var r etsi004.CloseRequest
	copy(r.KeyStreamID[:], p)
	return r, nil
}

// AppendCloseResponse appends a CLOSE response payload: the status.
func AppendCloseResponse(b []byte, r etsi004.CloseResponse) []byte {
	return binary.BigEndian.AppendUint32(b, uint32(r.Status))
}

// DecodeCloseResponse decodes a CLOSE response payload.
func DecodeCloseResponse(p []byte) (etsi004.CloseResponse, error) {
	if len(p) != 4 {
		return etsi004.CloseResponse{}, malformed("CLOSE response is %d bytes, want 4", len(p))
	}
	return etsi004.CloseResponse{Status: etsi004.Status(binary.BigEndian.Uint32(p))}, nil
}

// --- fields ---

func appendQoS(b []byte, q etsi004.QoS) ([]byte, error) {
	if len(q.MetadataMimetype) >= etsi004.MaxMimeLen {
		return b, fmt.Errorf("tcp004: metadata mimetype of %d bytes does not fit %d with its NUL", len(q.MetadataMimetype), etsi004.MaxMimeLen)
	}
	if err := checkCString(q.MetadataMimetype); err != nil {
		return b, err
	}
	for _, v := range [...]uint32{q.KeyChunkSize, q.MaxBps, q.MinBps, q.Jitter, q.Priority, q.Timeout, q.TTL} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	var mime [etsi004.MaxMimeLen]byte
	copy(mime[:], q.MetadataMimetype)
	return append(b, mime[:]...), nil
}

func decodeQoS(p []byte) (etsi004.QoS, error) {
	if len(p) != qosLen {
		return etsi004.QoS{}, malformed("QoS block is %d bytes, want %d", len(p), qosLen)
	}
	u := func(i int) uint32 { return binary.BigEndian.Uint32(p[4*i:]) }
	mime := p[28:]
	n := bytes.IndexByte(mime, 0)
	if n < 0 {
		return etsi004.QoS{}, malformed("metadata mimetype has no NUL in %d bytes", etsi004.MaxMimeLen)
	}
	return etsi004.QoS{KeyChunkSize: u(0), MaxBps: u(1), MinBps: u(2), Jitter: u(3), Priority: u(4),
		Timeout: u(5), TTL: u(6), MetadataMimetype: string(mime[:n])}, nil
}

// cutCString returns the NUL-terminated string at the start of p and the
// rest after its NUL.
func cutCString(p []byte, what string) (string, []byte, error) {
	n := bytes.IndexByte(p, 0)
	if n < 0 {
		return "", nil, malformed("%s URI is not NUL-terminated", what)
	}
	return string(p[:n]), p[n+1:], nil
}

// cutSized returns the uint32-length-prefixed field at the start of p and
// the rest after it.
func cutSized(p []byte, what string) ([]byte, []byte, error) {
	if len(p) < 4 {
		return nil, nil, malformed("%s length missing", what)
	}
	n := binary.BigEndian.Uint32(p)
	p = p[4:]
	if uint64(n) > uint64(len(p)) {
		return nil, nil, malformed("%s length %d exceeds the %d bytes left", what, n, len(p))
	}
	return p[:n], p[n:], nil
}

func checkCString(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("tcp004: %q contains a NUL byte", clip(s))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// beginFrame returns a header of type t with its length still zero, to
// which a payload is appended; finishFrame then sets the length.
func beginFrame(t ServiceType) []byte {
	b := make([]byte, HeaderLen, 64)
	b[0], b[1], b[2], b[3] = VersionMajor, VersionMinor, VersionPatch, byte(t)
	return b
}

func finishFrame(b []byte) error {
	n := len(b) - HeaderLen
	if n < 0 || n > MaxPayload {
		return fmt.Errorf("tcp004: payload of %d bytes exceeds %d", n, MaxPayload)
	}
	binary.BigEndian.PutUint32(b[4:HeaderLen], uint32(n))
	return nil
}
