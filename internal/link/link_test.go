package link

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// pipe is an in-memory Transport to the other end's Mux, with hooks to
// tamper with, record or drop messages.
type pipe struct {
	to     *Mux
	mu     sync.Mutex
	tamper func(t kmsproto.Type, payload []byte) []byte
	sent   [][]byte
	down   atomic.Bool
}

func (p *pipe) Call(ctx context.Context, t kmsproto.Type, payload []byte) ([]byte, error) {
	if p.down.Load() {
		return nil, errors.New("pipe down")
	}
	p.mu.Lock()
	if p.tamper != nil {
		payload = p.tamper(t, payload)
	}
	p.sent = append(p.sent, bytes.Clone(payload))
	p.mu.Unlock()
	return p.to.Handle(ctx, t, payload)
}

func (p *pipe) Ping(context.Context) error {
	if p.down.Load() {
		return errors.New("pipe down")
	}
	return nil
}

type pair struct {
	a, b       *Link
	sa, sb     keystore.Store
	pa, pb     *pipe
	index      uint64
	cancel     context.CancelFunc
	wg         []*sync.WaitGroup
	localSAEsA map[qkd.SAEID]bool
}

func newPair(t *testing.T) *pair {
	t.Helper()
	psk := make([]byte, 64*keystore.SlotSize)
	_, _ = rand.Read(psk)
	p := &pair{sa: memstore.New(memstore.Options{}), sb: memstore.New(memstore.Options{}), pa: &pipe{}, pb: &pipe{}}
	mk := func(self, peer qkd.NodeID, st keystore.Store, tr Transport, local qkd.SAEID) *Link {
		l, err := New(Options{ID: "A-B", Self: self, Peer: peer, Store: st, Transport: tr,
			PSK: secret.PSK{Bytes: secret.From(psk)}, BatchBlocks: 4, BatchDelay: 20 * time.Millisecond,
			SlotLowWater: 8, SlotRefill: 16, RetryDelay: 5 * time.Millisecond, StatusInterval: time.Hour, Logger: testLogger(t),
			LocalSAE: func(s qkd.SAEID) bool { return s == local }})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
		return l
	}
	p.a = mk("A", "B", p.sa, p.pa, "SAE_A1")
	p.b = mk("B", "A", p.sb, p.pb, "SAE_B1")
	p.pa.to, p.pb.to = NewMux([]*Link{p.b}), NewMux([]*Link{p.a})
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg = append(p.wg, p.a.Start(ctx), p.b.Start(ctx))
	t.Cleanup(func() {
		cancel()
		for _, wg := range p.wg {
			wg.Wait()
		}
	})
	return p
}

// push gives both ends the same n blocks of size bytes; mutate may change B's copy.
func (p *pair) push(t *testing.T, n, size int, mutate func(i int, b []byte) (skipA, skipB bool)) {
	t.Helper()
	for i := 0; i < n; i++ {
		blk := make([]byte, size)
		_, _ = rand.Read(blk)
		bb := bytes.Clone(blk)
		var skipA, skipB bool
		if mutate != nil {
			skipA, skipB = mutate(i, bb)
		}
		ctx := context.Background()
		if !skipA {
			if err := p.a.Ingest(ctx, p.index, secret.From(blk)); err != nil {
				t.Fatal(err)
			}
		}
		if !skipB {
			if err := p.b.Ingest(ctx, p.index, secret.From(bb)); err != nil {
				t.Fatal(err)
			}
		}
		p.index++
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
	}
}

func stats(t *testing.T, s keystore.Store) keystore.LinkStats {
	t.Helper()
	st, err := s.Stats(context.Background(), "A-B")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func confirmed(t *testing.T, s keystore.Store) int64 {
	st := stats(t, s)
	return st.ConfirmedBytes[0] + st.ConfirmedBytes[1]
}

func TestConfirmAndReserveBothWays(t *testing.T) {
	p := newPair(t)
	p.push(t, 16, 1024, nil)
	want := int64(16*1024 - 4*checkKeyLen)
	waitFor(t, "confirmation", func() bool {
		return stats(t, p.sa).UnconfirmedBlocks == 0 && stats(t, p.sb).UnconfirmedBlocks == 0 && confirmed(t, p.sb) >= want-8*1024
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name          string
		from          *Link
		master, slave qkq
		fromStore     keystore.Store
		toStore       keystore.Store
	}{
		{"A allocates", p.a, qkq{"SAE_A1"}, qkq{"SAE_B1"}, p.sa, p.sb},
		{"B allocates", p.b, qkq{"SAE_B1"}, qkq{"SAE_A1"}, p.sb, p.sa},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := tc.from.Reserve(ctx, tc.master.id, []qkd.SAEID{tc.slave.id}, 256, 5, time.Hour)
			if err != nil {
				t.Fatalf("Reserve = %v", err)
			}
			mine, err := tc.fromStore.TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: tc.master.id, Caller: tc.master.id, Now: time.Now()})
			if err != nil {
				t.Fatalf("master TakeByID = %v", err)
			}
			theirs, err := tc.toStore.TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: tc.master.id, Caller: tc.slave.id, Now: time.Now()})
			if err != nil {
				t.Fatalf("slave TakeByID = %v", err)
			}
			for i := range ids {
				if !mine[i].Data.Equal(theirs[i].Data) || mine[i].Data.Len() != 32 {
					t.Fatalf("key %d differs between the ends", i)
				}
			}
		})
	}
}

