package coap004

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/secret"
)

// Request decoders (server side). Every error wraps etsi004.ErrBadRequest.

// DecodeOpenRequest decodes an OPEN_CONNECT request body. source and
// destination are required (a bare SAE ID or a URI naming one); qos and
// key_stream_id may be absent (zero QoS; NULL key stream ID).
func DecodeOpenRequest(f Format, p []byte) (etsi004.OpenRequest, error) {
	var w openRequest
	if err := f.unmarshalRequest(p, &w); err != nil {
		return etsi004.OpenRequest{}, err
	}
	for _, a := range []struct{ name, v string }{{"source", w.Source}, {"destination", w.Destination}} {
		if len(a.v) > MaxURILen {
			return etsi004.OpenRequest{}, fmt.Errorf("%w: %s longer than %d bytes", etsi004.ErrBadRequest, a.name, MaxURILen)
		}
		if _, err := etsi004.AppID(a.v); err != nil {
			return etsi004.OpenRequest{}, fmt.Errorf("%w: %s is not a URI or SAE ID", etsi004.ErrBadRequest, a.name)
		}
	}
	if m := w.QoS.MetadataMimetype; len(m) >= etsi004.MaxMimeLen || strings.ContainsRune(m, 0) {
		return etsi004.OpenRequest{}, fmt.Errorf("%w: qos.metadata_mimetype longer than %d bytes or with NUL", etsi004.ErrBadRequest, etsi004.MaxMimeLen-1)
	}
	return etsi004.OpenRequest{Source: w.Source, Destination: w.Destination, QoS: w.QoS, KeyStreamID: etsi004.KSID(w.KeyStreamID)}, nil
}

// DecodeGetKeyRequest decodes a GET_KEY request body; key_stream_id is
// required, index and metadata_size default to 0.
func DecodeGetKeyRequest(f Format, p []byte) (etsi004.GetKeyRequest, error) {
	var w getKeyRequest
	if err := f.unmarshalRequest(p, &w); err != nil {
		return etsi004.GetKeyRequest{}, err
	}
	if etsi004.KSID(w.KeyStreamID).IsNull() {
		return etsi004.GetKeyRequest{}, fmt.Errorf("%w: key_stream_id is required", etsi004.ErrBadRequest)
	}
	return etsi004.GetKeyRequest{KeyStreamID: etsi004.KSID(w.KeyStreamID), Index: w.Index, MetadataSize: w.MetadataSize}, nil
}

// DecodeCloseRequest decodes a CLOSE request body; key_stream_id is
// required.
func DecodeCloseRequest(f Format, p []byte) (etsi004.CloseRequest, error) {
	var w closeRequest
	if err := f.unmarshalRequest(p, &w); err != nil {
		return etsi004.CloseRequest{}, err
	}
	if etsi004.KSID(w.KeyStreamID).IsNull() {
		return etsi004.CloseRequest{}, fmt.Errorf("%w: key_stream_id is required", etsi004.ErrBadRequest)
	}
	return etsi004.CloseRequest{KeyStreamID: etsi004.KSID(w.KeyStreamID)}, nil
}

// Request encoders (client side).

// EncodeOpenRequest encodes an OPEN_CONNECT request; a NULL key stream ID
// is sent as null.
func EncodeOpenRequest(f Format, r etsi004.OpenRequest) ([]byte, error) {
	return f.marshal(openRequest{Source: r.Source, Destination: r.Destination, QoS: r.QoS, KeyStreamID: wireKSID(r.KeyStreamID)})
}

// EncodeGetKeyRequest encodes a GET_KEY request.
func EncodeGetKeyRequest(f Format, r etsi004.GetKeyRequest) ([]byte, error) {
	return f.marshal(getKeyRequest{KeyStreamID: wireKSID(r.KeyStreamID), Index: r.Index, MetadataSize: r.MetadataSize})
}

// EncodeCloseRequest encodes a CLOSE request.
func EncodeCloseRequest(f Format, r etsi004.CloseRequest) ([]byte, error) {
	return f.marshal(closeRequest{KeyStreamID: wireKSID(r.KeyStreamID)})
}

// Response encoders (server side).

// EncodeOpenResponse encodes an OPEN_CONNECT response.
func EncodeOpenResponse(f Format, r etsi004.OpenResponse) ([]byte, error) {
	return f.marshal(openResponse{Status: r.Status, QoS: r.QoS, KeyStreamID: wireKSID(r.KeyStreamID)})
}

// EncodeCloseResponse encodes a CLOSE response.
func EncodeCloseResponse(f Format, r etsi004.CloseResponse) ([]byte, error) {
	return f.marshal(closeResponse(r))
}

