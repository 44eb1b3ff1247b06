package itsmac

import (
	"errors"
	"testing"
)

func TestScheme(t *testing.T) {
	tests := []struct {
		name            string
		s               Scheme
		tagBytes, run   int
		oneTag, hundred int
	}{
		{"poly1305", SchemePoly1305, 32, 0, 32, 3200},
		{"wegman_carter", SchemeWegmanCarter, 16, 16, 32, 1616},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseScheme(tt.name)
			if err != nil || got != tt.s {
				t.Fatalf("ParseScheme(%q) = %v, %v; want %v", tt.name, got, err, tt.s)
			}
			if s := tt.s.String(); s != tt.name {
				t.Errorf("String() = %q, want %q", s, tt.name)
			}
			var back Scheme
			text, err := tt.s.MarshalText()
			if err != nil || back.UnmarshalText(text) != nil || back != tt.s {
				t.Errorf("text round trip = %v (%q, %v), want %v", back, text, err, tt.s)
			}
			if g := tt.s.TagKeyBytes(); g != tt.tagBytes {
				t.Errorf("TagKeyBytes() = %d, want %d", g, tt.tagBytes)
			}
			if g := tt.s.RunKeyBytes(); g != tt.run {
				t.Errorf("RunKeyBytes() = %d, want %d", g, tt.run)
			}
			if g := tt.s.KeyBytes(1); g != tt.oneTag {
				t.Errorf("KeyBytes(1) = %d, want %d", g, tt.oneTag)
			}
			if g := tt.s.KeyBytes(100); g != tt.hundred {
				t.Errorf("KeyBytes(100) = %d, want %d", g, tt.hundred)
			}
			if g := tt.s.KeyBytes(0); g != 0 {
				t.Errorf("KeyBytes(0) = %d, want 0", g)
			}
		})
	}
}

func TestSchemeInvalid(t *testing.T) {
	for _, name := range []string{"", "Poly1305", "wegman-carter", "hmac"} {
		if _, err := ParseScheme(name); !errors.Is(err, ErrUnknownScheme) {
			t.Errorf("ParseScheme(%q) error = %v, want ErrUnknownScheme", name, err)
		}
	}
	var zero Scheme
	if zero.Valid() || zero.TagKeyBytes() != 0 || zero.String() != "Scheme(0)" {
		t.Errorf("zero Scheme: Valid %v, TagKeyBytes %d, String %q", zero.Valid(), zero.TagKeyBytes(), zero)
	}
	if _, err := Scheme(9).MarshalText(); !errors.Is(err, ErrUnknownScheme) {
		t.Errorf("Scheme(9).MarshalText() error = %v, want ErrUnknownScheme", err)
	}
	if DefaultScheme != SchemePoly1305 {
		t.Errorf("DefaultScheme = %v, want poly1305 (the default)", DefaultScheme)
	}
}