type qkq struct{ id qkd.SAEID }

func TestBlockMismatchDiscardedAtBothEnds(t *testing.T) {
	p := newPair(t)
	p.push(t, 4, 512, func(i int, b []byte) (bool, bool) {
		if i == 2 {
			b[100] ^= 0x01
		}
		return false, false
	})
	waitFor(t, "batch handled", func() bool {
		return stats(t, p.sa).UnconfirmedBlocks == 0 && stats(t, p.sb).UnconfirmedBlocks == 0
	})
	if c := confirmed(t, p.sa) + confirmed(t, p.sb); c != 0 {
		t.Fatalf("mismatched batch left %d confirmed bytes", c)
	}
	p.push(t, 4, 512, nil)
	waitFor(t, "next batch confirmed", func() bool { return confirmed(t, p.sa) > 0 && confirmed(t, p.sb) > 0 })
	if a, b := confirmed(t, p.sa), confirmed(t, p.sb); a != b {
		t.Fatalf("confirmed bytes differ: A %d, B %d", a, b)
	}
}

func TestLostBlocksDiscarded(t *testing.T) {
	p := newPair(t)
	p.push(t, 8, 512, func(i int, b []byte) (bool, bool) {
		return i == 5, i == 2 // A lost block 5, B lost block 2
	})
	waitFor(t, "batches handled", func() bool {
		return stats(t, p.sa).UnconfirmedBlocks == 0 && stats(t, p.sb).UnconfirmedBlocks == 0
	})
	if a, b := confirmed(t, p.sa), confirmed(t, p.sb); a != b || a != int64(6*512-2*checkKeyLen) && a != int64(6*512-checkKeyLen*3) {
		t.Fatalf("confirmed bytes A %d, B %d; want equal and 6 blocks minus check keys", a, b)
	}
}

func TestTamperedAndReplayedMessagesRejected(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	// A flipped bit anywhere in the sealed message: rejected, no state change.
	var flipped atomic.Bool
	p.pa.mu.Lock()
	p.pa.tamper = func(tp kmsproto.Type, b []byte) []byte {
		if tp == kmsproto.DeleteKeys && flipped.CompareAndSwap(false, true) {
			c := bytes.Clone(b)
			c[len(c)/2] ^= 0x04
			return c
		}
		return b
	}
	p.pa.mu.Unlock()
	before := stats(t, p.sb)
	id, _ := qkd.NewKeyID(nil)
	_, err := p.a.DeleteAtPeer(ctx, []qkd.KeyID{id}, "test")
	if !errors.Is(err, ErrUnauthenticated) && !errors.Is(err, ErrBadRequest) {
		t.Fatalf("tampered delete_keys = %v, want rejected", err)
	}
	if after := stats(t, p.sb); after.KeysReady != before.KeysReady || after.UnconfirmedBlocks != before.UnconfirmedBlocks {
		t.Fatalf("tampered message changed state: %+v → %+v", before, after)
	}
	// An authentic message replayed: rejected.
	if _, err := p.a.DeleteAtPeer(ctx, []qkd.KeyID{id}, "test"); err != nil {
		t.Fatalf("honest delete_keys = %v", err)
	}
	p.pa.mu.Lock()
	last := p.pa.sent[len(p.pa.sent)-1]
	p.pa.mu.Unlock()
	if _, err := p.pa.to.Handle(ctx, kmsproto.DeleteKeys, last); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("replayed message = %v, want ErrUnauthenticated", err)
	}
	// The link still works after both.
	if _, err := p.a.DeleteAtPeer(ctx, []qkd.KeyID{id}, "test"); err != nil {
		t.Fatalf("delete_keys after the attacks = %v", err)
	}
}

func TestSlotsRefilledFromQKDMaterial(t *testing.T) {
	p := newPair(t)
	p.push(t, 32, 2048, nil)
	ctx := context.Background()
	id, _ := qkd.NewKeyID(nil)
	// Spend more slots than the PSK gave (32 per direction).
	for i := 0; i < 80; i++ {
		var err error
		waitFor(t, "a usable slot", func() bool {
			_, err = p.a.DeleteAtPeer(ctx, []qkd.KeyID{id}, "spend")
			return !errors.Is(err, ErrNoSlots)
		})
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	_, next, _, err := p.sa.SlotBounds(ctx, "A-B", "A")
	if err != nil || next <= 32 {
		t.Fatalf("SlotBounds(A) next = %d, %v; want refilled beyond the PSK's 32", next, err)
	}
}

func TestPeerDownDoesNotDrainSlots(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	id, _ := qkd.NewKeyID(nil)
	p.pa.down.Store(true)
	before := p.a.SlotsLeft()
	for i := 0; i < 50; i++ {
		if _, err := p.a.DeleteAtPeer(ctx, []qkd.KeyID{id}, "x"); !errors.Is(err, qkd.ErrPeerUnavailable) {
			t.Fatalf("call to a down peer = %v", err)
		}
	}
	if used := before - p.a.SlotsLeft(); used > 4 { // at most one per concurrent sender (status, confirm, outbox, this test)
		t.Fatalf("a down peer drained %d MAC slots", used)
	}
	p.pa.down.Store(false)
	if _, err := p.a.DeleteAtPeer(ctx, []qkd.KeyID{id}, "x"); err != nil {
		t.Fatalf("after the peer is back: %v", err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
