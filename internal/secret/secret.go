package secret

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
)

const redacted = "[REDACTED]"

// Bytes is a buffer of key material. The zero value is an empty buffer.
// Copying a Bytes value shares the buffer: use Clone for an independent copy.
type Bytes struct {
	b []byte
}

// Make returns a zeroed buffer of n bytes.
func Make(n int) Bytes { return Bytes{b: make([]byte, n)} }

// From copies src into a new buffer. The caller still owns (and wipes) src.
func From(src []byte) Bytes {
	b := make([]byte, len(src))
	copy(b, src)
	return Bytes{b: b}
}

// Adopt takes ownership of src without copying; the caller must not use src
// afterwards except through the returned Bytes.
func Adopt(src []byte) Bytes { return Bytes{b: src} }

// Random returns n bytes read from r (crypto/rand if r is nil).
func Random(r io.Reader, n int) (Bytes, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		Wipe(b)
		return Bytes{}, fmt.Errorf("secret: reading randomness: %w", err)
	}
	return Bytes{b: b}, nil
}

// Len returns the length in bytes.
func (s Bytes) Len() int { return len(s.b) }

// Expose returns the underlying buffer. The caller must not keep it beyond the
// life of s, log it, or put it into an error.
func (s Bytes) Expose() []byte { return s.b }

// Clone returns an independent copy.
func (s Bytes) Clone() Bytes { return From(s.b) }

// Slice returns a copy of bytes [from, to).
func (s Bytes) Slice(from, to int) Bytes { return From(s.b[from:to]) }

// Equal compares in constant time (for equal lengths).
func (s Bytes) Equal(o Bytes) bool { return subtle.ConstantTimeCompare(s.b, o.b) == 1 }

// Wipe overwrites the buffer with zeros and empties s.
func (s *Bytes) Wipe() {
	Wipe(s.b)
	s.b = nil
}

// String implements fmt.Stringer and never shows the bytes.
func (s Bytes) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (s Bytes) GoString() string { return redacted }

// Format implements fmt.Formatter so that every verb (%x, %v, %s, %q) redacts.
func (s Bytes) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements slog.LogValuer.
func (s Bytes) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON implements json.Marshaler.
func (s Bytes) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Bytes) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Wipe overwrites b with zeros. The compiler cannot elide clear on a slice
// that escapes, which every buffer passed here does.
func Wipe(b []byte) {
	clear(b)
}

// WipeAll wipes every buffer in bs.
func WipeAll(bs []Bytes) {
	for i := range bs {
		bs[i].Wipe()
	}
}

// KEK is a key-encryption key of the key store (docs/operations.md, KEK rotation).
type KEK struct{ Bytes }

// PSK is a per-link pre-shared key that authenticates the first KMS↔KMS
// messages before QKD keys exist (docs/operations.md, PSK provisioning).
type PSK struct{ Bytes }

// MACKey is one-time ITS MAC key material (docs/coap-profiles.md, MAC slots).
type MACKey struct{ Bytes }
