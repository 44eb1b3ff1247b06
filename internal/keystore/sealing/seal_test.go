package sealing

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/secret"
)

func kekOf(b byte) secret.KEK {
	k := make([]byte, KEKSize)
	for i := range k {
		k[i] = b
	}
	return secret.KEK{Bytes: secret.Adopt(k)}
}

// ring returns a keyring holding epochs, each with a KEK of its own byte,
// the last one current.
func ring(t testing.TB, epochs ...uint32) *Keyring {
	t.Helper()
	r := New()
	t.Cleanup(r.Wipe)
	for _, e := range epochs {
		if err := r.Add(e, kekOf(byte(e))); err != nil {
			t.Fatal(err)
		}
		r.SetCurrent(e)
	}
	return r
}

func rowAD(seq uint64) []byte { return AD("slots").Str("L").Str("A").U64(seq) }

func TestSealFormat(t *testing.T) {
	r := ring(t, 3)
	pt := []byte("sixteen byte key")
	sealed, err := r.Seal(rand.Reader, 3, pt, rowAD(1))
	if err != nil {
		t.Fatal(err)
	}
	if sealed[0] != Version || binary.BigEndian.Uint32(sealed[1:5]) != 3 || len(sealed) != HeaderSize+len(pt)+16 || len(sealed) != Overhead+len(pt) {
		t.Fatalf("Seal() = version %d epoch %d length %d; want 1, 3, %d", sealed[0], binary.BigEndian.Uint32(sealed[1:5]), len(sealed), HeaderSize+len(pt)+16)
	}
	if e, err := Epoch(sealed); e != 3 || err != nil {
		t.Errorf("Epoch(sealed) = %d, %v; want 3", e, err)
	}
	got, err := r.Open(sealed, rowAD(1))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open(Seal(x)) = %q, %v", got, err)
	}
	again, _ := r.Seal(rand.Reader, 3, pt, rowAD(1))
	if bytes.Equal(again[5:HeaderSize], sealed[5:HeaderSize]) {
		t.Error("two Seals used the same nonce")
	}
}

