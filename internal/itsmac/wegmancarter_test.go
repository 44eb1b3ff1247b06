package itsmac

import (
	"encoding/binary"
	"errors"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	//lint:ignore SA1019 the test computes expected tags with the library directly (standards §7.2).
	"golang.org/x/crypto/poly1305"
)

func TestWCKnownAnswers(t *testing.T) {
	for _, v := range loadJSON[wcVector](t, "wegman_carter.json") {
		t.Run(v.Name, func(t *testing.T) {
			if got := refWC(v.HashKey, v.Pad, v.N, v.Msg); string(got[:]) != string(v.Tag) {
				t.Fatalf("reference (h_r(n ‖ m) + pad) mod 2^128 = %x, want %x (vector or reference is wrong)", got, v.Tag)
			}
			r, pad := macKey(v.HashKey), macKey(v.Pad)
			for i, parts := range splits(v.Msg) {
				got, err := WCSum(r, pad, v.N, parts...)
				if err != nil || string(got[:]) != string(v.Tag) {
					t.Errorf("WCSum(split %d) = %x, %v; want %x", i, got, err, []byte(v.Tag))
				}
				if !WCVerify(r, pad, v.N, v.Tag, parts...) {
					t.Errorf("WCVerify(split %d) = false, want true", i)
				}
			}
		})
	}
}

// TestWCIsPoly1305WithPadAsS checks the definition tag_n = (h_r(n ‖ m) +
// k_n) mod 2^128 two independent ways: with math/big, and as
// golang.org/x/crypto/poly1305 under the key r‖k_n over n ‖ m (s = the
// pad), i.e. the additive construction is Poly1305 with the pad as s.
func TestWCIsPoly1305WithPadAsS(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{'w', 'c'}))
	for _, size := range []int{0, 1, 7, 8, 9, 16, 17, 64, 333} {
		for range 20 {
			r, pad, msg := randBytes(rng, HashKeySize), randBytes(rng, PadSize), randBytes(rng, size)
			n := rng.Uint64()
			got, err := WCSum(macKey(r), macKey(pad), n, msg)
			if err != nil {
				t.Fatal(err)
			}
			var key [KeySize]byte
			copy(key[:], r)
			copy(key[HashKeySize:], pad)
			var lib Tag
			poly1305.Sum(&lib, append(binary.BigEndian.AppendUint64(nil, n), msg...), &key)
			h := refHash(r, append(binary.BigEndian.AppendUint64(nil, n), msg...))
			if want := refTag(new(big.Int).Add(h, leInt(pad))); got != want || got != lib {
				t.Fatalf("WCSum(%x, %x, %d, %x) = %x; math/big %x, poly1305(r‖pad) %x", r, pad, n, msg, got, want, lib)
			}
		}
	}
}

func TestWCRejects(t *testing.T) {
	// Not an r = 0 vector (A.3 #1, #2): h_0 ignores the message.
	v := named(t, loadJSON[wcVector](t, "wegman_carter.json"), "RFC 8439 §2.5.2 r, s and message, n = 1")
	otherPad := clone(v.Pad)
	otherPad[0] ^= 1
	tests := []struct {
		name     string
		r, pad   []byte
		n        uint64
		tag, msg []byte
	}{
		{"msg bit", v.HashKey, v.Pad, v.N, v.Tag, flipBit(v.Msg, 100)},
		{"msg longer", v.HashKey, v.Pad, v.N, v.Tag, append(clone(v.Msg), 0)},
		{"tag bit", v.HashKey, v.Pad, v.N, flipBit(v.Tag, 127), v.Msg},
		{"other number", v.HashKey, v.Pad, v.N + 1, v.Tag, v.Msg},
		{"number 0", v.HashKey, v.Pad, 0, v.Tag, v.Msg},
		{"top bit of number", v.HashKey, v.Pad, v.N | 1<<63, v.Tag, v.Msg},
		{"other pad", v.HashKey, otherPad, v.N, v.Tag, v.Msg},
		{"other hash key", flipBit(v.HashKey, 9), v.Pad, v.N, v.Tag, v.Msg},
		{"short tag", v.HashKey, v.Pad, v.N, v.Tag[:15], v.Msg},
		{"long hash key", append(clone(v.HashKey), 0), v.Pad, v.N, v.Tag, v.Msg},
		{"short pad", v.HashKey, v.Pad[:8], v.N, v.Tag, v.Msg},
	}
	if !WCVerify(macKey(v.HashKey), macKey(v.Pad), v.N, v.Tag, v.Msg) {
		t.Fatal("WCVerify(vector) = false, want true")
	}
	for _, tt := range tests {
		if WCVerify(macKey(tt.r), macKey(tt.pad), tt.n, tt.tag, tt.msg) {
			t.Errorf("WCVerify(%s) = true, want false", tt.name)
		}
	}
}

// TestWCNumberIsNotMessage checks that the number is bound as a separate,
// fixed-length field: moving bytes between the number and the message
// changes nothing only when the hashed bytes are identical.
func TestWCNumberIsNotMessage(t *testing.T) {
	r, pad := macKey(make([]byte, HashKeySize)), macKey(make([]byte, PadSize))
	r.Expose()[0] = 3
	a, _ := WCSum(r, pad, 1, []byte("m"))
	b, _ := WCSum(r, pad, 2, []byte("m"))
	c, _ := WCSum(r, pad, 1, []byte("m\x00"))
	if a == b || a == c {
		t.Fatalf("tags of different (number, message) pairs collide: %x %x %x", a, b, c)
	}
}

func TestWCWrongLengths(t *testing.T) {
	tests := []struct{ r, pad int }{{0, 16}, {15, 16}, {17, 16}, {32, 16}, {16, 0}, {16, 15}, {16, 32}}
	for _, tt := range tests {
		_, err := WCSum(macKey(make([]byte, tt.r)), macKey(make([]byte, tt.pad)), 0, []byte("m"))
		if !errors.Is(err, ErrKeySize) {
			t.Errorf("WCSum(%d-byte hash key, %d-byte pad) error = %v, want ErrKeySize", tt.r, tt.pad, err)
		}
	}
}

func named(t *testing.T, vs []wcVector, prefix string) wcVector {
	t.Helper()
	for _, v := range vs {
		if strings.HasPrefix(v.Name, prefix) {
			return v
		}
	}
	t.Fatalf("no vector named %q...", prefix)
	return wcVector{}
}

func flipBit(b []byte, bit int) []byte {
	c := clone(b)
	c[bit/8] ^= 1 << (bit % 8)
	return c
}
