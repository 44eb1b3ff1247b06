package sqlite

import (
	"testing"

	"github.com/qkms/qkms/internal/keystore/storetest"
)

func BenchmarkTakeForPair(b *testing.B) { storetest.BenchTakeForPair(b, openAt(b, b.TempDir())) }

func BenchmarkAddBlock(b *testing.B) { storetest.BenchAddBlock(b, openAt(b, b.TempDir())) }

func FuzzParseKEK(f *testing.F) {
	ring := newKeyring()
	if err := ring.add(7, kekOf(1)); err != nil {
		f.Fatal(err)
	}
	f.Add(marshalKEK(ring))
	f.Add([]byte(kekMagic))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := parseKEK(raw)
		if err != nil {
			return
		}
		defer r.wipe()
		again, err := parseKEK(marshalKEK(r))
		if err != nil || again.current != r.current || len(again.epochs) != len(r.epochs) {
			t.Fatalf("parseKEK(marshalKEK(x)) = %v, %v", again, err)
		}
		again.wipe()
	})
}
