package link_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
)

var (
	masterA = qkd.SAEID("SAE_A1")
	slavesB = []qkd.SAEID{"SAE_B1"}
)

// readyPair returns a pair with confirmed material at both ends.
func readyPair(t *testing.T) *linktest.Pair {
	t.Helper()
	p := msgPair(t)
	p.Push(t, 16, 1024, nil)
	linktest.WaitFor(t, "confirmation", func() bool {
		return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Stats(t, p.SB).UnconfirmedBlocks == 0 &&
			linktest.Stats(t, p.SA).ConfirmedBytes[0] > 4096
	})
	return p
}

// reserve makes n keys of bits for SAE_A1 → SAE_B1, allocated by A.
func reserve(t *testing.T, p *linktest.Pair, bits, n int) []qkd.KeyID {
	t.Helper()
	ids, err := p.A.Reserve(context.Background(), masterA, slavesB, bits, n, time.Hour)
	if err != nil {
		t.Fatalf("Reserve = %v", err)
	}
	return ids
}

// pairKeys lists the Ready keys of SAE_A1 → SAE_B1 in a store.
func pairKeys(t *testing.T, s keystore.Store) []keystore.Key {
	t.Helper()
	keys, err := s.ListKeys(context.Background(), keystore.KeyFilter{Link: "A-B", Master: masterA, Slaves: slavesB})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// takeBoth takes keys by ID at both ends (master at A, slave at B) and
// returns the bytes of each end, concatenated.
func takeBoth(t *testing.T, p *linktest.Pair, ids []qkd.KeyID) (a, b []byte) {
	t.Helper()
	ctx := context.Background()
	get := func(s keystore.Store, caller qkd.SAEID) []byte {
		keys, err := s.TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: masterA, Caller: caller, Now: time.Now()})
		if err != nil {
			t.Fatalf("TakeByID(%s) = %v", caller, err)
		}
		var out []byte
		for _, k := range keys {
			out = append(out, k.Data.Expose()...)
			k.Data.Wipe()
		}
		return out
	}
	return get(p.SA, masterA), get(p.SB, slavesB[0])
}

// sameKeys fails unless both ends hold exactly the Ready keys want of the
// pair, each of bits.
func sameKeys(t *testing.T, p *linktest.Pair, want []qkd.KeyID, bits int) {
	t.Helper()
	for name, s := range map[string]keystore.Store{"A": p.SA, "B": p.SB} {
		keys := pairKeys(t, s)
		got := map[qkd.KeyID]bool{}
		for _, k := range keys {
			got[k.ID] = true
			if k.SizeBits != bits {
				t.Errorf("%s: key %s has %d bits, want %d", name, k.ID, k.SizeBits, bits)
			}
		}
		if len(keys) != len(want) {
			t.Errorf("%s holds %d keys of the pair, want %d", name, len(keys), len(want))
		}
		for _, id := range want {
			if !got[id] {
				t.Errorf("%s lacks key %s", name, id)
			}
		}
	}
}

func TestSplitAndMerge(t *testing.T) {
	tests := []struct {
		name     string
		bits, n  int // reserved first
		parts    int // split into (0: merge all)
		wantBits int
	}{
		{"split 512 into 2", 512, 1, 2, 256},
		{"split 1024 into 8", 1024, 1, 8, 128},
		{"merge 2×256", 256, 2, 0, 512},
		{"merge 4×128", 128, 4, 0, 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := readyPair(t)
			ctx := context.Background()
			old := reserve(t, p, tt.bits, tt.n)
			var nw []qkd.KeyID
			var err error
			if tt.parts > 0 {
				nw, err = p.A.Split(ctx, masterA, slavesB, old[0], tt.parts)
			} else {
				var id qkd.KeyID
				id, err = p.A.Merge(ctx, masterA, slavesB, old)
				nw = []qkd.KeyID{id}
			}
			if err != nil {
				t.Fatalf("resize = %v", err)
			}
			sameKeys(t, p, nw, tt.wantBits)
			a, b := takeBoth(t, p, nw)
			if !bytes.Equal(a, b) || len(a) != tt.bits*tt.n/8 {
				t.Fatalf("after the resize the ends hold %d and %d bytes, different", len(a), len(b))
			}
		})
	}
}

