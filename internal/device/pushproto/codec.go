package pushproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/qkms/qkms/internal/secret"
)

// ErrMalformed is returned for a body that does not decode or breaks a rule
// of the profile.
var ErrMalformed = errors.New("pushproto: malformed message")

// Format is a body encoding of the profile.
type Format uint8

// The two encodings: CBOR (CoAP Content-Format 60) and JSON (50).
const (
	CBOR Format = iota
	JSON
)

func (f Format) String() string {
	if f == JSON {
		return "json"
	}
	return "cbor"
}

var (
	encMode = mustEncMode()
	decMode = mustDecMode()
)

func mustEncMode() cbor.UserBufferEncMode {
	em, err := cbor.CoreDetEncOptions().UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	return em
}

func mustDecMode() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  6,
		MaxArrayElements: 64,
		MaxMapPairs:      32,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}

// Marshal encodes a control body (OpenConnect, OpenConnectReply, Close,
// StatusReply or a simulator control body) in f.
func (f Format) Marshal(v any) ([]byte, error) {
	if f == JSON {
		return json.Marshal(v)
	}
	return encMode.Marshal(v)
}

// Unmarshal decodes a control body of at most MaxMessageSize bytes. Unknown
// fields are ignored; duplicate keys, wrong types and trailing data are
// errors (ErrMalformed).
func (f Format) Unmarshal(p []byte, v any) error {
	if len(p) > MaxMessageSize {
		return fmt.Errorf("%w: %d-byte body", ErrMalformed, len(p))
	}
	var err error
	if f == JSON {
		err = json.Unmarshal(p, v)
	} else {
		err = decMode.Unmarshal(p, v)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler (the JSON form: a UUID string).
func (k KeyStreamID) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; "" is NULL.
func (k *KeyStreamID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*k = KeyStreamID{}
		return nil
	}
	v, err := ParseKeyStreamID(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// MarshalCBOR implements cbor.Marshaler: a 16-byte byte string.
func (k KeyStreamID) MarshalCBOR() ([]byte, error) {
	return append([]byte{0x50}, k[:]...), nil
}

// UnmarshalCBOR implements cbor.Unmarshaler. It accepts a 16-byte byte
// string, an empty byte string or null/undefined (NULL), and for hand-written
// requests also the UUID text form.
func (k *KeyStreamID) UnmarshalCBOR(data []byte) error {
	if len(data) == 0 {
		return ErrBadKeyStreamID
	}
	switch data[0] >> 5 {
	case 2: // byte string
		var b []byte
		if err := decMode.Unmarshal(data, &b); err != nil {
			return err
		}
		switch len(b) {
		case 0:
			*k = KeyStreamID{}
		case len(k):
			copy(k[:], b)
		default:
			return ErrBadKeyStreamID
		}
		return nil
	case 3: // text string
		var s string
		if err := decMode.Unmarshal(data, &s); err != nil {
			return err
		}
		return k.UnmarshalText([]byte(s))
	}
	if data[0] == 0xf6 || data[0] == 0xf7 { // null, undefined
		*k = KeyStreamID{}
		return nil
	}
	return ErrBadKeyStreamID
}

// wireNotification is the CBOR map of a GET_KEY answer.
type wireNotification struct {
	Status    Status        `json:"status"`
	Index     uint32        `json:"index"`
	KeyBuffer []byte        `json:"key_buffer,omitempty"`
	Metadata  *wireMetadata `json:"metadata,omitempty"`
}

type wireMetadata struct {
	KeyStreamID KeyStreamID `json:"key_stream_id"`
	Size        uint32      `json:"size"` // bytes in key_buffer
	AgeMS       uint64      `json:"age_ms"`
}

// NotificationOverhead bounds the bytes a notification adds to its key bytes.
const NotificationOverhead = 112

// EncodeNotification encodes n as CBOR. The result holds a copy of the key
// bytes: the caller owns it and wipes it once sent. A notification with a
// key gets the metadata map; one without (any status but 0) does not.
func EncodeNotification(n Notification) ([]byte, error) {
	w := wireNotification{Status: n.Status, Index: n.Index}
	if n.Status == StatusSuccess {
		if n.Key.Len() == 0 {
			return nil, fmt.Errorf("%w: status 0 without key", ErrMalformed)
		}
		w.KeyBuffer = n.Key.Expose()
		w.Metadata = &wireMetadata{KeyStreamID: n.KeyStreamID, Size: uint32(n.Key.Len()), AgeMS: n.AgeMS}
	}
	// Encode into one buffer big enough from the start: no pooled or
	// regrown buffer is left holding key bytes.
	var buf bytes.Buffer
	buf.Grow(n.Key.Len() + NotificationOverhead)
	if err := encMode.MarshalToBuffer(w, &buf); err != nil {
		secret.Wipe(buf.Bytes())
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeNotification decodes a GET_KEY answer. The caller owns (and wipes)
// the returned Key and still owns p. Status 0 requires a non-empty key whose
// length matches metadata.size; any other status must carry no key.
func DecodeNotification(p []byte) (Notification, error) {
	var w wireNotification
	if err := decMode.Unmarshal(p, &w); err != nil {
		secret.Wipe(w.KeyBuffer)
		return Notification{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	n := Notification{Status: w.Status, Index: w.Index}
	if w.Status != StatusSuccess {
		if len(w.KeyBuffer) != 0 {
			secret.Wipe(w.KeyBuffer)
			return Notification{}, fmt.Errorf("%w: key with status %d", ErrMalformed, w.Status)
		}
		if w.Metadata != nil {
			n.KeyStreamID = w.Metadata.KeyStreamID
		}
		return n, nil
	}
	if len(w.KeyBuffer) == 0 || w.Metadata == nil || int(w.Metadata.Size) != len(w.KeyBuffer) {
		secret.Wipe(w.KeyBuffer)
		return Notification{}, fmt.Errorf("%w: status 0 needs key_buffer and a matching metadata.size", ErrMalformed)
	}
	n.Key = secret.Adopt(w.KeyBuffer)
	n.KeyStreamID = w.Metadata.KeyStreamID
	n.AgeMS = w.Metadata.AgeMS
	return n, nil
}
