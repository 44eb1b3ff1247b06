package itsmac

import (
	"crypto/subtle"

	"github.com/qkms/qkms/internal/secret"
)

// WCSum returns the Wegman–Carter tag h_r(m) ⊕ mask of the concatenation of
// msg, where h_r is the Poly1305 polynomial hash with r = hashKey (clamped)
// and s = 0. hashKey may be reused over a run of messages; mask must be fresh
// for every message and never reused.
func WCSum(hashKey, mask secret.MACKey, msg ...[]byte) (Tag, error) {
	var tag Tag
	if err := checkWC(hashKey, mask); err != nil {
		return tag, err
	}
	wcSum(&tag, hashKey.Expose(), mask.Expose(), msg)
	return tag, nil
}

// WCVerify reports whether tag is the Wegman–Carter tag of the concatenation
// of msg, comparing in constant time. Wrong lengths verify as false.
func WCVerify(hashKey, mask secret.MACKey, tag []byte, msg ...[]byte) bool {
	if checkWC(hashKey, mask) != nil || len(tag) != TagSize {
		return false
	}
	var want Tag
	wcSum(&want, hashKey.Expose(), mask.Expose(), msg)
	ok := subtle.ConstantTimeCompare(want[:], tag) == 1
	secret.Wipe(want[:])
	return ok
}

func checkWC(hashKey, mask secret.MACKey) error {
	if n := hashKey.Len(); n != HashKeySize {
		return keySizeError("Wegman–Carter hash key", n, HashKeySize)
	}
	if n := mask.Len(); n != MaskSize {
		return keySizeError("Wegman–Carter mask", n, MaskSize)
	}
	return nil
}

// wcSum computes h_r(m) as Poly1305 under r‖0^16 (adding s = 0 leaves the
// hash mod 2^128), then XORs the mask.
func wcSum(out *Tag, r, mask []byte, msg [][]byte) {
	var k [KeySize]byte
	copy(k[:HashKeySize], r)
	sum(out, &k, msg)
	secret.Wipe(k[:])
	subtle.XORBytes(out[:], out[:], mask)
}