// TestResizeRetriesHarmless: a lost reply makes the outbox send the split
// again (the identical message); the peer, which applied it already,
// answers with its first reply without a second change. A replayed
// message gets that reply too; other bytes under its number are refused.
func TestResizeRetriesHarmless(t *testing.T) {
	for _, typ := range []kmsproto.Type{kmsproto.SplitKey, kmsproto.MergeKeys} {
		t.Run(string(typ), func(t *testing.T) {
			p := readyPair(t)
			ctx := context.Background()
			old := reserve(t, p, 512, 2)
			p.PA.DropReplies(typ, 2)
			var last atomic.Pointer[[]byte]
			p.PA.SetTamper(func(tp kmsproto.Type, b []byte) []byte {
				if tp == typ {
					c := bytes.Clone(b)
					last.Store(&c)
				}
				return b
			})
			var nw []qkd.KeyID
			var err error
			if typ == kmsproto.SplitKey {
				nw, err = p.A.Split(ctx, masterA, slavesB, old[0], 4)
				nw = append(nw, old[1])
			} else {
				var id qkd.KeyID
				id, err = p.A.Merge(ctx, masterA, slavesB, old)
				nw = []qkd.KeyID{id}
			}
			if err != nil {
				t.Fatalf("resize with lost replies = %v", err)
			}
			// Replay the successful repeat: its reply again, no second change.
			if _, err := p.PA.To.Handle(ctx, typ, *last.Load()); err != nil {
				t.Fatalf("replayed %s = %v, want its first reply", typ, err)
			}
			other := bytes.Clone(*last.Load())
			other[len(other)-1] ^= 0x01
			if _, err := p.PA.To.Handle(ctx, typ, other); !errors.Is(err, link.ErrUnauthenticated) {
				t.Fatalf("other bytes under the number of a %s = %v, want link.ErrUnauthenticated", typ, err)
			}
			bits := 128
			if typ == kmsproto.MergeKeys {
				bits = 1024
			}
			if typ == kmsproto.SplitKey {
				sameKeysMixed(t, p, nw)
			} else {
				sameKeys(t, p, nw, bits)
			}
			a, b := takeBoth(t, p, nw)
			if !bytes.Equal(a, b) || len(a) != 128 {
				t.Fatalf("ends hold %d and %d bytes after retries, want the same 128", len(a), len(b))
			}
		})
	}
}

// sameKeysMixed fails unless both ends hold exactly the keys want.
func sameKeysMixed(t *testing.T, p *linktest.Pair, want []qkd.KeyID) {
	t.Helper()
	for name, s := range map[string]keystore.Store{"A": p.SA, "B": p.SB} {
		var got []qkd.KeyID
		for _, k := range pairKeys(t, s) {
			got = append(got, k.ID)
		}
		if len(got) != len(want) || !sameSet(got, want) {
			t.Errorf("%s holds keys %v, want %v", name, got, want)
		}
	}
}

