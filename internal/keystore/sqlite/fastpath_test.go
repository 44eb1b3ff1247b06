package sqlite

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/storetest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// setFill sets the fill size of the cache of r's pair, whatever the size
// of the requests.
func setFill(s *Store, r keystore.TakeRequest, n int) {
	s.cmu.Lock()
	s.fill[pairOf(&r)] = n
	s.perRequest = 0
	s.cmu.Unlock()
}

// TestOperationsApplyDeliveries: a key delivered by the fast path is only
// journaled; the next store operation of any other kind (whatever its
// outcome) deletes its row before it returns. Stats and Sync are not
// among them: they run no transaction (Stats discounts the popped keys,
// see TestStatsRecount).
func TestOperationsApplyDeliveries(t *testing.T) {
	other := keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{{1}}}
	tests := []struct {
		name string
		op   func(ctx context.Context, s *Store, spare []keystore.Key) error
	}{
		{"AddBlock", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			return s.AddBlock(ctx, keystore.Block{Link: "A-C", Index: 1, Data: secret.From([]byte{1, 2})})
		}},
		{"ListBlocks", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.ListBlocks(ctx, link, keystore.BlockConfirmed, 10)
			return err
		}},
		{"GetBlocks", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.GetBlocks(ctx, link, []uint64{1})
			return err
		}},
		{"ConfirmBlocks (absent)", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			return s.ConfirmBlocks(ctx, link, []uint64{99999}, 0)
		}},
		{"DiscardBlocks", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.DiscardBlocks(ctx, link, []keystore.Range{{From: 0, To: 1}})
			return err
		}},
		{"Material", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.Material(ctx, link, 0, 10)
			return err
		}},
		{"Allocate (conflict)", func(ctx context.Context, s *Store, spare []keystore.Key) error {
			k := spare[0]
			k.Data = secret.Bytes{}
			return s.Allocate(ctx, keystore.Allocation{Link: link, Pieces: []keystore.Piece{{Index: 1, Len: 32}}, Keys: []keystore.Key{k}})
		}},
		{"SetKeysReady", func(ctx context.Context, s *Store, spare []keystore.Key) error {
			return s.SetKeysReady(ctx, ids(spare[:1]), "")
		}},
		{"TakeByID (unknown)", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.TakeByID(ctx, other)
			return err
		}},
		{"TakeByID (other key)", func(ctx context.Context, s *Store, spare []keystore.Key) error {
			_, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: ids(spare[len(spare)-1:])})
			return err
		}},
		{"TakeForPair (link filter)", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			r := pairReq(1)
			r.Link = link
			_, err := s.TakeForPair(ctx, r)
			return err
		}},
		{"CountKeys", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.CountKeys(ctx, pairReq(0))
			return err
		}},
		{"DeleteKeys (unknown)", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.DeleteKeys(ctx, other.IDs)
			return err
		}},
		{"ExpireKeys", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.ExpireKeys(ctx, time.Now())
			return err
		}},
		{"PendingOutbox", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.PendingOutbox(ctx, link)
			return err
		}},
		{"AbortAllocation", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			return s.AbortAllocation(ctx, "none", other.IDs)
		}},
		{"InitLink", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.InitLink(ctx, keystore.LinkInit{Link: "A-D", Slots: []keystore.SlotRange{{Sender: "A", Count: 1}},
				Material: []secret.Bytes{secret.From(make([]byte, keystore.SlotSize))}})
			return err
		}},
		{"TakeSlot (absent)", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.TakeSlot(ctx, link, "A", 12345)
			return err
		}},
		{"SlotBounds", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, _, _, err := s.SlotBounds(ctx, link, "A")
			return err
		}},
		{"ApplyRelayStep (conflict)", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			st := keystore.RelayStep{ID: "x", OutLink: link, Out: []keystore.Piece{{Index: 99999, Len: 32}}}
			return s.ApplyRelayStep(ctx, st, func(_, _ secret.Bytes) (keystore.RelayResult, error) {
				return keystore.RelayResult{}, nil
			})
		}},
		{"RelayRecord (unknown)", func(ctx context.Context, s *Store, _ []keystore.Key) error {
			_, err := s.RelayRecord(ctx, "x")
			return err
		}},
		{"RotateKEK", func(ctx context.Context, s *Store, _ []keystore.Key) error { return s.RotateKEK(ctx) }},
		{"Close", func(_ context.Context, s *Store, _ []keystore.Key) error { return s.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openQuiet(t, dir)
			keys := readyKeys(t, s, 8, nil)
			got, err := s.TakeForPair(t.Context(), pairReq(2))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range got {
				if n := rowsWithID(t, dir, k.ID); n != 1 {
					t.Fatalf("delivered key has %d rows before the operation; the test needs it journaled only", n)
				}
			}
			_ = tt.op(t.Context(), s, keys[2:]) // errors are fine: the deliveries are applied anyway
			for _, k := range got {
				if n := rowsWithID(t, dir, k.ID); n != 0 {
					t.Errorf("delivered key %s still has %d rows after %s", k.ID, n, tt.name)
				}
			}
		})
	}
}

