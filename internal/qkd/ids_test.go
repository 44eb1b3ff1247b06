package qkd

import (
	"bytes"
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
