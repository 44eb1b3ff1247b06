package tcp004

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/etsi004"
)

// hx decodes hex written with spaces, one field a group.
func hx(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func zeros(n int) []byte { return make([]byte, n) }

var (
	testKSID = etsi004.KSID{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	testQoS  = etsi004.QoS{KeyChunkSize: 32, MaxBps: 1000, MinBps: 100, Jitter: 10, Priority: 1,
		Timeout: 5000, TTL: 3600, MetadataMimetype: "application/json"}
)

// Wire images written out by hand from QUBIP's etsi-qkd-004 framing.
func ksidBytes(t testing.TB) []byte { return hx(t, "00112233 44556677 8899aabb ccddeeff") }

func qosBytes(t testing.TB) []byte {
	return cat(hx(t, "00000020 000003e8 00000064 0000000a 00000001 00001388 00000e10"),
		[]byte("application/json"), zeros(256-16))
}

func TestOpenRequestVector(t *testing.T) {
	req := etsi004.OpenRequest{Source: "a://x", Destination: "b://y", QoS: testQoS, KeyStreamID: testKSID}
	want := cat(hx(t, "613a2f2f78 00 623a2f2f79 00"), qosBytes(t), ksidBytes(t))
	if len(want) != 6+6+284+16 {
		t.Fatalf("vector is %d bytes", len(want))
	}
	got, err := AppendOpenRequest(nil, req)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("AppendOpenRequest = %x, %v, want %x", got, err, want)
	}
	dec, err := DecodeOpenRequest(want)
	if err != nil {
		t.Fatalf("DecodeOpenRequest: %v", err)
	}
	if diff := cmp.Diff(req, dec); diff != "" {
		t.Errorf("DecodeOpenRequest (-want +got):\n%s", diff)
	}
}

func TestFrameVector(t *testing.T) {
	got, err := AppendFrame(nil, CloseRequest, ksidBytes(t))
	want := cat(hx(t, "01 00 01 08 00000010"), ksidBytes(t))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame = %x, %v, want %x", got, err, want)
	}
	h, err := ParseHeader(want[:8])
	if err != nil || h != (Header{1, 0, 1, CloseRequest, 16}) {
		t.Errorf("ParseHeader = %+v, %v", h, err)
	}
	b := beginFrame(GetKeyResponse)
	b = append(b, 1, 2, 3)
	if err := finishFrame(b); err != nil || !bytes.Equal(b, hx(t, "01 00 01 05 00000003 010203")) {
		t.Errorf("beginFrame+finishFrame = %x, %v", b, err)
	}
}

func TestResponseVectors(t *testing.T) {
	type tc struct {
		name string
		in   any // the response value
		wire []byte
	}
	tests := []tc{
		{"open ok", etsi004.OpenResponse{Status: 1, QoS: testQoS, KeyStreamID: testKSID},
			cat(hx(t, "00000001"), qosBytes(t), ksidBytes(t))},
		{"open empty mimetype", etsi004.OpenResponse{Status: 5},
			cat(hx(t, "00000005"), zeros(284), zeros(16))},
		{"get key ok", etsi004.GetKeyResponse{Index: 7, Key: hx(t, "deadbeef"), Metadata: []byte("{}"), MetadataSize: 2},
			hx(t, "00000000 00000007 00000004 deadbeef 00000002 7b7d")},
		{"get key ok no metadata", etsi004.GetKeyResponse{Index: 0xfffffffe, Key: hx(t, "01")},
			hx(t, "00000000 fffffffe 00000001 01 00000000")},
		{"get key metadata too small", etsi004.GetKeyResponse{Status: 8, Index: 3, MetadataSize: 32},
			hx(t, "00000008 00000020")},
		{"get key insufficient", etsi004.GetKeyResponse{Status: 2, Index: 3}, hx(t, "00000002")},
		{"get key timeout", etsi004.GetKeyResponse{Status: 6}, hx(t, "00000006")},
		{"close", etsi004.CloseResponse{Status: 3}, hx(t, "00000003")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []byte
			var err error
			switch r := tt.in.(type) {
			case etsi004.OpenResponse:
				got, err = AppendOpenResponse(nil, r)
			case etsi004.GetKeyResponse:
				got, err = AppendGetKeyResponse(nil, r)
			case etsi004.CloseResponse:
				got = AppendCloseResponse(nil, r)
			}
			if err != nil || !bytes.Equal(got, tt.wire) {
				t.Fatalf("Append(%+v) = %x, %v, want %x", tt.in, got, err, tt.wire)
			}
		})
	}
}