func TestSealRoundTrip(t *testing.T) {
	r := ring(t, 1, 2, 7)
	for _, tt := range []struct {
		name  string
		epoch uint32
		pt    []byte
		ad    []byte
	}{
		{"empty plaintext, no AD", 1, nil, nil},
		{"one byte", 2, []byte{0}, rowAD(0)},
		{"a key", 7, bytes.Repeat([]byte{0xA5}, 32), AD("keys").Bytes(make([]byte, 16)).Str("L").U64(256)},
		{"a large record", 7, bytes.Repeat([]byte("relay "), 1<<16), AD("relay").Str("step").U64(99)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := r.Seal(rand.Reader, tt.epoch, tt.pt, tt.ad)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Open(sealed, tt.ad)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.pt, got, cmp.Comparer(bytes.Equal)); diff != "" {
				t.Errorf("Open(Seal(x)) differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	r := ring(t, 3, 4)
	sealed, err := r.Seal(rand.Reader, 3, []byte("sixteen byte key"), rowAD(1))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) func() []byte {
		return func() []byte {
			c := bytes.Clone(sealed)
			c[(i+len(c))%len(c)] ^= 1
			return c
		}
	}
	same := func() []byte { return sealed }
	tests := []struct {
		name   string
		sealed func() []byte
		ad     []byte
	}{
		{"other row", same, rowAD(2)},
		{"other table", same, AD("keys").Str("L").Str("A").U64(1)},
		{"no AD", same, nil},
		{"AD with a byte more", same, append(rowAD(1), 0)},
		{"epoch changed to one held", func() []byte { c := bytes.Clone(sealed); c[4] = 4; return c }, rowAD(1)},
		{"epoch changed to one not held", func() []byte { c := bytes.Clone(sealed); c[1] = 1; return c }, rowAD(1)},
		{"version changed", func() []byte { c := bytes.Clone(sealed); c[0] = 2; return c }, rowAD(1)},
		{"nonce flipped", flip(10), rowAD(1)},
		{"ciphertext flipped", flip(-20), rowAD(1)},
		{"tag flipped", flip(-1), rowAD(1)},
		{"truncated to the header", func() []byte { return sealed[:HeaderSize] }, rowAD(1)},
		{"shorter than a header", func() []byte { return sealed[:HeaderSize-1] }, rowAD(1)},
		{"empty", func() []byte { return nil }, rowAD(1)},
		{"a byte appended", func() []byte { return append(bytes.Clone(sealed), 0) }, rowAD(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := r.Open(tt.sealed(), tt.ad); !errors.Is(err, ErrSealed) || got != nil {
				t.Errorf("Open = %q, %v; want ErrSealed", got, err)
			}
		})
	}
}

func TestEpochs(t *testing.T) {
	r := ring(t, 5, 2, 9)
	if got := r.Epochs(); !cmp.Equal(got, []uint32{2, 5, 9}) {
		t.Errorf("Epochs() = %v, want [2 5 9]", got)
	}
	if r.Latest() != 9 || r.Current() != 9 || !r.Has(5) || r.Has(3) {
		t.Errorf("Latest, Current, Has(5), Has(3) = %d, %d, %v, %v", r.Latest(), r.Current(), r.Has(5), r.Has(3))
	}
	if New().Latest() != 0 || New().Current() != 0 {
		t.Error("an empty keyring has an epoch")
	}
}

func TestSealUnknownEpoch(t *testing.T) {
	r := ring(t, 1)
	for _, e := range []uint32{0, 2, 1 << 31} {
		if got, err := r.Seal(rand.Reader, e, []byte("x"), nil); err == nil || got != nil {
			t.Errorf("Seal(epoch %d) = %x, %v; want an error", e, got, err)
		}
	}
}

func TestSealShortRandom(t *testing.T) {
	r := ring(t, 1)
	if _, err := r.Seal(bytes.NewReader(make([]byte, NonceSize-1)), 1, []byte("x"), nil); err == nil {
		t.Error("Seal with a short nonce source = nil error")
	}
}

func TestKeepOnly(t *testing.T) {
	r := ring(t, 1, 2, 3)
	sealed := map[uint32][]byte{}
	for _, e := range r.Epochs() {
		sealed[e], _ = r.Seal(rand.Reader, e, []byte("pt"), rowAD(uint64(e)))
	}
	r.KeepOnly(2)
	if got := r.Epochs(); !cmp.Equal(got, []uint32{2}) || r.Current() != 3 {
		t.Fatalf("after KeepOnly(2): epochs %v, current %d; want [2], 3 (current unchanged)", got, r.Current())
	}
	for e, s := range sealed {
		_, err := r.Open(s, rowAD(uint64(e)))
		if e == 2 && err != nil {
			t.Errorf("Open(epoch 2) after KeepOnly(2) = %v", err)
		}
		if e != 2 && !errors.Is(err, ErrSealed) {
			t.Errorf("Open(epoch %d) after KeepOnly(2) = %v, want ErrSealed", e, err)
		}
	}
}

func TestWipe(t *testing.T) {
	r := New()
	kek := kekOf(7)
	if err := r.Add(1, kek); err != nil {
		t.Fatal(err)
	}
	r.SetCurrent(1)
	sealed, _ := r.Seal(rand.Reader, 1, []byte("pt"), nil)
	r.Wipe()
	if len(r.Epochs()) != 0 || r.Current() != 0 || r.Latest() != 0 {
		t.Errorf("after Wipe: epochs %v, current %d", r.Epochs(), r.Current())
	}
	wantDestroyed(t, "Wipe", r, kek, sealed)
}

// wantDestroyed checks, after what, that kek's bytes are zero and that
// sealed (sealed under kek) no longer opens with r.
func wantDestroyed(t *testing.T, what string, r *Keyring, kek secret.KEK, sealed []byte) {
	t.Helper()
	if !bytes.Equal(kek.Expose(), make([]byte, KEKSize)) {
		t.Errorf("%s left the KEK's bytes in place", what)
	}
	if _, err := r.Open(sealed, nil); !errors.Is(err, ErrSealed) {
		t.Errorf("Open after %s = %v, want ErrSealed", what, err)
	}
}

func TestAddReplaces(t *testing.T) {
	r := New()
	defer r.Wipe()
	old := kekOf(1)
	if err := r.Add(1, old); err != nil {
		t.Fatal(err)
	}
	sealed, _ := r.Seal(rand.Reader, 1, []byte("pt"), nil)
	if err := r.Add(1, kekOf(2)); err != nil {
		t.Fatal(err)
	}
	wantDestroyed(t, "Add over an epoch", r, old, sealed)
}

func TestAddBadKEK(t *testing.T) {
	r := New()
	short := secret.KEK{Bytes: secret.Adopt(bytes.Repeat([]byte{9}, KEKSize-1))}
	if err := r.Add(1, short); err == nil {
		t.Fatal("Add(short KEK) = nil error")
	}
	if !bytes.Equal(short.Expose(), make([]byte, KEKSize-1)) || r.Has(1) {
		t.Error("a refused KEK was kept or not wiped")
	}
}

func TestErrorsHoldNoKeyBytes(t *testing.T) {
	r := ring(t, 1)
	sealed, _ := r.Seal(rand.Reader, 1, []byte("AAAAAAAAAAAAAAAA"), nil)
	sealed[len(sealed)-1] ^= 1
	_, err := r.Open(sealed, nil)
	if err == nil || strings.Contains(err.Error(), "AAAA") {
		t.Errorf("Open(tampered) error = %v", err)
	}
}

// TestADEncoding: different fields never encode the same.
func TestADEncoding(t *testing.T) {
	encodings := map[string]string{
		"slots L A 1":  string(AD("slots").Str("L").Str("A").U64(1)),
		"slots LA _ 1": string(AD("slots").Str("LA").Str("").U64(1)),
		"slotsL A 1":   string(AD("slotsL").Str("A").U64(1)),
		"keys L A 1":   string(AD("keys").Str("L").Str("A").U64(1)),
		"slots L A 2":  string(AD("slots").Str("L").Str("A").U64(2)),
		"slots L 1":    string(AD("slots").Str("L").U64(1)),
		"bytes = str":  string(AD("slots").Bytes([]byte("L")).Bytes([]byte("A")).U64(1)),
	}
	seen := map[string]string{}
	for name, enc := range encodings {
		if other, dup := seen[enc]; dup && name != "bytes = str" && other != "bytes = str" {
			t.Errorf("%q and %q encode the same", name, other)
		}
		seen[enc] = name
	}
	if encodings["bytes = str"] != encodings["slots L A 1"] {
		t.Error("Bytes and Str of the same content encode differently")
	}
	want := []byte{5, 's', 'l', 'o', 't', 's', 1, 'L', 0, 0, 0, 0, 0, 0, 1, 2}
	if got := AD("slots").Str("L").U64(0x102); !bytes.Equal(got, want) {
		t.Errorf("AD encoding = %x, want %x", got, want)
	}
}

// FuzzOpen: Open of arbitrary bytes never panics, and only a value that
// authenticates opens.
func FuzzOpen(f *testing.F) {
	r := New()
	if err := r.Add(1, kekOf(1)); err != nil {
		f.Fatal(err)
	}
	// A fixed nonce: fuzzing workers are separate processes and must
	// agree on the one value that opens.
	good, err := r.Seal(bytes.NewReader(make([]byte, NonceSize)), 1, []byte("sixteen byte key"), rowAD(1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte(rowAD(1)))
	f.Add(good[:HeaderSize], []byte(nil))
	f.Add([]byte{Version, 0, 0, 0, 1}, []byte{})
	f.Add([]byte{}, []byte("x"))
	f.Fuzz(func(t *testing.T, sealed, ad []byte) {
		pt, err := r.Open(sealed, ad)
		if err != nil {
			if !errors.Is(err, ErrSealed) || pt != nil {
				t.Fatalf("Open = %q, %v; want nil, ErrSealed", pt, err)
			}
			return
		}
		if !bytes.Equal(sealed, good) || !bytes.Equal(ad, rowAD(1)) {
			t.Fatalf("Open accepted a value never sealed: %x (AD %x)", sealed, ad)
		}
	})
}
