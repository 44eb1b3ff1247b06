package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

func testZeroize(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	keys := makeKeys(t, s, keySpec{n: 2, ready: true})
	addBlock(t, s, linkAB, 1, 10)
	if _, err := s.InitLink(ctx, pskInit(linkAB, 2)); err != nil {
		t.Fatal(err)
	}
	addConfirmed(t, s, linkAC, 64, 2)
	step := keystore.RelayStep{ID: "step", OutLink: linkAC, Out: []keystore.Piece{{Index: 2, Len: 32}}}
	if err := s.ApplyRelayStep(ctx, step, (&recorder{make: noResult}).build); err != nil {
		t.Fatal(err)
	}
	if err := s.Zeroize(ctx); err != nil {
		t.Fatalf("Zeroize = %v", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"AddBlock", func() error {
			return s.AddBlock(ctx, keystore.Block{Link: linkAB, Index: 50, Data: secret.From([]byte{1})})
		}},
		{"ListBlocks", func() error { _, err := s.ListBlocks(ctx, linkAB, keystore.BlockUnconfirmed, 1); return err }},
		{"GetBlocks", func() error { _, err := s.GetBlocks(ctx, linkAB, []uint64{1}); return err }},
		{"ConfirmBlocks", func() error { return s.ConfirmBlocks(ctx, linkAB, []uint64{1}, 0) }},
		{"DiscardBlocks", func() error { _, err := s.DiscardBlocks(ctx, linkAB, []keystore.Range{{From: 0, To: 9}}); return err }},
		{"Material", func() error { _, err := s.Material(ctx, linkAB, 0, 1); return err }},
		{"Allocate", func() error { return s.Allocate(ctx, oneKeyAlloc(t, 1, 0)) }},
		{"SetKeysReady", func() error { return s.SetKeysReady(ctx, ids(keys), "") }},
		{"TakeForPair", func() error { _, err := s.TakeForPair(ctx, pairReq(1)); return err }},
		{"TakeByID", func() error { _, err := s.TakeByID(ctx, byIDReq(slave, keys...)); return err }},
		{"CountKeys", func() error { _, err := s.CountKeys(ctx, pairReq(1)); return err }},
		{"DeleteKeys", func() error { _, err := s.DeleteKeys(ctx, ids(keys)); return err }},
		{"ExpireKeys", func() error { _, err := s.ExpireKeys(ctx, t0); return err }},
		{"PendingOutbox", func() error { _, err := s.PendingOutbox(ctx, linkAB); return err }},
		{"AbortAllocation", func() error { return s.AbortAllocation(ctx, "x", ids(keys)) }},
		{"InitLink", func() error { _, err := s.InitLink(ctx, pskInit(linkAC, 1)); return err }},
		{"TakeSlot", func() error { _, err := s.TakeSlot(ctx, linkAB, nodeA, 0); return err }},
		{"SlotBounds", func() error { _, _, _, err := s.SlotBounds(ctx, linkAB, nodeA); return err }},
		{"ApplyRelayStep", func() error {
			step.ID = "another"
			return s.ApplyRelayStep(ctx, step, (&recorder{make: noResult}).build)
		}},
		{"RelayRecord", func() error { _, err := s.RelayRecord(ctx, "step"); return err }},
		{"Stats", func() error { _, err := s.Stats(ctx, linkAB); return err }},
		{"Sync", func() error { return s.Sync(ctx) }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, keystore.ErrZeroized) {
			t.Errorf("%s after Zeroize = %v, want ErrZeroized", c.name, err)
		}
	}
	if err := s.Zeroize(ctx); err != nil {
		t.Errorf("Zeroize again = %v, want nil", err)
	}
}

