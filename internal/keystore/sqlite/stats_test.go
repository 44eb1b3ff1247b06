package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/storetest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// recount applies the popped deliveries (as any operation would) and
// counts every link in the tables; the caller compares with Stats.
func recount(t testing.TB, s *Store) counts {
	t.Helper()
	ctx := context.Background()
	if err := s.lock(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.mu.Unlock()
	if err := s.run(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	c, err := scanCounts(ctx, s.db)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStatsRecount runs a random sequence of operations on two links —
// including the fast path with background-style refills, the slow paths
// and operations that fail half-way and roll back — and after each one
// compares Stats with a full count of the tables: before the popped
// deliveries are applied to the database (Stats discounts them) and after.
func TestStatsRecount(t *testing.T) {
	for seed := range 3 {
		t.Run("seed="+strconv.Itoa(seed), func(t *testing.T) { statsRecount(t, uint64(seed)) })
	}
}

func statsRecount(t *testing.T, seed uint64) {
	s := openQuiet(t, t.TempDir())
	ctx := t.Context()
	rnd := rand.New(rand.NewPCG(seed, 7))
	links := []qkd.LinkID{"A-B", "A-C"}
	setFill(s, pairReq(1), 4)
	var (
		nextIdx  = map[qkd.LinkID]uint64{}
		nextSlot = map[qkd.LinkID]uint64{}
		keyIDs   []qkd.KeyID
		ops      = map[string]int{}
		failed   = map[string]int{}
	)
	pick := func() qkd.KeyID {
		if len(keyIDs) == 0 {
			return qkd.KeyID{1}
		}
		return keyIDs[rnd.IntN(len(keyIDs))]
	}
	newKey := func(l qkd.LinkID, bits int) keystore.Key {
		id, err := qkd.NewKeyID(nil)
		if err != nil {
			t.Fatal(err)
		}
		keyIDs = append(keyIDs, id)
		k := keystore.Key{ID: id, Link: l, State: keystore.KeyReady, Master: master, Slaves: []qkd.SAEID{slave},
			Pending: []qkd.SAEID{slave}, SizeBits: bits}
		if rnd.IntN(4) == 0 {
			k.State = keystore.KeyPending
		}
		if rnd.IntN(5) == 0 {
			k.Pending = []qkd.SAEID{master, slave}
		}
		if rnd.IntN(4) == 0 {
			k.Expires = time.Now().Add(time.Duration(rnd.IntN(7200)-3600) * time.Second)
		}
		return k
	}
	// pieces returns pieces of free confirmed material of l covering n
	// bytes exactly, or nil.
	pieces := func(l qkd.LinkID, n int) []keystore.Piece {
		ps, err := s.Material(ctx, l, rnd.IntN(2), n)
		if err != nil {
			t.Fatal(err)
		}
		have := 0
		for i := range ps {
			if have+ps[i].Len >= n {
				ps[i].Len = n - have
				return ps[:i+1]
			}
			have += ps[i].Len
		}
		return nil
	}
	type op struct {
		name string
		do   func(l qkd.LinkID) error
	}
	table := []op{
		{"AddBlock", func(l qkd.LinkID) error {
			idx := nextIdx[l]
			if rnd.IntN(6) == 0 && idx > 0 {
				idx = uint64(rnd.IntN(int(idx))) // seen before: a no-op
			} else {
				nextIdx[l]++
			}
			return s.AddBlock(ctx, keystore.Block{Link: l, Index: idx, Data: secret.From(storetest.Pattern(l, idx, 64+rnd.IntN(400)))})
		}},
		{"ConfirmBlocks", func(l qkd.LinkID) error {
			list, err := s.ListBlocks(ctx, l, keystore.BlockUnconfirmed, 3)
			if err != nil || len(list) == 0 {
				return err
			}
			var idx []uint64
			for _, b := range list {
				idx = append(idx, b.Index)
			}
			if rnd.IntN(5) == 0 {
				idx = append(idx, 1<<40) // absent: rolls back
			}
			return s.ConfirmBlocks(ctx, l, idx, rnd.IntN(2)*rnd.IntN(list[0].Remaining+1))
		}},
		{"DiscardBlocks", func(l qkd.LinkID) error {
			from := uint64(rnd.IntN(int(nextIdx[l] + 1)))
			_, err := s.DiscardBlocks(ctx, l, []keystore.Range{{From: from, To: from + uint64(rnd.IntN(3))}})
			return err
		}},
		{"Allocate", func(l qkd.LinkID) error {
			a := keystore.Allocation{Link: l}
			for range rnd.IntN(4) {
				a.Keys = append(a.Keys, newKey(l, 128))
			}
			total := 16 * len(a.Keys)
			if len(a.Keys) == 0 || rnd.IntN(3) == 0 {
				a.Slots = &keystore.SlotRange{Sender: qkd.NodeID([]string{"A", "B"}[rnd.IntN(2)]), First: nextSlot[l], Count: 1 + rnd.IntN(3)}
				total += a.Slots.Count * keystore.SlotSize
			}
			if a.Pieces = pieces(l, total); a.Pieces == nil {
				return nil
			}
			if rnd.IntN(6) == 0 { // the last piece does not start where its block is: rolls back
				a.Pieces[len(a.Pieces)-1].Off++
			}
			err := s.Allocate(ctx, a)
			if err == nil && a.Slots != nil {
				nextSlot[l] += uint64(a.Slots.Count)
			}
			return err
		}},
		{"SetKeysReady", func(qkd.LinkID) error { return s.SetKeysReady(ctx, []qkd.KeyID{pick(), pick()}, "") }},
		{"TakeForPair", func(qkd.LinkID) error {
			r := pairReq(1 + rnd.IntN(2))
			r.SizeBits = 128
			_, err := s.TakeForPair(ctx, r)
			return err
		}},
		{"TakeForPair (link)", func(l qkd.LinkID) error {
			r := pairReq(1)
			r.SizeBits, r.Link = 128, l
			_, err := s.TakeForPair(ctx, r)
			return err
		}},
		{"refill", func(qkd.LinkID) error { return s.refillQueued(ctx) }},
		{"TakeByID", func(qkd.LinkID) error {
			_, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{pick(), pick()}})
			return err
		}},
		{"DeleteKeys", func(qkd.LinkID) error { _, err := s.DeleteKeys(ctx, []qkd.KeyID{pick()}); return err }},
		{"ExpireKeys", func(qkd.LinkID) error { _, err := s.ExpireKeys(ctx, time.Now()); return err }},
		{"AbortAllocation", func(qkd.LinkID) error { return s.AbortAllocation(ctx, "none", []qkd.KeyID{pick()}) }},
		{"InitLink", func(l qkd.LinkID) error {
			_, err := s.InitLink(ctx, keystore.LinkInit{Link: l, Slots: []keystore.SlotRange{{Sender: "P", First: 0, Count: 3}},
				Material: []secret.Bytes{secret.From(make([]byte, 3*keystore.SlotSize))}})
			return err
		}},
		{"TakeSlot", func(l qkd.LinkID) error {
			_, err := s.TakeSlot(ctx, l, qkd.NodeID([]string{"A", "B", "P"}[rnd.IntN(3)]), uint64(rnd.IntN(int(nextSlot[l]+3))))
			return err
		}},
		{"UseSlot", func(l qkd.LinkID) error {
			use := rnd.IntN(2) == 0
			_, _, err := s.UseSlot(ctx, l, "A", uint64(rnd.IntN(int(nextSlot[l]+1))), func(secret.MACKey) bool { return use })
			return err
		}},
		{"ApplyRelayStep", func(l qkd.LinkID) error {
			ps := pieces(l, 32)
			if ps == nil {
				return nil
			}
			fail := rnd.IntN(3) == 0
			st := keystore.RelayStep{ID: fmt.Sprint("step-", rnd.Uint64()), OutLink: l, Out: ps}
			return s.ApplyRelayStep(ctx, st, func(_, out secret.Bytes) (keystore.RelayResult, error) {
				if fail { // rolls back the consumed pieces
					return keystore.RelayResult{}, errors.New("refused")
				}
				k := newKey(l, 256)
				k.Data = out.Clone()
				return keystore.RelayResult{Keys: []keystore.Key{k}, Record: []byte("r")}, nil
			})
		}},
		{"ResizeKeys", func(l qkd.LinkID) error {
			list, err := s.ListKeys(ctx, keystore.KeyFilter{Link: l, Master: master, Slaves: []qkd.SAEID{slave}, SizeBits: 128, Limit: 1})
			if err != nil || len(list) == 0 {
				return err
			}
			a, b := newKey(l, 64), newKey(l, 64)
			return s.ResizeKeys(ctx, keystore.Resize{ID: fmt.Sprint("resize-", rnd.Uint64()), Link: l, Master: master,
				Slaves: []qkd.SAEID{slave}, Old: []qkd.KeyID{list[0].ID}, New: []qkd.KeyID{a.ID, b.ID}, Ready: rnd.IntN(2) == 0})
		}},
	}
	check := func(after string) {
		t.Helper()
		var before []keystore.LinkStats
		for _, l := range links {
			st, err := s.Stats(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			before = append(before, st)
		}
		c := recount(t, s)
		for i, l := range links {
			want := c[l].stats(0)
			if diff := cmp.Diff(want, before[i]); diff != "" {
				t.Fatalf("after %s: Stats(%s) (-recount +got):\n%s", after, l, diff)
			}
			got, err := s.Stats(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("after %s and applying the popped keys: Stats(%s) (-recount +got):\n%s", after, l, diff)
			}
		}
	}
	for range 400 {
		o := table[rnd.IntN(len(table))]
		// Fast-path takes several times in a row, so that pops wait
		// unapplied while Stats is asked.
		for range 1 + rnd.IntN(3) {
			l := links[rnd.IntN(len(links))]
			err := o.do(l)
			ops[o.name]++
			if err != nil {
				if !errors.Is(err, qkd.ErrNotFound) && !errors.Is(err, qkd.ErrInsufficientKey) &&
					!errors.Is(err, keystore.ErrConflict) && !errors.Is(err, keystore.ErrBadAllocation) && err.Error() != "refused" {
					t.Fatalf("%s(%s) = %v", o.name, l, err)
				}
				failed[o.name]++
			}
		}
		// Stats before the next operation applies the popped keys.
		for i, l := range links {
			st, err := s.Stats(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 && st.KeysReady < 0 {
				t.Fatalf("after %s: %d keys ready", o.name, st.KeysReady)
			}
		}
		check(o.name)
	}
	t.Logf("operations %v; failed (rolled back or refused) %v", ops, failed)
	for _, name := range []string{"ConfirmBlocks", "Allocate", "ApplyRelayStep"} {
		if failed[name] == 0 {
			t.Errorf("no %s failed; the test needs its rollback", name)
		}
	}
	if ops["TakeForPair"] == failed["TakeForPair"] {
		t.Error("no fast-path take succeeded; the test needs them")
	}
}

// TestStatsAfterReopenAndZeroize: counters loaded at Open equal the ones
// kept while running; after Zeroize, Stats fails and nothing is counted.
func TestStatsAfterReopenAndZeroize(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir)
	ctx := t.Context()
	readyKeys(t, s, 20, nil)
	if _, err := s.TakeForPair(ctx, pairReq(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InitLink(ctx, keystore.LinkInit{Link: link, Slots: []keystore.SlotRange{{Sender: "A", Count: 2}},
		Material: []secret.Bytes{secret.From(make([]byte, 2*keystore.SlotSize))}}); err != nil {
		t.Fatal(err)
	}
	running, err := s.Stats(ctx, link)
	if err != nil {
		t.Fatal(err)
	}
	if running.KeysReady != 17 {
		t.Errorf("Stats: %d keys ready, want 17", running.KeysReady)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stats(ctx, link); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close = %v, want ErrClosed", err)
	}
	s = openQuiet(t, dir)
	reopened, err := s.Stats(ctx, link)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(running, reopened); diff != "" {
		t.Errorf("Stats after reopening (-before +after):\n%s", diff)
	}
	if err := s.Zeroize(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stats(ctx, link); !errors.Is(err, keystore.ErrZeroized) {
		t.Errorf("Stats after Zeroize = %v, want ErrZeroized", err)
	}
	s.cmu.Lock()
	n := len(s.counts)
	s.cmu.Unlock()
	if n != 0 {
		t.Errorf("%d links counted after Zeroize", n)
	}
}
