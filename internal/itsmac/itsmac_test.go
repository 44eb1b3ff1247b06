package itsmac

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestSumKnownAnswers(t *testing.T) {
	for _, v := range loadJSON[polyVector](t, "poly1305_rfc8439.json") {
		t.Run(v.Name, func(t *testing.T) {
			if got := refPoly1305(v.Key, v.Msg); string(got[:]) != string(v.Tag) {
				t.Fatalf("reference Poly1305 = %x, want %x (vector or reference is wrong)", got, v.Tag)
			}
			key := macKey(v.Key)
			defer key.Wipe()
			for i, parts := range splits(v.Msg) {
				got, err := Sum(key, parts...)
				if err != nil || string(got[:]) != string(v.Tag) {
					t.Errorf("Sum(split %d) = %x, %v; want %x", i, got, err, []byte(v.Tag))
				}
				if !Verify(key, v.Tag, parts...) {
					t.Errorf("Verify(split %d) = false, want true", i)
				}
			}
		})
	}
}

func TestSumMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{'i', 't', 's'}))
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 1000} {
		for range 20 {
			k, msg := randBytes(rng, KeySize), randBytes(rng, n)
			got, err := Sum(macKey(k), msg)
			if want := refPoly1305(k, msg); err != nil || got != want {
				t.Fatalf("Sum(%x, %d bytes %x) = %x, %v; want %x", k, n, msg, got, err, want)
			}
		}
	}
}

func TestVerifyRejectsFlippedBits(t *testing.T) {
	v := loadJSON[polyVector](t, "poly1305_rfc8439.json")[0] // §2.5.2
	key := macKey(v.Key)
	tests := []struct {
		name  string
		bits  int
		which func(msg, tag []byte) []byte // the buffer to flip a bit in
	}{
		{"msg", 8 * len(v.Msg), func(msg, _ []byte) []byte { return msg }},
		{"tag", 8 * len(v.Tag), func(_, tag []byte) []byte { return tag }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for bit := range tt.bits {
				msg, tag := clone(v.Msg), clone(v.Tag)
				tt.which(msg, tag)[bit/8] ^= 1 << (bit % 8)
				if Verify(key, tag, msg) {
					t.Fatalf("Verify with %s bit %d flipped = true, want false", tt.name, bit)
				}
			}
		})
	}
}

func TestWrongLengths(t *testing.T) {
	good := make([]byte, KeySize)
	tag, _ := Sum(macKey(good), []byte("m"))
	for _, n := range []int{0, 1, 16, 31, 33, 64} {
		key := macKey(make([]byte, n))
		if _, err := Sum(key, []byte("m")); !errors.Is(err, ErrKeySize) {
			t.Errorf("Sum(%d-byte key) error = %v, want ErrKeySize", n, err)
		}
		if Verify(key, tag[:], []byte("m")) {
			t.Errorf("Verify(%d-byte key) = true, want false", n)
		}
	}
	for _, n := range []int{0, 15, 17, 32} {
		if Verify(macKey(good), make([]byte, n), []byte("m")) {
			t.Errorf("Verify(%d-byte tag) = true, want false", n)
		}
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