// TestDeletionBound: with no other operation, the row of a key delivered by
// the fast path is deleted by the flusher's timer (flushDelay after the
// delivery: the cache stays above half its fill, so no refill applies it,
// and nothing else runs). The wait is bounded by the test's deadline, not
// by a wall-clock figure: on a loaded machine the timer may fire late.
func TestDeletionBound(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	readyKeys(t, s, 16, nil)
	setFill(s, pairReq(1), 8)
	applied := make(chan time.Time, 16)
	s.cmu.Lock()
	s.onApplied = func(int) {
		select {
		case applied <- time.Now():
		default:
		}
	}
	s.cmu.Unlock()
	for round := range 3 {
		got, err := s.TakeForPair(t.Context(), pairReq(1))
		if err != nil {
			t.Fatal(err)
		}
		took := time.Now()
		select {
		case at := <-applied:
			t.Logf("round %d: applied %v after the take (flushDelay %v)", round, at.Sub(took), flushDelay)
		case <-t.Context().Done():
			t.Fatalf("round %d: delivery never applied", round)
		}
		if n := rowsWithID(t, dir, got[0].ID); n != 0 {
			t.Errorf("round %d: delivered key still has %d rows", round, n)
		}
	}
}

// TestRefillOrder: the background refill reads the pair again from its
// first key, so a key made Ready after the cache was filled, with a lower
// seq, is delivered at the next refill, and keys still cached keep their
// place.
func TestRefillOrder(t *testing.T) {
	s := openQuiet(t, t.TempDir())
	ctx := t.Context()
	setFill(s, pairReq(1), 4)
	late := readyKeys(t, s, 1, nil)[0]
	if _, err := s.rawExec(ctx, "UPDATE keys SET state = ? WHERE id = ?", keystore.KeyPending, late.ID[:]); err != nil {
		t.Fatal(err)
	}
	keys := readyKeys(t, s, 10, nil)
	var got []keystore.Key
	take := func(n int) {
		t.Helper()
		ks, err := s.TakeForPair(ctx, pairReq(n))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ks...)
	}
	take(1) // fills keys[0:4], pops keys[0]
	if err := s.SetKeysReady(ctx, []qkd.KeyID{late.ID}, ""); err != nil {
		t.Fatal(err)
	}
	take(2) // keys[1], keys[2]; one left: a refill is queued
	s.cmu.Lock()
	queued := len(s.refillQ)
	s.cmu.Unlock()
	if queued != 1 {
		t.Fatalf("%d refills queued, want 1", queued)
	}
	if err := s.refillQueued(ctx); err != nil {
		t.Fatal(err)
	}
	take(1) // from the refilled cache
	take(7)
	want := append(append([]qkd.KeyID{}, ids(keys[:3])...), late.ID)
	want = append(want, ids(keys[3:])...)
	for i := range want {
		if got[i].ID != want[i] {
			t.Fatalf("delivery %d = %s, want %s (late key first after the refill)", i, got[i].ID, want[i])
		}
	}
	if !bytes.Equal(got[3].Data.Expose(), late.Data.Expose()) {
		t.Error("late key delivered with other bytes")
	}
}

