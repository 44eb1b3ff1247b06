package link_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"bytes"

	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
)

const checkKeyLen = 32

// macModes are the ITS MAC schemes every link test runs under. The
// Wegman–Carter epoch is short so that tests cross epochs.
var macModes = []struct {
	name string
	o    linktest.Options
}{
	{"poly1305", linktest.Options{MAC: itsmac.SchemePoly1305}},
	{"wegman_carter", linktest.Options{MAC: itsmac.SchemeWegmanCarter, MACEpoch: 16}},
}

// forModes runs f once per MAC scheme, each with a fresh pair made from o
// and the mode's settings.
func forModes(t *testing.T, o linktest.Options, f func(t *testing.T, p *linktest.Pair)) {
	for _, m := range macModes {
		t.Run(m.name, func(t *testing.T) {
			o := o
			o.MAC, o.MACEpoch, o.Logger = m.o.MAC, m.o.MACEpoch, testLogger(t)
			f(t, linktest.NewPair(t, o))
		})
	}
}

func TestConfirmAndReserveBothWays(t *testing.T) {
	forModes(t, linktest.Options{}, func(t *testing.T, p *linktest.Pair) {
		p.Push(t, 16, 1024, nil)
		want := int64(16*1024 - 4*checkKeyLen)
		linktest.WaitFor(t, "confirmation", func() bool {
			return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Stats(t, p.SB).UnconfirmedBlocks == 0 && linktest.Confirmed(t, p.SB) >= want-8*1024
		})
		ctx := context.Background()
		for _, tc := range []struct {
			name          string
			from          *link.Link
			master, slave qkq
			fromStore     keystore.Store
			toStore       keystore.Store
		}{
			{"A allocates", p.A, qkq{"SAE_A1"}, qkq{"SAE_B1"}, p.SA, p.SB},
			{"B allocates", p.B, qkq{"SAE_B1"}, qkq{"SAE_A1"}, p.SB, p.SA},
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
	})
}

type qkq struct{ id qkd.SAEID }

func TestBlockMismatchDiscardedAtBothEnds(t *testing.T) {
	forModes(t, linktest.Options{}, func(t *testing.T, p *linktest.Pair) {
		// Every block differs at B: the leader may send its first batch
		// before all four blocks are in (it does not wait while the link
		// has no material), so any of them can end up in any batch.
		p.Push(t, 4, 512, func(i int, b []byte) (bool, bool) {
			b[100+i] ^= 0x01
			return false, false
		})
		linktest.WaitFor(t, "batch handled", func() bool {
			return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Stats(t, p.SB).UnconfirmedBlocks == 0
		})
		if c := linktest.Confirmed(t, p.SA) + linktest.Confirmed(t, p.SB); c != 0 {
			t.Fatalf("mismatched batch left %d confirmed bytes", c)
		}
		p.Push(t, 4, 512, nil)
		linktest.WaitFor(t, "next batch confirmed", func() bool { return linktest.Confirmed(t, p.SA) > 0 && linktest.Confirmed(t, p.SB) > 0 })
		if a, b := linktest.Confirmed(t, p.SA), linktest.Confirmed(t, p.SB); a != b {
			t.Fatalf("confirmed bytes differ: A %d, B %d", a, b)
		}
	})
}

func TestLostBlocksDiscarded(t *testing.T) {
	forModes(t, linktest.Options{}, func(t *testing.T, p *linktest.Pair) {
		p.Push(t, 8, 512, func(i int, b []byte) (bool, bool) {
			return i == 5, i == 2 // A lost block 5, B lost block 2
		})
		linktest.WaitFor(t, "batches handled", func() bool {
			return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Stats(t, p.SB).UnconfirmedBlocks == 0
		})
		// A batch answered "missing" also loses its first block at both
		// ends (its check key tagged a list that no longer exists), unless
		// that block was the lost one: 6 or 5 blocks stay, each batch
		// confirmed spends a check key.
		a, b := linktest.Confirmed(t, p.SA), linktest.Confirmed(t, p.SB)
		var want []int64
		for _, blocks := range []int64{6, 5} {
			for _, batches := range []int64{1, 2, 3} { // a backlog goes in one batch
				want = append(want, blocks*512-batches*checkKeyLen)
			}
		}
		if a != b || !slices.Contains(want, a) {
			t.Fatalf("confirmed bytes A %d, B %d; want equal and one of %v (5 or 6 blocks minus check keys)", a, b, want)
		}
	})
}

func TestTamperedAndReplayedMessagesRejected(t *testing.T) {
	forModes(t, linktest.Options{}, func(t *testing.T, p *linktest.Pair) {
		ctx := context.Background()
		// A flipped bit anywhere in the sealed message: rejected, no state change.
		var flipped atomic.Bool
		p.PA.SetTamper(func(tp kmsproto.Type, b []byte) []byte {
			if tp == kmsproto.DeleteKeys && flipped.CompareAndSwap(false, true) {
				c := bytes.Clone(b)
				c[len(c)/2] ^= 0x04
				return c
			}
			return b
		})
		// Both ends poll each other's status once at start: let that happen
		// first, so that slot counts change only by this test's messages.
		// A first poll that failed (the peer not serving yet) leaves Err
		// set and is retried: wait for both ends to have heard the other
		// without error, after which nothing polls for an hour.
		linktest.WaitFor(t, "initial get_status", func() bool {
			a, b := p.A.PeerStatus(), p.B.PeerStatus()
			return !a.LastSeen.IsZero() && a.Err == "" && !b.LastSeen.IsZero() && b.Err == ""
		})
		before := linktest.Stats(t, p.SB)
		_, _, slotsBefore, _ := p.SB.SlotBounds(ctx, "A-B", "A")
		id, _ := qkd.NewKeyID(nil)
		_, err := p.A.DeleteAtPeer(ctx, []qkd.KeyID{id}, "test")
		if !errors.Is(err, link.ErrUnauthenticated) && !errors.Is(err, link.ErrBadRequest) {
			t.Fatalf("tampered delete_keys = %v, want rejected", err)
		}
		if after := linktest.Stats(t, p.SB); after.KeysReady != before.KeysReady || after.UnconfirmedBlocks != before.UnconfirmedBlocks {
			t.Fatalf("tampered message changed state: %+v → %+v", before, after)
		}
		if _, _, slotsAfter, _ := p.SB.SlotBounds(ctx, "A-B", "A"); slotsAfter != slotsBefore {
			t.Fatalf("a tampered message used up MAC slots at the receiver: %d → %d", slotsBefore, slotsAfter)
		}
		// An authentic message replayed: answered with its first reply,
		// nothing runs again; other bytes under its number: rejected.
		if _, err := p.A.DeleteAtPeer(ctx, []qkd.KeyID{id}, "test"); err != nil {
			t.Fatalf("honest delete_keys = %v", err)
		}
		last := p.PA.LastOf(kmsproto.DeleteKeys)
		_, _, slotsBefore, _ = p.SB.SlotBounds(ctx, "A-B", "A")
		first, err := p.PA.To.Handle(ctx, kmsproto.DeleteKeys, last)
		if err != nil {
			t.Fatalf("replayed message = %v, want its first reply", err)
		}
		if again, err := p.PA.To.Handle(ctx, kmsproto.DeleteKeys, last); err != nil || !bytes.Equal(again, first) {
			t.Fatalf("replayed again = %v; same reply: %v", err, bytes.Equal(again, first))
		}
		other := bytes.Clone(last)
		other[len(other)-1] ^= 0x01
		if _, err := p.PA.To.Handle(ctx, kmsproto.DeleteKeys, other); !errors.Is(err, link.ErrUnauthenticated) {
			t.Fatalf("other bytes under a used number = %v, want link.ErrUnauthenticated", err)
		}
		if _, _, slotsAfter, _ := p.SB.SlotBounds(ctx, "A-B", "A"); slotsAfter != slotsBefore {
			t.Fatalf("replays used up MAC slots at the receiver: %d → %d", slotsBefore, slotsAfter)
		}
		// The link still works after both.
		if _, err := p.A.DeleteAtPeer(ctx, []qkd.KeyID{id}, "test"); err != nil {
			t.Fatalf("delete_keys after the attacks = %v", err)
		}
	})
}

func TestSlotsRefilledFromQKDMaterial(t *testing.T) {
	forModes(t, linktest.Options{}, func(t *testing.T, p *linktest.Pair) {
		p.Push(t, 32, 2048, nil)
		ctx := context.Background()
		id, _ := qkd.NewKeyID(nil)
		// Spend more slots than the PSK gave (32 per direction).
		for i := 0; i < 80; i++ {
			var err error
			linktest.WaitFor(t, "a usable slot", func() bool {
				_, err = p.A.DeleteAtPeer(ctx, []qkd.KeyID{id}, "spend")
				return !errors.Is(err, link.ErrNoSlots)
			})
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		_, next, _, err := p.SA.SlotBounds(ctx, "A-B", "A")
		if err != nil || next <= 32 {
			t.Fatalf("SlotBounds(A) next = %d, %v; want refilled beyond the PSK's 32", next, err)
		}
	})
}

func TestPeerDownDoesNotDrainSlots(t *testing.T) {
	forModes(t, linktest.Options{}, func(t *testing.T, p *linktest.Pair) {
		ctx := context.Background()
		id, _ := qkd.NewKeyID(nil)
		p.PA.Down.Store(true)
		before := p.A.SlotsLeft()
		for i := 0; i < 50; i++ {
			if _, err := p.A.DeleteAtPeer(ctx, []qkd.KeyID{id}, "x"); !errors.Is(err, qkd.ErrPeerUnavailable) {
				t.Fatalf("call to a down peer = %v", err)
			}
		}
		if used := before - p.A.SlotsLeft(); used > 4 { // at most one per concurrent sender (status, confirm, outbox, this test)
			t.Fatalf("a down peer drained %d MAC slots", used)
		}
		p.PA.Down.Store(false)
		if _, err := p.A.DeleteAtPeer(ctx, []qkd.KeyID{id}, "x"); err != nil {
			t.Fatalf("after the peer is back: %v", err)
		}
	})
}

func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