func TestRequestVectors(t *testing.T) {
	gk := etsi004.GetKeyRequest{KeyStreamID: testKSID, Index: 7, MetadataSize: 1024}
	wire := cat(ksidBytes(t), hx(t, "00000007 00000400"))
	if got := AppendGetKeyRequest(nil, gk); !bytes.Equal(got, wire) {
		t.Errorf("AppendGetKeyRequest = %x, want %x", got, wire)
	}
	if got, err := DecodeGetKeyRequest(wire); err != nil || got != gk {
		t.Errorf("DecodeGetKeyRequest = %+v, %v, want %+v", got, err, gk)
	}
	cl := etsi004.CloseRequest{KeyStreamID: testKSID}
	if got := AppendCloseRequest(nil, cl); !bytes.Equal(got, ksidBytes(t)) {
		t.Errorf("AppendCloseRequest = %x", got)
	}
	if got, err := DecodeCloseRequest(ksidBytes(t)); err != nil || got != cl {
		t.Errorf("DecodeCloseRequest = %+v, %v", got, err)
	}
}

func TestDecodeResponses(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
		want any
	}{
		{"open full", cat(hx(t, "00000007"), qosBytes(t), ksidBytes(t)),
			etsi004.OpenResponse{Status: 7, QoS: testQoS, KeyStreamID: testKSID}},
		{"open status only (QUBIP refusal)", hx(t, "00000005"), etsi004.OpenResponse{Status: 5}},
		{"open garbage after mimetype NUL", cat(hx(t, "00000000"), zeros(28), []byte("text/plain\x00junk"), zeros(256-15), zeros(16)),
			etsi004.OpenResponse{QoS: etsi004.QoS{MetadataMimetype: "text/plain"}}},
		{"get key ok", hx(t, "00000000 00000007 00000004 deadbeef 00000002 7b7d"),
			etsi004.GetKeyResponse{Index: 7, Key: hx(t, "deadbeef"), Metadata: []byte("{}"), MetadataSize: 2}},
		{"get key empty key", hx(t, "00000000 00000001 00000000 00000000"),
			etsi004.GetKeyResponse{Index: 1, Key: []byte{}}},
		{"get key 8", hx(t, "00000008 00000400"), etsi004.GetKeyResponse{Status: 8, MetadataSize: 1024}},
		{"get key 3", hx(t, "00000003"), etsi004.GetKeyResponse{Status: 3}},
		{"close", hx(t, "00000000"), etsi004.CloseResponse{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got any
			var err error
			switch tt.want.(type) {
			case etsi004.OpenResponse:
				got, err = DecodeOpenResponse(tt.wire)
			case etsi004.GetKeyResponse:
				got, err = DecodeGetKeyResponse(tt.wire)
			case etsi004.CloseResponse:
				got, err = DecodeCloseResponse(tt.wire)
			}
			if err != nil {
				t.Fatalf("Decode(%x): %v", tt.wire, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decode(%x) (-want +got):\n%s", tt.wire, diff)
			}
		})
	}
}

func TestDecodeCopiesKey(t *testing.T) {
	wire := hx(t, "00000000 00000007 00000004 deadbeef 00000000")
	r, err := DecodeGetKeyResponse(wire)
	if err != nil {
		t.Fatal(err)
	}
	clear(wire)
	if !bytes.Equal(r.Key, hx(t, "deadbeef")) {
		t.Errorf("Key = %x after the input was wiped: it aliases the input", r.Key)
	}
}

