package coap004

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/etsi004"
)

var (
	testKSID = etsi004.KSID{0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44, 0x00, 0x00}
	testQoS  = etsi004.QoS{KeyChunkSize: 32, Timeout: 1000, MetadataMimetype: etsi004.MimeJSON}
	testMeta = []byte(`{"age":5,"hops":0}`)
)

const (
	// qos {"ttl": 0, "jitter": 0, "max_bps": 0, "min_bps": 0, "timeout": 1000, "priority": 0,
	//      "key_chunk_size": 32, "metadata_mimetype": "application/json"}
	qosHex  = "a86374746c00666a697474657200676d61785f62707300676d696e5f627073006774696d656f75741903e8687072696f72697479006e6b65795f6368756e6b5f73697a651820716d657461646174615f6d696d6574797065706170706c69636174696f6e2f6a736f6e"
	ksidHex = "782435353065383430302d653239622d343164342d613731362d343436363535343430303030" // "550e8400-e29b-41d4-a716-446655440000"
	qosJSON = `{"key_chunk_size":32,"max_bps":0,"min_bps":0,"jitter":0,"priority":0,"timeout":1000,"ttl":0,"metadata_mimetype":"application/json"}`
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encoded returns p as text (JSON) or hex (CBOR) for comparisons.
func encoded(f Format, p []byte) string {
	if f == JSON {
		return string(p)
	}
	return hex.EncodeToString(p)
}

// TestEncode checks every encoder against hand-written encodings (CBOR in
// RFC 8949 deterministic order: shorter keys first).
func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		enc  func(Format) ([]byte, error)
		want string
	}{
		{"open request", JSON, func(f Format) ([]byte, error) {
			return EncodeOpenRequest(f, etsi004.OpenRequest{Source: "sae://A", Destination: "sae://B", QoS: testQoS})
		}, `{"source":"sae://A","destination":"sae://B","qos":` + qosJSON + `,"key_stream_id":null}`},
		// {"qos": …, "source": "sae://A", "destination": "sae://B", "key_stream_id": null}
		{"open request", CBOR, func(f Format) ([]byte, error) {
			return EncodeOpenRequest(f, etsi004.OpenRequest{Source: "sae://A", Destination: "sae://B", QoS: testQoS})
		}, "a463716f73" + qosHex + "66736f75726365677361653a2f2f416b64657374696e6174696f6e677361653a2f2f426d6b65795f73747265616d5f6964f6"},
		{"open response", JSON, func(f Format) ([]byte, error) {
			return EncodeOpenResponse(f, etsi004.OpenResponse{Status: etsi004.StatusPeerNotConnected, QoS: testQoS, KeyStreamID: testKSID})
		}, `{"status":1,"qos":` + qosJSON + `,"key_stream_id":"550e8400-e29b-41d4-a716-446655440000"}`},
		// {"qos": …, "status": 1, "key_stream_id": "550e8400-…"}
		{"open response", CBOR, func(f Format) ([]byte, error) {
			return EncodeOpenResponse(f, etsi004.OpenResponse{Status: etsi004.StatusPeerNotConnected, QoS: testQoS, KeyStreamID: testKSID})
		}, "a363716f73" + qosHex + "66737461747573016d6b65795f73747265616d5f6964" + ksidHex},
		{"get_key request", JSON, func(f Format) ([]byte, error) {
			return EncodeGetKeyRequest(f, etsi004.GetKeyRequest{KeyStreamID: testKSID, Index: 7, MetadataSize: 64})
		}, `{"key_stream_id":"550e8400-e29b-41d4-a716-446655440000","index":7,"metadata_size":64}`},
		// {"index": 7, "key_stream_id": "550e8400-…", "metadata_size": 64}
		{"get_key request", CBOR, func(f Format) ([]byte, error) {
			return EncodeGetKeyRequest(f, etsi004.GetKeyRequest{KeyStreamID: testKSID, Index: 7, MetadataSize: 64})
		}, "a365696e646578076d6b65795f73747265616d5f6964" + ksidHex + "6d6d657461646174615f73697a651840"},
		{"get_key key", JSON, func(f Format) ([]byte, error) {
			return EncodeGetKeyResponse(f, etsi004.GetKeyResponse{Index: 7, Key: []byte{0, 1, 2, 3}, Metadata: testMeta})
		}, `{"status":0,"index":7,"key_buffer":"AAECAw==","metadata":{"age":5,"hops":0}}`},
		{"get_key key, non-JSON metadata", JSON, func(f Format) ([]byte, error) {
			return EncodeGetKeyResponse(f, etsi004.GetKeyResponse{Index: 7, Key: []byte{0, 1, 2, 3}, Metadata: []byte{0xa0}})
		}, `{"status":0,"index":7,"key_buffer":"AAECAw==","metadata":"oA=="}`},
		{"get_key key, JSON metadata not compact", JSON, func(f Format) ([]byte, error) {
			return EncodeGetKeyResponse(f, etsi004.GetKeyResponse{Index: 7, Key: []byte{0, 1, 2, 3}, Metadata: []byte(`{"a": 1}`)})
		}, `{"status":0,"index":7,"key_buffer":"AAECAw==","metadata":"eyJhIjogMX0="}`},
		// {"index": 7, "status": 0, "metadata": h'7b22…7d', "key_buffer": h'00010203'}
		{"get_key key", CBOR, func(f Format) ([]byte, error) {
			return EncodeGetKeyResponse(f, etsi004.GetKeyResponse{Index: 7, Key: []byte{0, 1, 2, 3}, Metadata: testMeta})
		}, "a465696e646578076673746174757300686d65746164617461527b22616765223a352c22686f7073223a307d6a6b65795f6275666665724400010203"},
		{"get_key status 8", JSON, func(f Format) ([]byte, error) {
			return EncodeGetKeyResponse(f, etsi004.GetKeyResponse{Status: etsi004.StatusMetadataTooSmall, Index: 7, MetadataSize: 18})
		}, `{"status":8,"index":7,"metadata_size":18}`},
		// {"index": 7, "status": 8, "metadata_size": 18}
		{"get_key status 8", CBOR, func(f Format) ([]byte, error) {
			return EncodeGetKeyResponse(f, etsi004.GetKeyResponse{Status: etsi004.StatusMetadataTooSmall, Index: 7, MetadataSize: 18})
		}, "a365696e6465780766737461747573086d6d657461646174615f73697a6512"},
		{"get_key status 2 drops a stray key", JSON, func(f Format) ([]byte, error) {
			return EncodeGetKeyResponse(f, etsi004.GetKeyResponse{Status: etsi004.StatusInsufficientKey, Index: 7, Key: []byte{1}})
		}, `{"status":2,"index":7}`},
		{"close request", JSON, func(f Format) ([]byte, error) {
			return EncodeCloseRequest(f, etsi004.CloseRequest{KeyStreamID: testKSID})
		}, `{"key_stream_id":"550e8400-e29b-41d4-a716-446655440000"}`},
		{"close request", CBOR, func(f Format) ([]byte, error) {
			return EncodeCloseRequest(f, etsi004.CloseRequest{KeyStreamID: testKSID})
		}, "a16d6b65795f73747265616d5f6964" + ksidHex},
		{"close response", JSON, func(f Format) ([]byte, error) { return EncodeCloseResponse(f, etsi004.CloseResponse{}) }, `{"status":0}`},
		{"close response", CBOR, func(f Format) ([]byte, error) { return EncodeCloseResponse(f, etsi004.CloseResponse{}) }, "a16673746174757300"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.f.String(), func(t *testing.T) {
			p, err := tt.enc(tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := encoded(tt.f, p); got != tt.want {
				t.Errorf("encoding = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestDecodeRequests decodes hand-written requests, including the
// tolerated variations (absent fields, a KSID as a CBOR byte string).
func TestDecodeRequests(t *testing.T) {
	open := etsi004.OpenRequest{Source: "sae://A", Destination: "sae://B", QoS: testQoS}
	t.Run("open json", func(t *testing.T) {
		got, err := DecodeOpenRequest(JSON, []byte(`{"source":"sae://A","destination":"sae://B","qos":`+qosJSON+`,"key_stream_id":null}`))
		if err != nil || !cmp.Equal(got, open) {
			t.Errorf("DecodeOpenRequest = %+v, %v, want %+v", got, err, open)
		}
	})
	t.Run("open json minimal", func(t *testing.T) {
		want := etsi004.OpenRequest{Source: "SAE_A", Destination: "SAE_B", KeyStreamID: testKSID}
		got, err := DecodeOpenRequest(JSON, []byte(`{"source":"SAE_A","destination":"SAE_B","key_stream_id":"550E8400-E29B-41D4-A716-446655440000"}`))
		if err != nil || !cmp.Equal(got, want) {
			t.Errorf("DecodeOpenRequest = %+v, %v, want %+v", got, err, want)
		}
	})
	t.Run("open cbor", func(t *testing.T) {
		p := unhex(t, "a463716f73"+qosHex+"66736f75726365677361653a2f2f416b64657374696e6174696f6e677361653a2f2f426d6b65795f73747265616d5f6964f6")
		got, err := DecodeOpenRequest(CBOR, p)
		if err != nil || !cmp.Equal(got, open) {
			t.Errorf("DecodeOpenRequest = %+v, %v, want %+v", got, err, open)
		}
	})
	t.Run("get_key cbor, KSID as bytes", func(t *testing.T) {
		// {"key_stream_id": h'550e8400e29b41d4a716446655440000', "index": 7}
		p := unhex(t, "a26d6b65795f73747265616d5f696450550e8400e29b41d4a71644665544000065696e64657807")
		want := etsi004.GetKeyRequest{KeyStreamID: testKSID, Index: 7}
		got, err := DecodeGetKeyRequest(CBOR, p)
		if err != nil || got != want {
			t.Errorf("DecodeGetKeyRequest = %+v, %v, want %+v", got, err, want)
		}
	})
	t.Run("close json", func(t *testing.T) {
		got, err := DecodeCloseRequest(JSON, []byte(`{"key_stream_id":"550e8400-e29b-41d4-a716-446655440000"}`))
		if err != nil || got.KeyStreamID != testKSID {
			t.Errorf("DecodeCloseRequest = %+v, %v", got, err)
		}
	})
}

// TestDecodeMalformed: every malformed request is an ErrBadRequest.
func TestDecodeMalformed(t *testing.T) {
	const ks = `"key_stream_id":"550e8400-e29b-41d4-a716-446655440000"`
	jsonCases := []struct {
		name, call, body string
	}{
		{"empty", "open", ``},
		{"not an object", "open", `[]`},
		{"unknown field", "open", `{"source":"A","destination":"B","key_streamid":null}`},
		{"name in other case", "open", `{"Source":"A","destination":"B"}`},
		{"duplicate field", "open", `{"source":"A","source":"C","destination":"B"}`},
		{"unknown qos field", "open", `{"source":"A","destination":"B","qos":{"rate":1}}`},
		{"trailing data", "open", `{"source":"A","destination":"B"} {}`},
		{"missing source", "open", `{"destination":"B"}`},
		{"source with space", "open", `{"source":"A B","destination":"B"}`},
		{"source too long", "open", `{"source":"` + strings.Repeat("a", MaxURILen+1) + `","destination":"B"}`},
		{"mimetype too long", "open", `{"source":"A","destination":"B","qos":{"metadata_mimetype":"` + strings.Repeat("a", etsi004.MaxMimeLen) + `"}}`},
		{"ksid not a uuid", "open", `{"source":"A","destination":"B","key_stream_id":"xyz"}`},
		{"ksid a number", "open", `{"source":"A","destination":"B","key_stream_id":5}`},
		{"timeout negative", "open", `{"source":"A","destination":"B","qos":{"timeout":-1}}`},
		{"timeout over uint32", "open", `{"source":"A","destination":"B","qos":{"timeout":4294967296}}`},
		{"timeout a float", "open", `{"source":"A","destination":"B","qos":{"timeout":1.5}}`},
		{"invalid UTF-8", "open", "{\"source\":\"A\xff\",\"destination\":\"B\"}"},
		{"too deep", "open", strings.Repeat("[", 40) + strings.Repeat("]", 40)},
		{"too large", "open", `{"source":"` + strings.Repeat("a", MaxRequestSize) + `"}`},
		{"get_key without ksid", "get_key", `{"index":1}`},
		{"get_key null ksid", "get_key", `{"key_stream_id":null,"index":1}`},
		{"get_key index a string", "get_key", `{` + ks + `,"index":"1"}`},
		{"close without ksid", "close", `{}`},
		{"close extra field", "close", `{` + ks + `,"index":1}`},
	}
	for _, tt := range jsonCases {
		t.Run("json/"+tt.name, func(t *testing.T) {
			if err := decodeRequest(JSON, tt.call, []byte(tt.body)); !errors.Is(err, etsi004.ErrBadRequest) {
				t.Errorf("decode %s %q = %v, want ErrBadRequest", tt.call, clip(tt.body), err)
			}
		})
	}
	cborCases := []struct {
		name, call, hex string
	}{
		{"empty", "close", ""},
		{"not a map", "close", "80"},
		{"unknown field", "close", "a2" + "6d6b65795f73747265616d5f6964" + ksidHex + "6178" + "01"},
		{"duplicate field", "close", "a2" + "6d6b65795f73747265616d5f6964" + ksidHex + "6d6b65795f73747265616d5f6964" + ksidHex},
		{"trailing byte", "close", "a1" + "6d6b65795f73747265616d5f6964" + ksidHex + "00"},
		{"indefinite map", "close", "bf" + "6d6b65795f73747265616d5f6964" + ksidHex + "ff"},
		{"tag", "close", "c0a1" + "6d6b65795f73747265616d5f6964" + ksidHex},
		{"ksid 15 bytes", "close", "a1" + "6d6b65795f73747265616d5f6964" + "4f" + strings.Repeat("00", 15)},
		{"ksid integer", "close", "a1" + "6d6b65795f73747265616d5f6964" + "01"},
		{"index negative", "get_key", "a2" + "6d6b65795f73747265616d5f6964" + ksidHex + "65696e646578" + "20"},
		{"index over uint32", "get_key", "a2" + "6d6b65795f73747265616d5f6964" + ksidHex + "65696e646578" + "1b0000000100000000"},
		{"truncated", "get_key", "a2" + "6d6b65795f73747265616d5f6964"},
		{"open without destination", "open", "a166736f7572636561" + "41"},
	}
	for _, tt := range cborCases {
		t.Run("cbor/"+tt.name, func(t *testing.T) {
			if err := decodeRequest(CBOR, tt.call, unhex(t, tt.hex)); !errors.Is(err, etsi004.ErrBadRequest) {
				t.Errorf("decode %s %s = %v, want ErrBadRequest", tt.call, tt.hex, err)
			}
		})
	}
}

func decodeRequest(f Format, call string, p []byte) error {
	var err error
	switch call {
	case "open":
		_, err = DecodeOpenRequest(f, p)
	case "get_key":
		_, err = DecodeGetKeyRequest(f, p)
	default:
		_, err = DecodeCloseRequest(f, p)
	}
	return err
}

// TestResponsesRoundTrip decodes what the encoders produce, in both formats.
func TestResponsesRoundTrip(t *testing.T) {
	for _, f := range []Format{CBOR, JSON} {
		open := etsi004.OpenResponse{Status: etsi004.StatusQoSNotMet, QoS: testQoS, KeyStreamID: testKSID}
		p, _ := EncodeOpenResponse(f, open)
		if got, err := DecodeOpenResponse(f, p); err != nil || got != open {
			t.Errorf("%v: DecodeOpenResponse = %+v, %v, want %+v", f, got, err, open)
		}
		for _, gk := range []etsi004.GetKeyResponse{
			{Index: 3, Key: []byte{9, 8, 7}, Metadata: testMeta},
			{Index: 3, Key: []byte{9, 8, 7}, Metadata: []byte{0, 0xff}},
			{Index: 3, Key: []byte{9, 8, 7}},
			{Status: etsi004.StatusMetadataTooSmall, Index: 3, MetadataSize: 100},
			{Status: etsi004.StatusTimeout, Index: 4},
		} {
			p, _ := EncodeGetKeyResponse(f, gk)
			got, err := DecodeGetKeyResponse(f, p)
			if err != nil || !cmp.Equal(got, gk, cmp.Comparer(bytesEqual)) {
				t.Errorf("%v: DecodeGetKeyResponse(%s) = %+v, %v, want %+v", f, encoded(f, p), got, err, gk)
			}
		}
		cl := etsi004.CloseResponse{Status: etsi004.StatusPeerNotConnectedGK}
		p, _ = EncodeCloseResponse(f, cl)
		if got, err := DecodeCloseResponse(f, p); err != nil || got != cl {
			t.Errorf("%v: DecodeCloseResponse = %+v, %v", f, got, err)
		}
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// TestDecodeResponseRules: responses ignore unknown fields but not a key
// with a failure status or a success without key.
func TestDecodeResponseRules(t *testing.T) {
	if got, err := DecodeCloseResponse(JSON, []byte(`{"status":3,"extra":[1,2]}`)); err != nil || got.Status != 3 {
		t.Errorf("DecodeCloseResponse with an unknown field = %+v, %v", got, err)
	}
	for _, body := range []string{`{"status":0,"index":1}`, `{"status":2,"index":1,"key_buffer":"AA=="}`, `{"status":0,"key_buffer":"!"}`, `{"status":0,"key_buffer":"AA==","metadata":5}`} {
		if _, err := DecodeGetKeyResponse(JSON, []byte(body)); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("DecodeGetKeyResponse(%s) = %v, want ErrMalformedResponse", body, err)
		}
	}
}
