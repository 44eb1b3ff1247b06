package itsmac

import (
	"errors"
	"fmt"
)

// Scheme selects the ITS MAC that authenticates a link's KMS↔KMS messages
// (docs/coap-profiles.md, MAC slots). The zero value is invalid so that a
// missing setting is caught; configuration applies DefaultScheme.
type Scheme uint8

// Schemes.
const (
	// SchemePoly1305 is Poly1305 as a one-time MAC: 32 fresh key bytes per tag.
	SchemePoly1305 Scheme = iota + 1
	// SchemeWegmanCarter reuses a 16-byte hash key over a run and spends a
	// fresh 16-byte pad per tag.
	SchemeWegmanCarter
)

// DefaultScheme is the default scheme: one-time Poly1305.
const DefaultScheme = SchemePoly1305

// ErrUnknownScheme is returned for a scheme name that is not known.
var ErrUnknownScheme = errors.New("itsmac: unknown scheme")

var schemeNames = [...]string{
	SchemePoly1305:     "poly1305",
	SchemeWegmanCarter: "wegman_carter",
}

// ParseScheme returns the scheme with the given configuration name
// ("poly1305" or "wegman_carter").
func ParseScheme(name string) (Scheme, error) {
	for s, n := range schemeNames {
		if n != "" && n == name {
			return Scheme(s), nil
		}
	}
	return 0, fmt.Errorf("%w %q (want poly1305 or wegman_carter)", ErrUnknownScheme, name)
}

// Valid reports whether s is a known scheme.
func (s Scheme) Valid() bool { return s == SchemePoly1305 || s == SchemeWegmanCarter }

// String returns the configuration name.
func (s Scheme) String() string {
	if !s.Valid() {
		return fmt.Sprintf("Scheme(%d)", uint8(s))
	}
	return schemeNames[s]
}

// MarshalText implements encoding.TextMarshaler.
func (s Scheme) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnknownScheme, uint8(s))
	}
	return []byte(schemeNames[s]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Scheme) UnmarshalText(b []byte) error {
	v, err := ParseScheme(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// TagKeyBytes returns the fresh one-time key bytes each tag consumes: 32
// (r‖s) for Poly1305, 16 (the pad) for Wegman–Carter. 0 if s is invalid.
func (s Scheme) TagKeyBytes() int {
	switch s {
	case SchemePoly1305:
		return KeySize
	case SchemeWegmanCarter:
		return PadSize
	}
	return 0
}

// RunKeyBytes returns the key bytes spent once per run of messages: 16 (the
// hash key) for Wegman–Carter, 0 for Poly1305.
func (s Scheme) RunKeyBytes() int {
	if s == SchemeWegmanCarter {
		return HashKeySize
	}
	return 0
}

// KeyBytes returns the key bytes that n tags consume within one run:
// RunKeyBytes + n·TagKeyBytes (0 for n ≤ 0).
func (s Scheme) KeyBytes(n int) int {
	if n <= 0 {
		return 0
	}
	return s.RunKeyBytes() + n*s.TagKeyBytes()
}