func TestMalformed(t *testing.T) {
	full := cat(hx(t, "613a2f2f78 00 623a2f2f79 00"), qosBytes(t), ksidBytes(t))
	noMimeNUL := cat(hx(t, "61 00 62 00"), zeros(28), bytes.Repeat([]byte("x"), 256), zeros(16))
	tests := []struct {
		name   string
		decode func([]byte) error
		wire   []byte
	}{
		{"open req empty", openReq, nil},
		{"open req source without NUL", openReq, []byte("a://x")},
		{"open req destination without NUL", openReq, hx(t, "61 00 62")},
		{"open req short", openReq, full[:len(full)-1]},
		{"open req trailing byte", openReq, cat(full, hx(t, "00"))},
		{"open req mimetype without NUL", openReq, noMimeNUL},
		{"open resp empty", openResp, nil},
		{"open resp 5 bytes", openResp, hx(t, "00000005 00")},
		{"open resp success without body", openResp, hx(t, "00000000")},
		{"open resp peer not connected without body", openResp, hx(t, "00000001")},
		{"open resp short", openResp, cat(hx(t, "00000000"), qosBytes(t), ksidBytes(t)[:15])},
		{"get key req short", getKeyReq, zeros(23)},
		{"get key req long", getKeyReq, zeros(25)},
		{"get key resp empty", getKeyResp, nil},
		{"get key resp 3 bytes", getKeyResp, hx(t, "000000")},
		{"get key resp ok without index", getKeyResp, hx(t, "00000000 000000")},
		{"get key resp ok without key length", getKeyResp, hx(t, "00000000 00000001")},
		{"get key resp key longer than payload", getKeyResp, hx(t, "00000000 00000001 ffffffff 01020304")},
		{"get key resp no metadata length", getKeyResp, hx(t, "00000000 00000001 00000001 01")},
		{"get key resp metadata longer than payload", getKeyResp, hx(t, "00000000 00000001 00000001 01 00000003 7b7d")},
		{"get key resp trailing", getKeyResp, hx(t, "00000000 00000001 00000001 01 00000000 00")},
		{"get key resp 8 without size", getKeyResp, hx(t, "00000008")},
		{"get key resp 8 long", getKeyResp, hx(t, "00000008 00000001 00")},
		{"get key resp error trailing", getKeyResp, hx(t, "00000002 00000001")},
		{"close req short", closeReq, zeros(15)},
		{"close req long", closeReq, zeros(17)},
		{"close resp short", closeResp, zeros(3)},
		{"close resp long", closeResp, zeros(5)},
		{"header short", header, hx(t, "01000102 000000")},
		{"header version 2", header, hx(t, "02010102 00000000")},
		{"header version 0", header, hx(t, "00000102 00000000")},
		{"header oversized", header, hx(t, "01000104 00100001")},
		{"header huge", header, hx(t, "01000104 ffffffff")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.decode(tt.wire); !errors.Is(err, ErrMalformed) {
				t.Errorf("decode(%x) = %v, want ErrMalformed", tt.wire, err)
			}
		})
	}
}

func openReq(p []byte) error    { _, err := DecodeOpenRequest(p); return err }
func openResp(p []byte) error   { _, err := DecodeOpenResponse(p); return err }
func getKeyReq(p []byte) error  { _, err := DecodeGetKeyRequest(p); return err }
func getKeyResp(p []byte) error { _, err := DecodeGetKeyResponse(p); return err }
func closeReq(p []byte) error   { _, err := DecodeCloseRequest(p); return err }
func closeResp(p []byte) error  { _, err := DecodeCloseResponse(p); return err }
func header(p []byte) error     { _, err := ParseHeader(p); return err }

