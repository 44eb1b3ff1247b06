package itsmac

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestWCKnownAnswers(t *testing.T) {
	for _, v := range loadJSON[wcVector](t, "wegman_carter.json") {
		t.Run(v.Name, func(t *testing.T) {
			if got := refWC(v.HashKey, v.Mask, v.Msg); string(got[:]) != string(v.Tag) {
				t.Fatalf("reference h_r(m) XOR mask = %x, want %x (vector or reference is wrong)", got, v.Tag)
			}
			r, mask := macKey(v.HashKey), macKey(v.Mask)
			for i, parts := range splits(v.Msg) {
				got, err := WCSum(r, mask, parts...)
				if err != nil || string(got[:]) != string(v.Tag) {
					t.Errorf("WCSum(split %d) = %x, %v; want %x", i, got, err, []byte(v.Tag))
				}
				if !WCVerify(r, mask, v.Tag, parts...) {
					t.Errorf("WCVerify(split %d) = false, want true", i)
				}
			}
		})
	}
}

// TestWCDefinition checks the definition tag = h_r(m) ⊕ k_i against the
// reference and against Poly1305 with s = 0, and shows that Poly1305 with
// s = k_i is the different, additive combination (h_r(m) + k_i) mod 2^128.
func TestWCDefinition(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{'w', 'c'}))
	differ := 0
	for _, n := range []int{0, 1, 16, 17, 64, 333} {
		for range 20 {
			r, mask, msg := randBytes(rng, HashKeySize), randBytes(rng, MaskSize), randBytes(rng, n)
			got, err := WCSum(macKey(r), macKey(mask), msg)
			if want := refWC(r, mask, msg); err != nil || got != want {
				t.Fatalf("WCSum(%x, %x, %x) = %x, %v; want %x", r, mask, msg, got, err, want)
			}
			h, _ := Sum(macKey(append(clone(r), make([]byte, 16)...)), msg)
			for i := range h {
				h[i] ^= mask[i]
			}
			if got != h {
				t.Fatalf("WCSum = %x, Poly1305(r‖0) XOR mask = %x", got, h)
			}
			plus, _ := Sum(macKey(append(clone(r), mask...)), msg)
			sum := new(big.Int).Add(refHash(r, msg), leInt(mask))
			if want := refTag(sum); plus != want {
				t.Fatalf("Poly1305(r‖mask) = %x, want (h + mask) mod 2^128 = %x", plus, want)
			}
			if plus != got {
				differ++
			}
		}
	}
	if differ == 0 {
		t.Error("XOR and additive combinations never differed; the test is not telling them apart")
	}
}

func TestWCRejects(t *testing.T) {
	// Not an r = 0 vector (A.3 #1, #2): h_0 ignores the message.
	v := named(t, loadJSON[wcVector](t, "wegman_carter.json"), "RFC 8439 §2.5.2 r and s")
	r, mask := macKey(v.HashKey), macKey(v.Mask)
	otherMask := clone(v.Mask)
	otherMask[0] ^= 1
	tests := []struct {
		name     string
		r, mask  []byte
		tag, msg []byte
	}{
		{"msg bit", v.HashKey, v.Mask, v.Tag, flipBit(v.Msg, 100)},
		{"tag bit", v.HashKey, v.Mask, flipBit(v.Tag, 127), v.Msg},
		{"other mask", v.HashKey, otherMask, v.Tag, v.Msg},
		{"other hash key", flipBit(v.HashKey, 9), v.Mask, v.Tag, v.Msg},
		{"short tag", v.HashKey, v.Mask, v.Tag[:15], v.Msg},
		{"long hash key", append(clone(v.HashKey), 0), v.Mask, v.Tag, v.Msg},
		{"short mask", v.HashKey, v.Mask[:8], v.Tag, v.Msg},
	}
	if !WCVerify(r, mask, v.Tag, v.Msg) {
		t.Fatal("WCVerify(vector) = false, want true")
	}
	for _, tt := range tests {
		if WCVerify(macKey(tt.r), macKey(tt.mask), tt.tag, tt.msg) {
			t.Errorf("WCVerify(%s) = true, want false", tt.name)
		}
	}
}

func TestWCWrongLengths(t *testing.T) {
	tests := []struct{ r, mask int }{{0, 16}, {15, 16}, {17, 16}, {32, 16}, {16, 0}, {16, 15}, {16, 32}}
	for _, tt := range tests {
		_, err := WCSum(macKey(make([]byte, tt.r)), macKey(make([]byte, tt.mask)), []byte("m"))
		if !errors.Is(err, ErrKeySize) {
			t.Errorf("WCSum(%d-byte hash key, %d-byte mask) error = %v, want ErrKeySize", tt.r, tt.mask, err)
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
