package link_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/sqlite"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
)

var attackFlag = flag.Duration("link.attack", 20*time.Second,
	"how long TestSelfHealingAfterCorruption corrupts A's messages (2 s with -short)")

// sqliteStores opens two SQLite stores in a temporary directory, closed
// at test end (after the pair, whose cleanup runs first).
func sqliteStores(t testing.TB) (keystore.Store, keystore.Store) {
	t.Helper()
	dir := t.TempDir()
	open := func(name string) keystore.Store {
		s, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(dir, name+".db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	return open("a"), open("b")
}

// outboxIdle reports whether a store's outbox of A-B holds nothing but
// key batches (the confirm loop's).
func outboxIdle(t *testing.T, s keystore.Store) bool {
	t.Helper()
	box, err := s.PendingOutbox(context.Background(), "A-B")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range box {
		var e struct {
			Type kmsproto.Type `cbor:"1,keyasint"`
		}
		if kmsproto.Unmarshal(o.Payload, &e) != nil || e.Type != kmsproto.NewKeyBatch {
			return false
		}
	}
	return true
}

// TestSelfHealingAfterCorruption is the regression test of a link that
// died under attack: every message A sends to B is corrupted for a while
// (-link.attack, 20 s; 2 s with -short) while keys are requested all the
// time and new blocks arrive. Before, each failed send was retried under
// a new message number and spent a MAC slot per try, until A had one slot
// left, which the make_keys_external entries queued ahead of the slot
// refill could not use: dead until a new PSK. Now a failed send goes
// again as the identical message under its number: once the corruption
// stops the link serves keys again within 10 s, every key A handed out is
// held by B with the same bytes, and A spent no MAC slot on a message
// that B did not answer.
func TestSelfHealingAfterCorruption(t *testing.T) {
	attack := *attackFlag
	if testing.Short() {
		attack = min(attack, 2*time.Second)
	}
	poly := linktest.Options{MAC: itsmac.SchemePoly1305}
	wc := linktest.Options{MAC: itsmac.SchemeWegmanCarter, MACEpoch: 16}
	for _, tc := range []struct {
		name   string
		o      linktest.Options
		stores func(testing.TB) (keystore.Store, keystore.Store)
	}{
		{"memstore/poly1305", poly, nil},
		{"memstore/wegman_carter", wc, nil},
		{"sqlite/poly1305", poly, sqliteStores},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.o
			o.Stores, o.CallTimeout, o.Logger = tc.stores, 250*time.Millisecond, testLogger(t)
			selfHeal(t, linktest.NewPair(t, o), attack)
		})
	}
}

func selfHeal(t *testing.T, p *linktest.Pair, attack time.Duration) {
	ctx := context.Background()
	p.Push(t, 32, 2048, nil)
	linktest.WaitFor(t, "material confirmed at both ends", func() bool {
		return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Stats(t, p.SB).UnconfirmedBlocks == 0 &&
			linktest.Stats(t, p.SA).ConfirmedBytes[0] > 16*1024
	})
	waitInitialPolls(t, p)
	linktest.WaitFor(t, "A's outbox idle", func() bool { return outboxIdle(t, p.SA) })
	slotsBefore := p.A.SlotsLeft()
	sent0, answered0 := p.PA.Numbers()

	var corrupting atomic.Bool
	corrupting.Store(true)
	var corrupted atomic.Int64
	var rmu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	p.PA.SetTamper(func(_ kmsproto.Type, b []byte) []byte {
		if !corrupting.Load() {
			return b
		}
		corrupted.Add(1)
		c := bytes.Clone(b)
		rmu.Lock()
		c[rng.IntN(len(c))] ^= byte(1 << rng.IntN(8)) // header, body or tag
		rmu.Unlock()
		return c
	})

	// Keys are requested all the time, blocks keep arriving.
	var (
		mu         sync.Mutex
		received   []qkd.KeyID
		served     atomic.Int64
		unexpected []error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		pace := time.NewTicker(20 * time.Millisecond) // a request rate, not synchronisation
		defer pace.Stop()
		for {
			select {
			case <-stop:
				return
			case <-pace.C:
			}
			ids, err := p.A.Reserve(ctx, masterA, slavesB, 256, 2, time.Hour)
			mu.Lock()
			switch {
			case err == nil:
				received = append(received, ids...)
				served.Add(1)
			case errors.Is(err, qkd.ErrPeerUnavailable), errors.Is(err, qkd.ErrInsufficientKey):
			default:
				unexpected = append(unexpected, err)
			}
			mu.Unlock()
		}
	})
	blocks := time.NewTicker(time.Second)
	end := time.After(attack)
	for attacking := true; attacking; {
		select {
		case <-blocks.C:
			p.Push(t, 4, 2048, nil)
		case <-end:
			attacking = false
		}
	}
	blocks.Stop()
	servedDuring := served.Load()
	corrupting.Store(false)
	took := linktest.WaitWithin(t, 10*time.Second, "keys served again after the corruption stopped", func() bool {
		return served.Load() > servedDuring
	})
	t.Logf("%v of corruption (%d messages corrupted, %d reservations served meanwhile): keys served again %v after it stopped",
		attack, corrupted.Load(), servedDuring, took.Round(time.Millisecond))
	close(stop)
	wg.Wait()
	if len(unexpected) > 0 {
		t.Errorf("Reserve failed unexpectedly: %v", unexpected)
	}
	if corrupted.Load() == 0 {
		t.Fatal("no message was corrupted: the attack was not exercised")
	}

	// Let the link settle: every queued reservation answered.
	linktest.WaitFor(t, "A's outbox drained", func() bool { return outboxIdle(t, p.SA) })

	// No key lost or divergent.
	a, b := takeBoth(t, p, received)
	if !bytes.Equal(a, b) || len(a) != len(received)*32 {
		t.Fatalf("the %d keys A handed out differ at B (%d and %d bytes)", len(received), len(a), len(b))
	}
	if sa, sb := linktest.Stats(t, p.SA), linktest.Stats(t, p.SB); sa.KeysPending != 0 || sa.KeysReady != sb.KeysReady {
		t.Fatalf("after the drain A holds %d pending and %d ready keys, B %d ready; want 0 pending and the same",
			sa.KeysPending, sa.KeysReady, sb.KeysReady)
	}

	// MAC slots: A spent one per message B answered, none on retries.
	sent1, answered1 := p.PA.Numbers()
	spent, exchanged := sent1-sent0, answered1-answered0
	slotsAfter := p.A.SlotsLeft()
	t.Logf("A's usable MAC messages %d → %d; message numbers spent %d, answered by B %d", slotsBefore, slotsAfter, spent, exchanged)
	const slack = 2 // a message sent just as the measurement ends
	if spent-exchanged > slack {
		t.Errorf("A spent %d message numbers that B never answered, want at most %d", spent-exchanged, slack)
	}
	if slotsAfter < slotsBefore-exchanged-slack {
		t.Errorf("A's usable MAC slots drained: %d → %d with %d messages exchanged", slotsBefore, slotsAfter, exchanged)
	}
	// And the link is fully usable again, in both directions.
	if _, err := p.B.Reserve(ctx, "SAE_B1", []qkd.SAEID{"SAE_A1"}, 256, 1, time.Hour); err != nil {
		t.Fatalf("B's reservation after the attack = %v", err)
	}
	var id qkd.KeyID
	if _, err := p.A.DeleteAtPeer(ctx, []qkd.KeyID{id}, "after"); err != nil {
		t.Fatalf("delete_keys after the attack = %v", err)
	}
}
