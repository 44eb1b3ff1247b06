package itsmac

import (
	"encoding/binary"

	"github.com/qkms/qkms/internal/secret"
)

// NumberSize is the length of the message number that WCSum hashes in front
// of the message (big-endian).
const NumberSize = 8

// WCSum returns the Wegman–Carter tag of message number n (the
// concatenation of msg):
//
//	tag_n = (h_r(n ‖ m) + k_n) mod 2^128
//
// where h_r is the Poly1305 polynomial hash with r = hashKey (clamped), n is
// encoded as NumberSize big-endian bytes, and k_n = pad is read as a
// little-endian integer. This is exactly Poly1305 with the key r‖k_n over
// n ‖ m, so the additive combination is used: it is the one for which
// Bernstein's Δ-universal bound on the Poly1305 hash is proven (see the
// package documentation). hashKey may be reused for every number of an
// epoch; pad must be fresh, uniform and used for exactly one tag.
func WCSum(hashKey, pad secret.MACKey, n uint64, msg ...[]byte) (Tag, error) {
	var tag Tag
	if err := checkWC(hashKey, pad); err != nil {
		return tag, err
	}
	key, parts := wcInput(hashKey, pad, n, msg)
	sum(&tag, key, parts)
	secret.Wipe(key[:])
	return tag, nil
}

// WCVerify reports whether tag is the Wegman–Carter tag of message number n
// (the concatenation of msg), comparing in constant time. Wrong lengths
// verify as false.
func WCVerify(hashKey, pad secret.MACKey, n uint64, tag []byte, msg ...[]byte) bool {
	if checkWC(hashKey, pad) != nil || len(tag) != TagSize {
		return false
	}
	key, parts := wcInput(hashKey, pad, n, msg)
	ok := newMAC(key, parts).Verify(tag)
	secret.Wipe(key[:])
	return ok
}

func checkWC(hashKey, pad secret.MACKey) error {
	if n := hashKey.Len(); n != HashKeySize {
		return keySizeError("Wegman–Carter hash key", n, HashKeySize)
	}
	if n := pad.Len(); n != PadSize {
		return keySizeError("Wegman–Carter pad", n, PadSize)
	}
	return nil
}

// wcInput returns the Poly1305 key r‖pad (the caller wipes it) and the
// message parts with the number in front.
func wcInput(hashKey, pad secret.MACKey, n uint64, msg [][]byte) (*[KeySize]byte, [][]byte) {
	var key [KeySize]byte
	copy(key[:HashKeySize], hashKey.Expose())
	copy(key[HashKeySize:], pad.Expose())
	parts := make([][]byte, 0, len(msg)+1)
	parts = append(parts, binary.BigEndian.AppendUint64(make([]byte, 0, NumberSize), n))
	return &key, append(parts, msg...)
}