func sameSet(a, b []qkd.KeyID) bool {
	m := map[qkd.KeyID]int{}
	for _, id := range a {
		m[id]++
	}
	for _, id := range b {
		m[id]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestResizeTamperedRejected: a split whose bytes were changed on the way
// is rejected by the peer without any effect there; the new keys stay
// Pending (never delivered) here until an intact copy gets through.
func TestResizeTamperedRejected(t *testing.T) {
	p := readyPair(t)
	old := reserve(t, p, 512, 1)
	var tamper atomic.Bool
	tamper.Store(true)
	var rejected atomic.Int32
	p.PA.SetTamper(func(tp kmsproto.Type, b []byte) []byte {
		if tp != kmsproto.SplitKey || !tamper.Load() {
			return b
		}
		rejected.Add(1)
		c := bytes.Clone(b)
		c[len(c)-3] ^= 0x10 // in the tag or the body: the tag fails either way
		return c
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := p.A.Split(ctx, masterA, slavesB, old[0], 2); !errors.Is(err, qkd.ErrPeerUnavailable) {
		t.Fatalf("Split through a tampering pipe = %v, want qkd.ErrPeerUnavailable", err)
	}
	linktest.WaitFor(t, "a tampered split_key", func() bool { return rejected.Load() > 0 })
	// B still holds exactly the old key; A holds no deliverable key.
	if got := pairKeys(t, p.SB); len(got) != 1 || got[0].ID != old[0] || got[0].SizeBits != 512 {
		t.Fatalf("B after a tampered split holds %v, want the old key alone", got)
	}
	if got := pairKeys(t, p.SA); len(got) != 0 {
		t.Fatalf("A delivers %d keys before the peer confirmed the split", len(got))
	}
	tamper.Store(false)
	linktest.WaitFor(t, "the split to complete", func() bool { return len(pairKeys(t, p.SA)) == 2 })
	keys := pairKeys(t, p.SA)
	sameKeys(t, p, []qkd.KeyID{keys[0].ID, keys[1].ID}, 256)
	a, b := takeBoth(t, p, []qkd.KeyID{keys[0].ID, keys[1].ID})
	if !bytes.Equal(a, b) {
		t.Fatal("ends differ after the split went through")
	}
}

// TestResizeRefusedByPeer: a peer that no longer holds the key refuses;
// the split is dropped here too, so no end can deliver it.
func TestResizeRefusedByPeer(t *testing.T) {
	p := readyPair(t)
	ctx := context.Background()
	old := reserve(t, p, 512, 1)
	if n, err := p.SB.DeleteKeys(ctx, old); n != 1 || err != nil {
		t.Fatalf("DeleteKeys at B = %d, %v", n, err)
	}
	_, err := p.A.Split(ctx, masterA, slavesB, old[0], 2)
	var ref *link.RefusedError
	if !errors.As(err, &ref) || ref.Code != kmsproto.BadRequest {
		t.Fatalf("Split of a key the peer lacks = %v, want a bad_request refusal", err)
	}
	sameKeys(t, p, nil, 0)
	if st := linktest.Stats(t, p.SA); st.KeysPending != 0 {
		t.Errorf("A keeps %d pending keys of a refused split", st.KeysPending)
	}
}

func TestResizeLocalChecks(t *testing.T) {
	p := readyPair(t)
	ctx := context.Background()
	old := reserve(t, p, 256, 1)
	unknown, _ := qkd.NewKeyID(nil)
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"split into 1", func() error { _, err := p.A.Split(ctx, masterA, slavesB, old[0], 1); return err }, nil},
		{"split into 3", func() error { _, err := p.A.Split(ctx, masterA, slavesB, old[0], 3); return err }, keystore.ErrBadAllocation},
		{"split unknown key", func() error { _, err := p.A.Split(ctx, masterA, slavesB, unknown, 2); return err }, qkd.ErrNotFound},
		{"merge one key", func() error { _, err := p.A.Merge(ctx, masterA, slavesB, old); return err }, nil},
		{"other pair", func() error {
			_, err := p.A.Merge(ctx, masterA, []qkd.SAEID{"SAE_X"}, []qkd.KeyID{old[0], unknown})
			return err
		}, qkd.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("= %v, want %v", err, tt.want)
			}
		})
	}
	sameKeys(t, p, old, 256)
	if box, err := p.SA.PendingOutbox(ctx, "A-B"); err != nil || len(box) != 0 {
		t.Fatalf("refused resizes left %d outbox entries, %v", len(box), err)
	}
}

// msgPair is a pair of link ends with the default MAC scheme.
func msgPair(t *testing.T) *linktest.Pair {
	return linktest.NewPair(t, linktest.Options{Logger: testLogger(t)})
}
