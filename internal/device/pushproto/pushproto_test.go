package pushproto

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/secret"
)

func TestOpenConnectRoundTrip(t *testing.T) {
	k, err := NewKeyStreamID(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []OpenConnect{
		{Source: "kms://A", Destination: "kms://B"},
		{Source: "kms://A", KeyStreamID: k, QoS: QoS{KeyChunkSize: 32, MaxBps: 1e6, MinBps: 1, Jitter: 2, Priority: 3, Timeout: 4, TTL: 5, MetadataMimetype: "application/json"}},
	} {
		for _, f := range []Format{CBOR, JSON} {
			p, err := f.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			var back OpenConnect
			if err := f.Unmarshal(p, &back); err != nil || back != req {
				t.Errorf("%v round trip of %+v = %+v, %v", f, req, back, err)
			}
		}
	}
}

func TestKeyStreamIDEncodings(t *testing.T) {
	k, _ := ParseKeyStreamID("550e8400-e29b-41d4-a716-446655440000")
	p, _ := JSON.Marshal(Close{KeyStreamID: k})
	if want := `{"key_stream_id":"550e8400-e29b-41d4-a716-446655440000"}`; string(p) != want {
		t.Errorf("JSON = %s, want %s", p, want)
	}
	p, _ = CBOR.Marshal(Close{KeyStreamID: k})
	if !bytes.Contains(p, append([]byte{0x50}, k[:]...)) {
		t.Errorf("CBOR = %x, want a 16-byte byte string", p)
	}
	tests := []struct {
		name string
		f    Format
		in   []byte
		want KeyStreamID
		ok   bool
	}{
		{"json null", JSON, []byte(`{"source":"x","key_stream_id":null}`), KeyStreamID{}, true},
		{"json empty", JSON, []byte(`{"source":"x","key_stream_id":""}`), KeyStreamID{}, true},
		{"json absent", JSON, []byte(`{"source":"x"}`), KeyStreamID{}, true},
		{"json uuid", JSON, []byte(`{"source":"x","key_stream_id":"550E8400-E29B-41D4-A716-446655440000"}`), k, true},
		{"json bad", JSON, []byte(`{"source":"x","key_stream_id":"550e8400"}`), KeyStreamID{}, false},
		{"cbor bstr", CBOR, cborOpen(append([]byte{0x50}, k[:]...)), k, true},
		{"cbor empty bstr", CBOR, cborOpen([]byte{0x40}), KeyStreamID{}, true},
		{"cbor null", CBOR, cborOpen([]byte{0xf6}), KeyStreamID{}, true},
		{"cbor text", CBOR, cborOpen(append([]byte{0x78, 36}, k.String()...)), k, true},
		{"cbor short bstr", CBOR, cborOpen([]byte{0x42, 1, 2}), KeyStreamID{}, false},
		{"cbor int", CBOR, cborOpen([]byte{0x01}), KeyStreamID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got OpenConnect
			err := tt.f.Unmarshal(tt.in, &got)
			if (err == nil) != tt.ok || got.KeyStreamID != tt.want {
				t.Errorf("Unmarshal(%q) = %s, %v; want %s ok=%v", tt.in, got.KeyStreamID, err, tt.want, tt.ok)
			}
		})
	}
}

// cborOpen encodes {"source": "x", "key_stream_id": <ksid>}.
func cborOpen(ksid []byte) []byte {
	p := []byte{0xa2, 0x66, 's', 'o', 'u', 'r', 'c', 'e', 0x61, 'x', 0x6d}
	p = append(p, "key_stream_id"...)
	return append(p, ksid...)
}

