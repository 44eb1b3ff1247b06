package link_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link/linktest"
)

// FuzzMuxHandle feeds arbitrary payloads to a live link end, under each MAC
// scheme: nothing panics, and nothing unauthenticated is accepted. The
// only payloads answered are exact copies of authentic messages (with
// their first reply, from the reply cache) and messages under a number
// the end holds no key for (with a kmsproto.SeqGone notice naming them,
// which runs nothing).
func FuzzMuxHandle(f *testing.F) {
	ctx := context.Background()
	pairs := []*linktest.Pair{
		linktest.NewPair(f, linktest.Options{MAC: itsmac.SchemePoly1305}),
		linktest.NewPair(f, linktest.Options{MAC: itsmac.SchemeWegmanCarter, MACEpoch: 16}),
	}
	// Seeds: real messages captured from the wire, and their corruptions;
	// replies[payload] is the reply each got.
	replies := map[string][]byte{}
	for i, p := range pairs {
		for range 2 { // both halves of a Wegman–Carter slot
			if _, err := p.A.DeleteAtPeer(ctx, nil, "seed"); err != nil {
				f.Fatal(err)
			}
			good := p.PA.LastOf(kmsproto.DeleteKeys)
			rep, err := p.PA.To.Handle(ctx, kmsproto.DeleteKeys, good) // answered from the reply cache
			if err != nil {
				f.Fatal(err)
			}
			replies[string(good)] = rep
			f.Add(uint8(i), uint8(4), good)
			f.Add(uint8(i), uint8(0), good[:len(good)/2])
		}
	}
	f.Add(uint8(1), uint8(9), []byte{0x82, 0x40, 0x50})
	f.Fuzz(func(t *testing.T, mode, typ uint8, payload []byte) {
		p := pairs[int(mode)%len(pairs)]
		mt := kmsproto.Types[int(typ)%len(kmsproto.Types)]
		out, err := p.PA.To.Handle(ctx, mt, payload)
		if err != nil {
			return
		}
		if len(out) == 0 {
			t.Fatalf("Handle accepted a message without a reply")
		}
		if rep, ok := replies[string(payload)]; ok && mt == kmsproto.DeleteKeys {
			if !bytes.Equal(out, rep) {
				t.Fatalf("a copy of an authentic message got another reply than the first")
			}
			return
		}
		// Only an authentic, never-seen message could be accepted, and
		// the fuzzer cannot forge a one-time tag: anything else answered
		// must be a SeqGone notice for exactly this message.
		g, gerr := kmsproto.DecodeSeqGone(out)
		if gerr != nil {
			t.Fatalf("Handle accepted a fuzzed message")
		}
		s, serr := kmsproto.DecodeSealed(payload)
		h, herr := kmsproto.DecodeHeader(s.Data)
		sum := sha256.Sum256(append(bytes.Clone(s.Data), s.Tag...))
		if serr != nil || herr != nil || g.Seq != h.Seq || g.Type != mt || !bytes.Equal(g.Hash, sum[:]) {
			t.Fatalf("SeqGone notice %+v does not name the message it answers", g)
		}
	})
}