func TestHeaderAcceptsMinorAndPatch(t *testing.T) {
	h, err := ParseHeader(hx(t, "01 07 09 02 00100000"))
	if err != nil || h.Length != MaxPayload || h.Minor != 7 || h.Patch != 9 {
		t.Errorf("ParseHeader(1.7.9, MaxPayload) = %+v, %v", h, err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	long := etsi004.QoS{MetadataMimetype: strings.Repeat("a", 256)}
	tests := []struct {
		name string
		err  func() error
	}{
		{"NUL in source", func() error {
			_, err := AppendOpenRequest(nil, etsi004.OpenRequest{Source: "a\x00b", Destination: "c"})
			return err
		}},
		{"NUL in destination", func() error {
			_, err := AppendOpenRequest(nil, etsi004.OpenRequest{Source: "a", Destination: "\x00"})
			return err
		}},
		{"mimetype of 256 bytes", func() error {
			_, err := AppendOpenRequest(nil, etsi004.OpenRequest{QoS: long})
			return err
		}},
		{"NUL in mimetype", func() error {
			_, err := AppendOpenResponse(nil, etsi004.OpenResponse{QoS: etsi004.QoS{MetadataMimetype: "a\x00"}})
			return err
		}},
		{"key over MaxPayload", func() error {
			_, err := AppendGetKeyResponse(nil, etsi004.GetKeyResponse{Key: make([]byte, MaxPayload)})
			return err
		}},
		{"frame over MaxPayload", func() error {
			_, err := AppendFrame(nil, GetKeyResponse, make([]byte, MaxPayload+1))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.err(); err == nil {
				t.Error("no error")
			}
		})
	}
	// 255 characters and the NUL fit exactly.
	ok := etsi004.QoS{MetadataMimetype: strings.Repeat("a", 255)}
	b, err := AppendOpenResponse(nil, etsi004.OpenResponse{QoS: ok})
	if err != nil {
		t.Fatalf("AppendOpenResponse(255-byte mimetype): %v", err)
	}
	if r, err := DecodeOpenResponse(b); err != nil || r.QoS != ok {
		t.Errorf("round trip of a 255-byte mimetype = %+v, %v", r.QoS, err)
	}
}

func TestRoundTrips(t *testing.T) {
	reqs := []etsi004.OpenRequest{
		{},
		{Source: "client://SAE_A1", Destination: "sae://SAE_B1", QoS: testQoS, KeyStreamID: testKSID},
		{Source: strings.Repeat("é", 500), Destination: "x", QoS: etsi004.QoS{KeyChunkSize: 0xffffffff, TTL: 1}},
	}
	for _, r := range reqs {
		b, err := AppendOpenRequest(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeOpenRequest(b)
		if err != nil || !cmp.Equal(got, r) {
			t.Errorf("OpenRequest round trip of %+v = %+v, %v", r, got, err)
		}
	}
	for st := etsi004.Status(0); st <= 9; st++ {
		o := etsi004.OpenResponse{Status: st, QoS: testQoS, KeyStreamID: testKSID}
		b, _ := AppendOpenResponse(nil, o)
		if got, err := DecodeOpenResponse(b); err != nil || got != o {
			t.Errorf("OpenResponse round trip of %+v = %+v, %v", o, got, err)
		}
		c := etsi004.CloseResponse{Status: st}
		if got, err := DecodeCloseResponse(AppendCloseResponse(nil, c)); err != nil || got != c {
			t.Errorf("CloseResponse round trip of %+v = %+v, %v", c, got, err)
		}
		g := etsi004.GetKeyResponse{Status: st}
		switch st {
		case 0:
			g = etsi004.GetKeyResponse{Index: 9, Key: bytes.Repeat([]byte{0xa5}, 64), Metadata: []byte(`{"age":1,"hops":0}`), MetadataSize: 18}
		case 8:
			g.MetadataSize = 4096
		}
		b, err := AppendGetKeyResponse(nil, g)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := DecodeGetKeyResponse(b); err != nil || !cmp.Equal(got, g) {
			t.Errorf("GetKeyResponse round trip of %+v = %+v, %v", g, got, err)
		}
	}
}
