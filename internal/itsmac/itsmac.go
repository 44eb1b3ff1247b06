package itsmac

import (
	"errors"
	"fmt"

	"github.com/qkms/qkms/internal/secret"
	//lint:ignore SA1019 a one-time authenticator is exactly what we use it as (standards §7.2).
	"golang.org/x/crypto/poly1305"
)

// Sizes in bytes.
const (
	// KeySize is the Poly1305 one-time key r‖s.
	KeySize = 32
	// TagSize is the length of every tag.
	TagSize = 16
	// HashKeySize is the Wegman–Carter hash key r (clamped to 106 bits).
	HashKeySize = 16
	// PadSize is the Wegman–Carter one-time pad k_i of one tag.
	PadSize = 16
)

// ErrKeySize is returned when a key has the wrong length.
var ErrKeySize = errors.New("itsmac: wrong key length")

// Tag is a 16-byte authenticator.
type Tag = [TagSize]byte

// Sum returns the Poly1305 tag of the concatenation of msg under the one-time
// key r‖s (RFC 8439 §2.5). The key must never authenticate another message.
func Sum(key secret.MACKey, msg ...[]byte) (Tag, error) {
	var tag Tag
	k := key.Expose()
	if len(k) != KeySize {
		return tag, keySizeError("one-time key", len(k), KeySize)
	}
	sum(&tag, (*[KeySize]byte)(k), msg)
	return tag, nil
}

// Verify reports whether tag is the Poly1305 tag of the concatenation of msg
// under key, comparing in constant time. A key or tag of the wrong length
// verifies as false.
func Verify(key secret.MACKey, tag []byte, msg ...[]byte) bool {
	k := key.Expose()
	if len(k) != KeySize || len(tag) != TagSize {
		return false
	}
	if len(msg) == 1 { // common case; the library's one-shot form does not allocate
		return poly1305.Verify((*[TagSize]byte)(tag), msg[0], (*[KeySize]byte)(k))
	}
	return newMAC((*[KeySize]byte)(k), msg).Verify(tag)
}

// sum writes the Poly1305 tag of the parts of msg into out.
func sum(out *Tag, key *[KeySize]byte, msg [][]byte) {
	if len(msg) == 1 {
		poly1305.Sum(out, msg[0], key)
		return
	}
	newMAC(key, msg).Sum(out[:0])
}

// newMAC returns a MAC that has absorbed every part of msg, in order, without
// concatenating them.
func newMAC(key *[KeySize]byte, msg [][]byte) *poly1305.MAC {
	m := poly1305.New(key)
	for _, p := range msg {
		_, _ = m.Write(p) // never fails
	}
	return m
}

func keySizeError(what string, got, want int) error {
	return fmt.Errorf("%w: %s is %d bytes, want %d", ErrKeySize, what, got, want)
}