func TestNotificationRoundTrip(t *testing.T) {
	k, _ := NewKeyStreamID(nil)
	key, _ := secret.Random(nil, 100)
	defer key.Wipe()
	for _, n := range []Notification{
		{Status: StatusSuccess, Index: 7, Key: key, KeyStreamID: k, AgeMS: 12},
		{Status: StatusInsufficientKey, Index: 9},
		{Status: StatusKSIDInUse},
	} {
		p, err := EncodeNotification(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeNotification(p)
		if err != nil {
			t.Fatalf("DecodeNotification(EncodeNotification(%+v)) = %v", n, err)
		}
		if got.Status != n.Status || got.Index != n.Index || got.KeyStreamID != n.KeyStreamID || got.AgeMS != n.AgeMS ||
			!bytes.Equal(got.Key.Expose(), n.Key.Expose()) {
			t.Errorf("round trip of %+v = %+v", n, got)
		}
		got.Wipe()
	}
	if _, err := EncodeNotification(Notification{Status: StatusSuccess}); err == nil {
		t.Error("EncodeNotification(status 0, no key) = nil error")
	}
}

func TestNotificationWireNames(t *testing.T) {
	p, err := EncodeNotification(Notification{Status: StatusSuccess, Index: 1, Key: secret.From([]byte{1, 2, 3})})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"status", "index", "key_buffer", "metadata", "key_stream_id", "size", "age_ms"} {
		if !bytes.Contains(p, []byte(name)) {
			t.Errorf("notification %x lacks field %q", p, name)
		}
	}
}

func TestNotificationOverheadBound(t *testing.T) {
	var k KeyStreamID
	for i := range k {
		k[i] = 0xff
	}
	for _, size := range []int{1, 23, 24, 255, 256, 912, 65535, 65536, 1 << 20} {
		key := secret.Make(size)
		p, err := EncodeNotification(Notification{Status: StatusSuccess, Index: math.MaxUint32, Key: key, KeyStreamID: k, AgeMS: math.MaxUint64})
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > size+NotificationOverhead {
			t.Errorf("%d-byte key: notification of %d bytes, over the %d-byte bound", size, len(p), size+NotificationOverhead)
		}
	}
}

func TestDecodeNotificationRejects(t *testing.T) {
	enc := func(w wireNotification) []byte {
		p, err := encMode.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	md := &wireMetadata{Size: 3}
	for name, p := range map[string][]byte{
		"no key":         enc(wireNotification{Status: 0, Metadata: md}),
		"no metadata":    enc(wireNotification{Status: 0, KeyBuffer: []byte{1, 2, 3}}),
		"size mismatch":  enc(wireNotification{Status: 0, KeyBuffer: []byte{1, 2}, Metadata: md}),
		"key on failure": enc(wireNotification{Status: 2, KeyBuffer: []byte{1, 2, 3}}),
		"not cbor":       []byte("{}"),
		"trailing":       append(enc(wireNotification{Status: 2}), 0),
		"duplicate key":  {0xa2, 0x66, 's', 't', 'a', 't', 'u', 's', 0x00, 0x66, 's', 't', 'a', 't', 'u', 's', 0x02},
	} {
		if n, err := DecodeNotification(p); err == nil {
			t.Errorf("%s: DecodeNotification(%x) = %+v, want an error", name, p, n)
		}
	}
}

func TestUnmarshalLimits(t *testing.T) {
	big := `{"source":"` + strings.Repeat("x", MaxMessageSize) + `"}`
	var req OpenConnect
	if err := JSON.Unmarshal([]byte(big), &req); err == nil {
		t.Error("Unmarshal of an oversized body = nil error")
	}
}

func FuzzDecodeNotification(f *testing.F) {
	k, _ := NewKeyStreamID(nil)
	for _, n := range []Notification{
		{Status: StatusSuccess, Index: 3, Key: secret.From([]byte("0123456789abcdef")), KeyStreamID: k, AgeMS: 5},
		{Status: StatusInsufficientKey, Index: 4},
	} {
		p, err := EncodeNotification(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Add([]byte{0xa1, 0x66, 's', 't', 'a', 't', 'u', 's', 0x00})
	f.Fuzz(func(t *testing.T, p []byte) {
		n, err := DecodeNotification(p)
		if err != nil {
			return
		}
		defer n.Wipe()
		if (n.Status == StatusSuccess) != (n.Key.Len() > 0) {
			t.Fatalf("DecodeNotification(%x) = status %d with %d key bytes", p, n.Status, n.Key.Len())
		}
		q, err := EncodeNotification(n)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", n, err)
		}
		back, err := DecodeNotification(q)
		if err != nil {
			t.Fatalf("DecodeNotification(EncodeNotification(%+v)) = %v", n, err)
		}
		defer back.Wipe()
		if diff := cmp.Diff(summary(n), summary(back)); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func summary(n Notification) []any {
	var ksid KeyStreamID
	if n.Status == StatusSuccess { // metadata travels only with a key
		ksid = n.KeyStreamID
	}
	return []any{n.Status, n.Index, string(n.Key.Expose()), ksid, n.AgeMS}
}