// EncodeGetKeyResponse encodes a GET_KEY response. key_buffer and
// metadata are sent with status 0 only, metadata_size with status 8 only.
// The result holds a copy of the key: the caller owns and wipes it (and
// still owns r.Key). The encoding goes into one buffer sized up front, so
// no pooled or regrown buffer keeps key bytes.
func EncodeGetKeyResponse(f Format, r etsi004.GetKeyResponse) ([]byte, error) {
	w := getKeyResponse{Status: r.Status, Index: r.Index}
	switch r.Status {
	case etsi004.StatusSuccessful:
		w.KeyBuffer, w.Metadata = r.Key, r.Metadata
	case etsi004.StatusMetadataTooSmall:
		w.MetadataSize = r.MetadataSize
	}
	var buf bytes.Buffer
	buf.Grow(2*len(w.KeyBuffer) + 2*len(w.Metadata) + 128)
	if f == JSON {
		return encodeGetKeyJSON(&buf, w), nil
	}
	if err := bufEncMode.MarshalToBuffer(w, &buf); err != nil {
		secret.Wipe(buf.Bytes())
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodeGetKeyJSON writes w as json.Marshal would, but base64-encodes the
// key straight into buf (encoding/json would go through a pooled buffer).
func encodeGetKeyJSON(buf *bytes.Buffer, w getKeyResponse) []byte {
	buf.WriteString(`{"status":`)
	buf.WriteString(strconv.FormatUint(uint64(w.Status), 10))
	buf.WriteString(`,"index":`)
	buf.WriteString(strconv.FormatUint(uint64(w.Index), 10))
	if len(w.KeyBuffer) > 0 {
		buf.WriteString(`,"key_buffer":"`)
		enc := base64.NewEncoder(base64.StdEncoding, buf)
		_, _ = enc.Write(w.KeyBuffer)
		_ = enc.Close()
		buf.WriteByte('"')
	}
	if len(w.Metadata) > 0 {
		m, _ := w.Metadata.MarshalJSON() // cannot fail: an object or a string
		buf.WriteString(`,"metadata":`)
		buf.Write(m)
	}
	if w.MetadataSize != 0 {
		buf.WriteString(`,"metadata_size":`)
		buf.WriteString(strconv.FormatUint(uint64(w.MetadataSize), 10))
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// Response decoders (client side). Every error wraps ErrMalformedResponse.

// DecodeOpenResponse decodes an OPEN_CONNECT response.
func DecodeOpenResponse(f Format, p []byte) (etsi004.OpenResponse, error) {
	var w openResponse
	if err := f.unmarshalResponse(p, &w); err != nil {
		return etsi004.OpenResponse{}, err
	}
	return etsi004.OpenResponse{Status: w.Status, QoS: w.QoS, KeyStreamID: etsi004.KSID(w.KeyStreamID)}, nil
}

// DecodeCloseResponse decodes a CLOSE response.
func DecodeCloseResponse(f Format, p []byte) (etsi004.CloseResponse, error) {
	var w closeResponse
	if err := f.unmarshalResponse(p, &w); err != nil {
		return etsi004.CloseResponse{}, err
	}
	return etsi004.CloseResponse(w), nil
}

// DecodeGetKeyResponse decodes a GET_KEY response. The returned Key is the
// caller's (to wipe); p stays the caller's too. Status 0 requires a key,
// any other status forbids one.
func DecodeGetKeyResponse(f Format, p []byte) (etsi004.GetKeyResponse, error) {
	var w getKeyResponse
	err := f.unmarshalResponse(p, &w)
	if err == nil {
		err = checkGetKeyResponse(w)
	}
	if err != nil {
		secret.Wipe(w.KeyBuffer)
		return etsi004.GetKeyResponse{}, err
	}
	return etsi004.GetKeyResponse{Status: w.Status, Index: w.Index, Key: w.KeyBuffer, Metadata: w.Metadata, MetadataSize: w.MetadataSize}, nil
}

func checkGetKeyResponse(w getKeyResponse) error {
	switch {
	case w.Status == etsi004.StatusSuccessful && len(w.KeyBuffer) == 0:
		return fmt.Errorf("%w: status 0 without key_buffer", ErrMalformedResponse)
	case w.Status != etsi004.StatusSuccessful && (len(w.KeyBuffer) != 0 || len(w.Metadata) != 0):
		return fmt.Errorf("%w: key_buffer or metadata with status %d", ErrMalformedResponse, w.Status)
	}
	return nil
}
