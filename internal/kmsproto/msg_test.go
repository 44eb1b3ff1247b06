package kmsproto

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
)

func TestRoundTrip(t *testing.T) {
	id, _ := qkd.NewKeyID(nil)
	body, err := Marshal(MakeKeysExternalReq{AllocID: "a1", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"},
		SizeBits: 256, IDs: []qkd.KeyID{id}, Pieces: []Piece{{Index: 2, Off: 32, Len: 32}}, Created: 1, Expires: 2})
	if err != nil {
		t.Fatal(err)
	}
	h := Header{V: Version, Type: MakeKeysExternal, Link: "A-B", From: "A", To: "B", Seq: 7, Body: body}
	hb, err := Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := Marshal(Sealed{Data: hb, Tag: make([]byte, 16)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeSealed(wire)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeHeader(s.Data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, got); diff != "" {
		t.Fatalf("header round trip (-want +got):\n%s", diff)
	}
	var m MakeKeysExternalReq
	if err := Unmarshal(got.Body, &m); err != nil || m.IDs[0] != id || m.Pieces[0].Off != 32 {
		t.Fatalf("body round trip = %+v, %v", m, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Marshal(Header{V: Version, Type: GetStatus, Link: "L", From: "A", To: "B"})
	tests := map[string][]byte{
		"empty":        {},
		"garbage":      {0xff, 0x00},
		"wrong type":   mustMarshal(t, Header{V: Version, Type: "nope", Link: "L", From: "A", To: "B"}),
		"wrong ver":    mustMarshal(t, Header{V: 9, Type: GetStatus, Link: "L", From: "A", To: "B"}),
		"no link":      mustMarshal(t, Header{V: Version, Type: GetStatus, From: "A", To: "B"}),
		"trailing":     append(append([]byte{}, good...), 0x00),
		"indef length": {0xbf, 0x01, 0x01, 0xff},
	}
	for name, b := range tests {
		if _, err := DecodeHeader(b); err == nil {
			t.Errorf("DecodeHeader(%s) = nil error", name)
		}
	}
	if _, err := DecodeHeader(good); err != nil {
		t.Errorf("DecodeHeader(good) = %v", err)
	}
	if _, err := DecodeSealed(mustMarshal(t, Sealed{Data: good, Tag: []byte{1}})); err == nil {
		t.Error("DecodeSealed(short tag) = nil error")
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyIDMustBe16Bytes(t *testing.T) {
	for _, n := range []int{0, 3, 15, 17, 20} {
		// {1: [h'00…']}: a DeleteKeysReq whose one key ID has n bytes.
		raw := append([]byte{0xa1, 0x01, 0x81, 0x40 | byte(n)}, make([]byte, n)...)
		var d DeleteKeysReq
		if err := Unmarshal(raw, &d); err == nil {
			t.Errorf("Unmarshal of a %d-byte key ID = %v, want an error", n, d.IDs)
		}
	}
	id, _ := qkd.NewKeyID(nil)
	b, _ := Marshal(DeleteKeysReq{IDs: []qkd.KeyID{id}})
	var d DeleteKeysReq
	if err := Unmarshal(b, &d); err != nil || d.IDs[0] != id {
		t.Fatalf("16-byte key ID round trip = %v, %v", d.IDs, err)
	}
}

// TestMakeKeysExternalStream: Stream travels under key 9 and is absent
// from a reservation of ordinary keys (whose encoding is unchanged).
func TestMakeKeysExternalStream(t *testing.T) {
	req := MakeKeysExternalReq{AllocID: "a1", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}, SizeBits: 256}
	plain := mustMarshal(t, req)
	var fields map[int]any
	if err := Unmarshal(plain, &fields); err != nil {
		t.Fatal(err)
	}
	if _, ok := fields[9]; ok || len(fields) != 8 {
		t.Errorf("ordinary reservation has keys %v, want 1..8", fields)
	}
	req.Stream = "928f29b5-6856-461c-9db1-a73bb21a9992"
	clear(fields)
	if err := Unmarshal(mustMarshal(t, req), &fields); err != nil || fields[9] != req.Stream {
		t.Errorf("stream reservation: key 9 = %v, %v", fields[9], err)
	}
	var got MakeKeysExternalReq
	if err := Unmarshal(mustMarshal(t, req), &got); err != nil || got.Stream != req.Stream {
		t.Errorf("round trip Stream = %q, %v", got.Stream, err)
	}
}
