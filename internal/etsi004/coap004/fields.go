package coap004

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"

	"github.com/fxamacker/cbor/v2"

	"github.com/qkms/qkms/internal/etsi004"
)

// wireKSID is a key stream ID on the wire: the canonical UUID text in both
// encodings, null for NULL. CBOR decoding also accepts a 16-byte byte
// string (RFC 4122 order), the form profile (a) sends.
type wireKSID etsi004.KSID

var errKSID = errors.New("key_stream_id must be a UUID string or null")

// MarshalJSON implements json.Marshaler.
func (k wireKSID) MarshalJSON() ([]byte, error) {
	if etsi004.KSID(k).IsNull() {
		return []byte("null"), nil
	}
	return json.Marshal(etsi004.KSID(k).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (k *wireKSID) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*k = wireKSID{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errKSID
	}
	return k.parse(s)
}

func (k *wireKSID) parse(s string) error {
	id, err := etsi004.ParseKSID(s)
	if err != nil {
		return errKSID
	}
	*k = wireKSID(id)
	return nil
}

// MarshalCBOR implements cbor.Marshaler.
func (k wireKSID) MarshalCBOR() ([]byte, error) {
	if etsi004.KSID(k).IsNull() {
		return []byte{0xf6}, nil
	}
	return encMode.Marshal(etsi004.KSID(k).String())
}

// UnmarshalCBOR implements cbor.Unmarshaler.
func (k *wireKSID) UnmarshalCBOR(data []byte) error {
	if len(data) == 0 {
		return errKSID
	}
	switch data[0] >> 5 {
	case 3: // text string
		var s string
		if err := resDecMode.Unmarshal(data, &s); err != nil {
			return errKSID
		}
		return k.parse(s)
	case 2: // byte string
		var b []byte
		if err := resDecMode.Unmarshal(data, &b); err != nil || len(b) != len(k) {
			return errKSID
		}
		copy(k[:], b)
		return nil
	}
	if data[0] == 0xf6 || data[0] == 0xf7 { // null, undefined
		*k = wireKSID{}
		return nil
	}
	return errKSID
}

var _ cbor.Unmarshaler = (*wireKSID)(nil)

// wireMetadata is GET_KEY's metadata. CBOR: a byte string. JSON: the
// metadata itself when it is a compact JSON object (the form of
// application/json metadata, so a reader sees {"age":…,"hops":…}), else
// its bytes in standard base64. Either way the bytes round-trip exactly.
type wireMetadata []byte

// MarshalJSON implements json.Marshaler.
func (m wireMetadata) MarshalJSON() ([]byte, error) {
	if embeddable(m) {
		return bytes.Clone(m), nil
	}
	return json.Marshal(base64.StdEncoding.EncodeToString(m))
}

// embeddable reports whether m is a JSON object in compact form.
func embeddable(m []byte) bool {
	if len(m) < 2 || m[0] != '{' || !json.Valid(m) {
		return false
	}
	var c bytes.Buffer
	return json.Compact(&c, m) == nil && bytes.Equal(c.Bytes(), m)
}

// UnmarshalJSON implements json.Unmarshaler.
func (m *wireMetadata) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*m = nil
	case len(b) > 0 && b[0] == '{':
		*m = bytes.Clone(b)
	default:
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return errors.New("metadata must be an object or a base64 string")
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return errors.New("metadata is not standard base64")
		}
		*m = d
	}
	return nil
}
