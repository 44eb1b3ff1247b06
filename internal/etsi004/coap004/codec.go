package coap004

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/qkms/qkms/internal/etsi004"
)

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

// Size limits. A request larger than MaxRequestSize is refused (4.13);
// a response larger than MaxResponseSize is refused by the client.
const (
	MaxRequestSize  = 4096
	MaxResponseSize = 1 << 20
	// MaxURILen bounds source and destination, in bytes.
	MaxURILen = 1024
	// maxJSONDepth bounds the nesting of a JSON body (metadata objects of
	// responses included).
	maxJSONDepth = 16
)

// ErrMalformedResponse: a response body the client cannot decode.
var ErrMalformedResponse = errors.New("coap004: malformed response")

// The wire forms. Requests reject unknown fields; responses ignore them.

type openRequest struct {
	Source      string      `json:"source" cbor:"source"`
	Destination string      `json:"destination" cbor:"destination"`
	QoS         etsi004.QoS `json:"qos" cbor:"qos"`
	KeyStreamID wireKSID    `json:"key_stream_id" cbor:"key_stream_id"`
}

type openResponse struct {
	Status      etsi004.Status `json:"status" cbor:"status"`
	QoS         etsi004.QoS    `json:"qos" cbor:"qos"`
	KeyStreamID wireKSID       `json:"key_stream_id" cbor:"key_stream_id"`
}

type getKeyRequest struct {
	KeyStreamID  wireKSID `json:"key_stream_id" cbor:"key_stream_id"`
	Index        uint32   `json:"index" cbor:"index"`
	MetadataSize uint32   `json:"metadata_size" cbor:"metadata_size"`
}

type getKeyResponse struct {
	Status       etsi004.Status `json:"status" cbor:"status"`
	Index        uint32         `json:"index" cbor:"index"`
	KeyBuffer    []byte         `json:"key_buffer,omitempty" cbor:"key_buffer,omitempty"`
	Metadata     wireMetadata   `json:"metadata,omitempty" cbor:"metadata,omitempty"`
	MetadataSize uint32         `json:"metadata_size,omitempty" cbor:"metadata_size,omitempty"`
}

type closeRequest struct {
	KeyStreamID wireKSID `json:"key_stream_id" cbor:"key_stream_id"`
}

type closeResponse struct {
	Status etsi004.Status `json:"status" cbor:"status"`
}

var (
	encMode    = mustEncMode()
	bufEncMode = mustBufEncMode()
	reqDecMode = mustDecMode(true)
	resDecMode = mustDecMode(false)
)

func mustEncMode() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}

func mustBufEncMode() cbor.UserBufferEncMode {
	em, err := cbor.CoreDetEncOptions().UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	return em
}

func mustDecMode(strict bool) cbor.DecMode {
	opts := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   4,
		MaxArrayElements:  16,
		MaxMapPairs:       16,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	}
	if strict {
		opts.ExtraReturnErrors = cbor.ExtraDecErrorUnknownField
	}
	dm, err := opts.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}

// marshal encodes v in f.
func (f Format) marshal(v any) ([]byte, error) {
	if f == JSON {
		return json.Marshal(v)
	}
	return encMode.Marshal(v)
}

// unmarshalRequest decodes a request body strictly: unknown or duplicate
// fields, JSON names other than lower-case ASCII, trailing data, wrong
// types and out-of-range numbers are errors wrapping etsi004.ErrBadRequest.
func (f Format) unmarshalRequest(p []byte, v any) error {
	if len(p) > MaxRequestSize {
		return fmt.Errorf("%w: body of %d bytes exceeds %d", etsi004.ErrBadRequest, len(p), MaxRequestSize)
	}
	var err error
	if f == JSON {
		err = unmarshalJSON(p, v, true)
	} else {
		err = reqDecMode.Unmarshal(p, v)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", etsi004.ErrBadRequest, err)
	}
	return nil
}

// unmarshalResponse decodes a response body: unknown fields are ignored,
// anything else malformed is an error wrapping ErrMalformedResponse.
func (f Format) unmarshalResponse(p []byte, v any) error {
	if len(p) > MaxResponseSize {
		return fmt.Errorf("%w: body of %d bytes exceeds %d", ErrMalformedResponse, len(p), MaxResponseSize)
	}
	var err error
	if f == JSON {
		err = unmarshalJSON(p, v, false)
	} else {
		err = resDecMode.Unmarshal(p, v)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedResponse, err)
	}
	return nil
}

// unmarshalJSON decodes one JSON value into v after checkJSON.
func unmarshalJSON(p []byte, v any, strict bool) error {
	if err := checkJSON(p, strict); err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(p))
	if strict {
		d.DisallowUnknownFields()
	}
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// checkJSON enforces what encoding/json does not: valid UTF-8, bounded
// depth, no duplicate object names and, for requests (strict), names made
// of lower-case ASCII letters and '_' only (encoding/json matches names
// case-insensitively, and "Key_Stream_ID" must not pass for the field).
func checkJSON(p []byte, strict bool) error {
	if !utf8.Valid(p) {
		return errors.New("invalid UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	type frame struct {
		object bool
		names  map[string]bool
		key    bool // the next token of an object is a name
	}
	var stack []frame
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].key {
			if name, ok := tok.(string); ok {
				top := &stack[n-1]
				if top.names[name] {
					return fmt.Errorf("duplicate name %q", clip(name))
				}
				if strict && !snakeName(name) {
					return fmt.Errorf("unknown field %q", clip(name))
				}
				top.names[name] = true
				top.key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) > 0 {
				stack[len(stack)-1].key = stack[len(stack)-1].object
			}
			if len(stack) >= maxJSONDepth {
				return errors.New("JSON nested too deeply")
			}
			obj := tok == json.Delim('{')
			stack = append(stack, frame{object: obj, names: map[string]bool{}, key: obj})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].key = true
		}
	}
}

func snakeName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