// collect runs workers goroutines that call take until it fails with
// qkd.ErrInsufficientKey or qkd.ErrNotFound, and returns every key they got.
func collect(t *testing.T, workers int, take func() ([]keystore.Key, error)) []keystore.Key {
	var (
		mu   sync.Mutex
		got  []keystore.Key
		errs []error
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				keys, err := take()
				if errors.Is(err, qkd.ErrInsufficientKey) || errors.Is(err, qkd.ErrNotFound) {
					return
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				got = append(got, keys...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent take: %v", errors.Join(errs...))
	}
	return got
}

// exactlyOnce fails unless got holds every key of want once, with its bytes.
func exactlyOnce(t *testing.T, got, want []keystore.Key) {
	t.Helper()
	byID := make(map[qkd.KeyID][]byte, len(want))
	for _, k := range want {
		byID[k.ID] = k.Data.Expose()
	}
	seen := make(map[qkd.KeyID]int)
	for _, k := range got {
		seen[k.ID]++
		if w, ok := byID[k.ID]; !ok || !bytes.Equal(w, k.Data.Expose()) {
			t.Errorf("key %s delivered with the wrong bytes (or unknown)", k.ID)
		}
	}
	for _, k := range want {
		if seen[k.ID] != 1 {
			t.Errorf("key %s delivered %d times, want once", k.ID, seen[k.ID])
		}
	}
}

func testConcurrentTakeForPair(t *testing.T, s keystore.Store) {
	want := makeKeys(t, s, keySpec{n: 120, ready: true, bits: 128})
	r := pairReq(1)
	r.SizeBits = 128
	got := collect(t, 12, func() ([]keystore.Key, error) { return s.TakeForPair(t.Context(), r) })
	exactlyOnce(t, got, want)
}

func testConcurrentTakeByID(t *testing.T, s keystore.Store) {
	want := makeKeys(t, s, keySpec{n: 20, ready: true, bits: 128, pending: []qkd.SAEID{slave}})
	var got []keystore.Key
	for _, k := range want {
		got = append(got, collect(t, 8, func() ([]keystore.Key, error) {
			return s.TakeByID(t.Context(), byIDReq(slave, k))
		})...)
	}
	exactlyOnce(t, got, want)
}

// testConcurrentMixed runs block arrival, allocation, delivery and slot use
// at once: nothing may fail except for lack of keys, and every key made is
// delivered once.
func testConcurrentMixed(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	const n = 40
	if _, err := s.InitLink(ctx, pskInit(linkAB, n)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	made := make(chan keystore.Key, n)
	wg.Go(func() {
		defer close(made)
		for i := range n {
			k, err := produceKey(ctx, s, uint64(10_000+i))
			if err != nil {
				t.Error(err)
				return
			}
			made <- k
		}
	})
	wg.Go(func() {
		for i := range n {
			if _, err := s.TakeSlot(ctx, linkAB, nodeA, uint64(i)); err != nil {
				t.Errorf("TakeSlot(%d) = %v", i, err)
			}
		}
	})
	var want, got []keystore.Key
	r := keystore.TakeRequest{Master: master, Caller: slave, Slaves: []qkd.SAEID{slave}, SizeBits: 128, Number: 1}
	for k := range made {
		want = append(want, k)
		// Take at most as many as were made: the producer may be ahead.
		for len(got) < len(want) {
			keys, err := s.TakeForPair(ctx, r)
			if errors.Is(err, qkd.ErrInsufficientKey) {
				break
			}
			if err != nil {
				t.Fatalf("TakeForPair = %v", err)
			}
			got = append(got, keys...)
		}
	}
	wg.Wait()
	rest, err := s.TakeForPair(ctx, keystore.TakeRequest{Master: master, Caller: slave, Slaves: r.Slaves, SizeBits: 128, Number: len(want) - len(got)})
	if len(want) > len(got) && err != nil {
		t.Fatalf("TakeForPair(rest) = %v", err)
	}
	exactlyOnce(t, append(got, rest...), want)
}

// produceKey adds, confirms and allocates block idx of linkAC as one Ready
// 128-bit key, and returns the key with its bytes.
func produceKey(ctx context.Context, s keystore.Store, idx uint64) (keystore.Key, error) {
	data := Pattern(linkAC, idx, 16)
	if err := s.AddBlock(ctx, keystore.Block{Link: linkAC, Index: idx, Data: secret.From(data)}); err != nil {
		return keystore.Key{}, err
	}
	if err := s.ConfirmBlocks(ctx, linkAC, []uint64{idx}, 0); err != nil {
		return keystore.Key{}, err
	}
	id, err := qkd.NewKeyID(nil)
	if err != nil {
		return keystore.Key{}, err
	}
	k := keystore.Key{ID: id, State: keystore.KeyReady, Master: master, Slaves: []qkd.SAEID{slave}, Pending: []qkd.SAEID{slave}, SizeBits: 128}
	a := keystore.Allocation{Link: linkAC, Pieces: []keystore.Piece{{Index: idx, Len: 16}}, Keys: []keystore.Key{k}}
	if err := s.Allocate(ctx, a); err != nil {
		return keystore.Key{}, err
	}
	k.Data = secret.From(data)
	return k, nil
}

// BenchTakeForPair measures TakeForPair of one 256-bit key from a store
// holding b.N Ready keys.
func BenchTakeForPair(b *testing.B, s keystore.Store) {
	fillKeys(b, s, b.N)
	r := pairReq(1)
	b.ResetTimer()
	for range b.N {
		got, err := s.TakeForPair(context.Background(), r)
		if err != nil {
			b.Fatal(err)
		}
		got[0].Data.Wipe()
	}
}

// fillKeys stores n Ready 256-bit keys for (master, slave), up to 1024 per
// block and allocation.
func fillKeys(b *testing.B, s keystore.Store, n int) {
	ctx := context.Background()
	for idx := freshIndex(b, s, linkAB); n > 0; idx++ {
		chunk := min(n, 1024)
		n -= chunk
		addConfirmed(b, s, linkAB, 32*chunk, idx)
		a := keystore.Allocation{Link: linkAB, Pieces: []keystore.Piece{{Index: idx, Len: 32 * chunk}}}
		for range chunk {
			a.Keys = append(a.Keys, keystore.Key{ID: newID(b), State: keystore.KeyReady, Master: master,
				Slaves: []qkd.SAEID{slave}, Pending: []qkd.SAEID{slave}, SizeBits: 256})
		}
		if err := s.Allocate(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchAddBlock measures AddBlock of 4 KiB blocks.
func BenchAddBlock(b *testing.B, s keystore.Store) {
	data := secret.From(Pattern(linkAB, 0, 4096))
	b.SetBytes(int64(data.Len()))
	b.ResetTimer()
	for i := range b.N {
		if err := s.AddBlock(context.Background(), keystore.Block{Link: linkAB, Index: uint64(i), Data: data}); err != nil {
			b.Fatal(err)
		}
	}
}