// rawExec runs a statement outside the store's operations (tests only).
func (s *Store) rawExec(ctx context.Context, q string, args ...any) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// TestInterleavings runs TakeForPair (fast path, small caches refilled in
// the background), TakeByID, DeleteKeys and ExpireKeys on the same keys at
// once: every key is delivered at most once, with its bytes, and every key
// is delivered, deleted, expired or still there — exactly one of them.
func TestInterleavings(t *testing.T) {
	for _, fill := range []int{3, 16, 256} {
		t.Run("fill="+strconv.Itoa(fill), func(t *testing.T) {
			interleave(t, fill)
		})
	}
}

func interleave(t *testing.T, fill int) {
	s := openAt(t, t.TempDir())
	ctx := t.Context()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 600
	keys := readyKeys(t, s, n, func(i int) time.Time {
		if i%2 == 0 {
			return time.Time{}
		}
		return t0.Add(time.Duration(1+i%300) * time.Second)
	})
	setFill(s, pairReq(1), fill)
	byID := make(map[qkd.KeyID]keystore.Key, n)
	for _, k := range keys {
		byID[k.ID] = k
	}

	var (
		mu        sync.Mutex
		delivered = make(map[qkd.KeyID]int)
		deleted   = make(map[qkd.KeyID]bool)
		expired   = make(map[qkd.KeyID]bool)
	)
	deliver := func(ks []keystore.Key) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range ks {
			delivered[k.ID]++
			if w, ok := byID[k.ID]; !ok || !bytes.Equal(w.Data.Expose(), k.Data.Expose()) {
				t.Errorf("key %s delivered with other bytes", k.ID)
			}
		}
	}
	fail := func(what string, err error) {
		if err != nil && !errors.Is(err, qkd.ErrNotFound) && !errors.Is(err, qkd.ErrInsufficientKey) {
			t.Errorf("%s = %v", what, err)
		}
	}

	var disturbers, takers sync.WaitGroup
	disturbing := make(chan struct{})
	disturbers.Go(func() { // TakeByID of random keys
		rnd := rand.New(rand.NewPCG(1, uint64(fill)))
		for range 300 {
			pick := []qkd.KeyID{keys[rnd.IntN(n)].ID}
			if rnd.IntN(3) == 0 {
				if id := keys[rnd.IntN(n)].ID; id != pick[0] {
					pick = append(pick, id)
				}
			}
			got, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: pick, Now: t0})
			fail("TakeByID", err)
			deliver(got)
		}
	})
	disturbers.Go(func() { // DeleteKeys of random keys, one at a time
		rnd := rand.New(rand.NewPCG(2, uint64(fill)))
		for range 200 {
			id := keys[rnd.IntN(n)].ID
			k, err := s.DeleteKeys(ctx, []qkd.KeyID{id})
			fail("DeleteKeys", err)
			if k == 1 {
				mu.Lock()
				deleted[id] = true
				mu.Unlock()
			}
		}
	})
	disturbers.Go(func() { // ExpireKeys, later and later
		for i := range 30 {
			got, err := s.ExpireKeys(ctx, t0.Add(time.Duration(10*i)*time.Second))
			fail("ExpireKeys", err)
			mu.Lock()
			for _, k := range got {
				expired[k.ID] = true
			}
			mu.Unlock()
		}
	})
	go func() { disturbers.Wait(); close(disturbing) }()
	for w := range 4 {
		takers.Go(func() {
			r := pairReq(1 + w%3)
			r.Now = t0
			for {
				got, err := s.TakeForPair(ctx, r)
				if errors.Is(err, qkd.ErrInsufficientKey) {
					select {
					case <-disturbing:
						return
					default:
						continue // others may still free the way (expiry ends nothing for Now=t0)
					}
				}
				fail("TakeForPair", err)
				deliver(got)
			}
		})
	}
	takers.Wait()
	left, err := s.CountKeys(ctx, keystore.TakeRequest{Master: master, Caller: slave, Slaves: []qkd.SAEID{slave}, SizeBits: 256, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	var rest []keystore.Key
	if left > 0 {
		r := pairReq(left)
		r.Now = t0
		if rest, err = s.TakeForPair(ctx, r); err != nil {
			t.Fatalf("TakeForPair(the %d left) = %v", left, err)
		}
	}
	if left >= 3 {
		t.Errorf("%d keys left after the takers stopped; want fewer than the largest take (3)", left)
	}
	deliver(rest)
	for _, k := range keys {
		outcomes := delivered[k.ID]
		if outcomes > 1 {
			t.Errorf("key %s delivered %d times", k.ID, outcomes)
		}
		if deleted[k.ID] {
			outcomes++
		}
		if expired[k.ID] {
			outcomes++
		}
		if outcomes != 1 {
			t.Errorf("key %s: delivered %d times, deleted %v, expired %v; want exactly one outcome",
				k.ID, delivered[k.ID], deleted[k.ID], expired[k.ID])
		}
	}
	if st, err := s.Stats(ctx, link); err != nil || st.KeysReady != 0 {
		t.Errorf("Stats after everything was accounted for: %d ready, %v", st.KeysReady, err)
	}
}

// TestRelayKeysAndPairCache: a relay step storing Ready keys for a pair
// whose keys are cached keeps the cache a prefix of the database (the new
// keys come after the cached ones, each delivered once), and a cached
// key's ID is still taken.
func TestRelayKeysAndPairCache(t *testing.T) {
	s := openQuiet(t, t.TempDir())
	ctx := t.Context()
	old := readyKeys(t, s, 6, nil)
	got, err := s.TakeForPair(ctx, pairReq(1)) // fills the cache with old
	if err != nil {
		t.Fatal(err)
	}
	const relayLink qkd.LinkID = "B-C"
	in := storetest.Pattern(relayLink, 1, 96)
	if err := s.AddBlock(ctx, keystore.Block{Link: relayLink, Index: 1, Data: secret.From(in)}); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmBlocks(ctx, relayLink, []uint64{1}, 0); err != nil {
		t.Fatal(err)
	}
	relayKeys := func(data []byte, n int) []keystore.Key {
		keys := make([]keystore.Key, n)
		for i := range keys {
			id, _ := qkd.NewKeyID(nil)
			keys[i] = keystore.Key{ID: id, State: keystore.KeyReady, Master: master, Slaves: []qkd.SAEID{slave},
				Pending: []qkd.SAEID{slave}, SizeBits: 256, Data: secret.From(data[32*i : 32*(i+1)])}
		}
		return keys
	}
	step := keystore.RelayStep{ID: "dst", InLink: relayLink, In: []keystore.Piece{{Index: 1, Len: 96}}}
	collide := func(_, _ secret.Bytes) (keystore.RelayResult, error) {
		keys := relayKeys(in, 3)
		keys[2].ID = old[3].ID // cached
		return keystore.RelayResult{Keys: keys, Record: []byte("done")}, nil
	}
	if err := s.ApplyRelayStep(ctx, step, collide); !errors.Is(err, keystore.ErrConflict) {
		t.Fatalf("ApplyRelayStep(cached key ID) = %v, want ErrConflict", err)
	}
	var want []keystore.Key
	if err := s.ApplyRelayStep(ctx, step, func(pad, _ secret.Bytes) (keystore.RelayResult, error) {
		want = relayKeys(pad.Expose(), 3)
		keys := relayKeys(pad.Expose(), 3)
		for i := range keys {
			keys[i].ID = want[i].ID
		}
		return keystore.RelayResult{Keys: keys, Record: []byte("done")}, nil
	}); err != nil {
		t.Fatalf("ApplyRelayStep = %v", err)
	}
	for range 8 {
		ks, err := s.TakeForPair(ctx, pairReq(1))
		if err != nil {
			t.Fatalf("TakeForPair after %d keys = %v", len(got), err)
		}
		got = append(got, ks...)
	}
	if _, err := s.TakeForPair(ctx, pairReq(1)); !errors.Is(err, qkd.ErrInsufficientKey) {
		t.Errorf("TakeForPair after every key = %v, want ErrInsufficientKey", err)
	}
	want = append(old, want...)
	for i := range want {
		if got[i].ID != want[i].ID || !bytes.Equal(got[i].Data.Expose(), want[i].Data.Expose()) {
			t.Errorf("delivery %d = %s, want %s with its bytes (cached keys first, then the relayed ones)", i, got[i].ID, want[i].ID)
		}
	}
}
