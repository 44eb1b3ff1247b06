package qkd

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

func TestKeyIDRoundTrip(t *testing.T) {
	for i := 0; i < 100; i++ {
		id, err := NewKeyID(nil)
		if err != nil {
			t.Fatal(err)
		}
		if id[6]>>4 != 4 || id[8]>>6 != 2 {
			t.Fatalf("NewKeyID() = %s, not a v4 UUID", id)
		}
		back, err := ParseKeyID(id.String())
		if err != nil || back != id {
			t.Fatalf("ParseKeyID(%s) = %s, %v", id, back, err)
		}
	}
}

func TestParseKeyID(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000", true},
		{"550E8400-E29B-41D4-A716-446655440000", "550e8400-e29b-41d4-a716-446655440000", true},
		{"550e8400e29b41d4a716446655440000", "", false},
		{"550e8400-e29b-41d4-a716-44665544000g", "", false},
		{"", "", false},
		{"00000000-0000-0000-0000-0000-0000000", "", false},
		{"550e8400-e29b-41d4-a716-4466554400000", "", false},
	}
	for _, tt := range tests {
		got, err := ParseKeyID(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got.String() != tt.want) {
			t.Errorf("ParseKeyID(%q) = %s, %v; want %s ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseKeyID(f *testing.F) {
	f.Add("550e8400-e29b-41d4-a716-446655440000")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseKeyID(s)
		if err != nil {
			return
		}
		if !bytes.EqualFold([]byte(id.String()), []byte(s)) {
			t.Fatalf("ParseKeyID(%q) round trip = %s", s, id)
		}
	})
}

func TestNewKeyIDs(t *testing.T) {
	// A first ID whose counter bytes are near the top: the run wraps.
	seed := bytes.Repeat([]byte{0xab}, 12)
	seed = append(seed, 0xff, 0xff, 0xff, 0xfe)
	for _, tc := range []struct {
		name string
		r    io.Reader
		n    int
	}{
		{"none", nil, 0},
		{"one", nil, 1},
		{"reservation", nil, 1024},
		{"wraps", bytes.NewReader(seed), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := NewKeyIDs(tc.r, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != tc.n {
				t.Fatalf("got %d IDs, want %d", len(ids), tc.n)
			}
			seen := map[KeyID]bool{}
			for i, id := range ids {
				if id[6]>>4 != 4 || id[8]>>6 != 2 {
					t.Errorf("ID %d %s is not a version-4 UUID", i, id)
				}
				if seen[id] {
					t.Errorf("ID %d %s repeated", i, id)
				}
				seen[id] = true
				if !bytes.Equal(id[:12], ids[0][:12]) {
					t.Errorf("ID %d %s leaves the run of %s", i, id, ids[0])
				}
				if got, want := binary.BigEndian.Uint32(id[12:]), binary.BigEndian.Uint32(ids[0][12:])+uint32(i); got != want {
					t.Errorf("ID %d counts %#x, want %#x", i, got, want)
				}
				if back, err := ParseKeyID(id.String()); err != nil || back != id {
					t.Errorf("ID %d %s does not round-trip: %v", i, id, err)
				}
			}
		})
	}
	a, _ := NewKeyIDs(nil, 1)
	b, _ := NewKeyIDs(nil, 1)
	if bytes.Equal(a[0][:12], b[0][:12]) {
		t.Error("two runs share their random part")
	}
}
