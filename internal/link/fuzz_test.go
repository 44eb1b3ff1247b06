package link_test

import (
	"context"
	"testing"

	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link/linktest"
)

// FuzzMuxHandle feeds arbitrary payloads to a live link end, under each MAC
// scheme: nothing panics, and nothing unauthenticated is accepted.
func FuzzMuxHandle(f *testing.F) {
	ctx := context.Background()
	pairs := []*linktest.Pair{
		linktest.NewPair(f, linktest.Options{MAC: itsmac.SchemePoly1305}),
		linktest.NewPair(f, linktest.Options{MAC: itsmac.SchemeWegmanCarter, MACEpoch: 16}),
	}
	// Seeds: real messages captured from the wire, and their corruptions.
	for i, p := range pairs {
		for range 2 { // both halves of a Wegman–Carter slot
			if _, err := p.A.DeleteAtPeer(ctx, nil, "seed"); err != nil {
				f.Fatal(err)
			}
			good := p.PA.LastOf(kmsproto.DeleteKeys)
			f.Add(uint8(i), uint8(4), good)
			f.Add(uint8(i), uint8(0), good[:len(good)/2])
		}
	}
	f.Add(uint8(1), uint8(9), []byte{0x82, 0x40, 0x50})
	f.Fuzz(func(t *testing.T, mode, typ uint8, payload []byte) {
		p := pairs[int(mode)%len(pairs)]
		mt := kmsproto.Types[int(typ)%len(kmsproto.Types)]
		out, err := p.PA.To.Handle(ctx, mt, payload)
		if err == nil && len(out) == 0 {
			t.Fatalf("Handle accepted a message without a reply")
		}
		if err == nil {
			// Only an authentic, never-seen message could be accepted, and
			// the fuzzer cannot forge a one-time tag.
			t.Fatalf("Handle accepted a fuzzed message")
		}
	})
}
