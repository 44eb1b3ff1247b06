package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/storetest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// pairReq is a TakeForPair request of slave for n of master's 256-bit keys.
func pairReq(n int) keystore.TakeRequest {
	return keystore.TakeRequest{Master: master, Caller: slave, Slaves: []qkd.SAEID{slave}, SizeBits: 256, Number: n}
}

// readyKeys allocates n Ready 256-bit keys of (master, [slave]) pending for
// slave from one new block, and returns them with their bytes. expires, if
// set, gives key i its expiry.
func readyKeys(t testing.TB, s *Store, n int, expires func(i int) time.Time) []keystore.Key {
	t.Helper()
	ctx := context.Background()
	st, err := s.Stats(ctx, link)
	if err != nil {
		t.Fatal(err)
	}
	idx := uint64(100)
	if st.HasIndex {
		idx = st.MaxIndex + 1
	}
	data := storetest.Pattern(link, idx, 32*n)
	if err := s.AddBlock(ctx, keystore.Block{Link: link, Index: idx, Data: secret.From(data)}); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmBlocks(ctx, link, []uint64{idx}, 0); err != nil {
		t.Fatal(err)
	}
	a := keystore.Allocation{Link: link, Pieces: []keystore.Piece{{Index: idx, Len: 32 * n}}}
	for i := range n {
		id, err := qkd.NewKeyID(nil)
		if err != nil {
			t.Fatal(err)
		}
		k := keystore.Key{ID: id, State: keystore.KeyReady, Master: master, Slaves: []qkd.SAEID{slave},
			Pending: []qkd.SAEID{slave}, SizeBits: 256}
		if expires != nil {
			k.Expires = expires(i)
		}
		a.Keys = append(a.Keys, k)
	}
	if err := s.Allocate(ctx, a); err != nil {
		t.Fatal(err)
	}
	out := slices.Clone(a.Keys)
	for i := range out {
		out[i].Data = secret.From(data[32*i : 32*(i+1)])
	}
	return out
}

// rowsWithID counts the rows of key id in the database file, read from a
// second connection as an attacker with the disk would.
func rowsWithID(t testing.TB, dir string, id qkd.KeyID) int {
	t.Helper()
	var n int
	if err := rawDB(t, filepath.Join(dir, "keys.db")).QueryRow("SELECT COUNT(*) FROM keys WHERE id = ?", id[:]).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// crash stops s as kill -9 would: no flush, no cleanup; what was written
// (the journal, committed transactions) stays, synced or not.
func crash(t testing.TB, s *Store) {
	t.Helper()
	s.stopFlusher()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmu.Lock()
	defer s.cmu.Unlock()
	s.closed = true
	s.fastErr = errStopped
	s.durable.shut(ErrClosed)
	if err := s.jrn.f.Close(); err != nil {
		t.Fatal(err)
	}
	s.closeStmts()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
}

// openQuiet opens the store at dir without its background flusher, so that
// only the test decides when journaled deliveries are applied.
func openQuiet(t testing.TB, dir string) *Store {
	t.Helper()
	s := openAt(t, dir)
	s.stopFlusher()
	return s
}

func ids(keys []keystore.Key) []qkd.KeyID {
	out := make([]qkd.KeyID, len(keys))
	for i := range keys {
		out[i] = keys[i].ID
	}
	return out
}

func TestParseFrames(t *testing.T) {
	id := func(b byte) qkd.KeyID { return qkd.KeyID{0: b, 15: b} }
	one := appendFrame(nil, frameLease, "SAE_A1", []qkd.KeyID{id(1)})
	two := appendFrame(slices.Clone(one), frameUnlease, "SAE_B2", []qkd.KeyID{id(2), id(3)})
	flipped := slices.Clone(two)
	flipped[len(one)+9] ^= 1
	badKind := slices.Clone(two)
	badKind[len(one)] = 0x42
	tests := []struct {
		name string
		in   []byte
		want []entry
		used int
	}{
		{"empty", nil, nil, 0},
		{"one", one, []entry{{id(1), "SAE_A1", false}}, len(one)},
		{"two", two, []entry{{id(1), "SAE_A1", false}, {id(2), "SAE_B2", true}, {id(3), "SAE_B2", true}}, len(two)},
		{"torn second frame", two[:len(two)-1], []entry{{id(1), "SAE_A1", false}}, len(one)},
		{"torn in the header", two[:len(one)+3], []entry{{id(1), "SAE_A1", false}}, len(one)},
		{"corrupt second frame", flipped, []entry{{id(1), "SAE_A1", false}}, len(one)},
		{"unknown kind", badKind, []entry{{id(1), "SAE_A1", false}}, len(one)},
		{"garbage after", append(slices.Clone(one), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), []entry{{id(1), "SAE_A1", false}}, len(one)},
		{"zeros", make([]byte, 64), nil, 0},
		{"huge count", []byte{frameLease, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, used := parseFrames(tt.in)
			if used != tt.used {
				t.Errorf("used = %d, want %d", used, tt.used)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(entry{})); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLeased: replay applies frames in order; what is leased at the end
// is delivered.
func TestLeased(t *testing.T) {
	id := func(b byte) qkd.KeyID { return qkd.KeyID{0: b, 15: b} }
	lease := func(c qkd.SAEID, ks ...byte) []entry {
		var out []entry
		for _, k := range ks {
			out = append(out, entry{id: id(k), caller: c})
		}
		return out
	}
	unlease := func(c qkd.SAEID, ks ...byte) []entry {
		out := lease(c, ks...)
		for i := range out {
			out[i].unlease = true
		}
		return out
	}
	tests := []struct {
		name   string
		frames [][]entry
		want   []delivery
	}{
		{"nothing", nil, nil},
		{"lease", [][]entry{lease("A", 1, 2)}, []delivery{{id: id(1), caller: "A"}, {id: id(2), caller: "A"}}},
		{"unlease part", [][]entry{lease("A", 1, 2, 3), unlease("A", 2)}, []delivery{{id: id(1), caller: "A"}, {id: id(3), caller: "A"}}},
		{"unlease all", [][]entry{lease("A", 1, 2), unlease("A", 2, 1)}, nil},
		{"leased again", [][]entry{lease("A", 1, 2), unlease("A", 1, 2), lease("A", 2)}, []delivery{{id: id(2), caller: "A"}}},
		{"unlease before its lease", [][]entry{unlease("A", 1), lease("A", 1)}, []delivery{{id: id(1), caller: "A"}}},
		{"unlease by another caller", [][]entry{lease("A", 1), unlease("B", 1)}, []delivery{{id: id(1), caller: "A"}}},
		{"two callers", [][]entry{lease("A", 1), lease("B", 2), unlease("A", 1)}, []delivery{{id: id(2), caller: "B"}}},
		{"last lease wins", [][]entry{lease("A", 1), lease("B", 1)}, []delivery{{id: id(1), caller: "B"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := leased(slices.Concat(tt.frames...))
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(delivery{})); diff != "" {
				t.Errorf("leased (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseFrames(f *testing.F) {
	f.Add(appendFrame(nil, frameLease, "SAE_A1", []qkd.KeyID{{1}, {2}}), "SAE_B1", 3, false)
	f.Add([]byte{frameUnlease, 0xff, 0xff, 0xff, 0xff, 0, 1}, "", 0, true)
	f.Fuzz(func(t *testing.T, prefix []byte, caller string, n int, unlease bool) {
		if len(caller) > maxCaller || n < 0 || n > 64 {
			return
		}
		es, used := parseFrames(prefix) // must not panic
		if used > len(prefix) {
			t.Fatalf("used %d of %d bytes", used, len(prefix))
		}
		_ = leased(es)
		// Appending a whole frame after what parses adds exactly its entries.
		ids := make([]qkd.KeyID, n)
		for i := range ids {
			ids[i][0] = byte(i)
		}
		kind := byte(frameLease)
		if unlease {
			kind = frameUnlease
		}
		again, used2 := parseFrames(appendFrame(slices.Clone(prefix[:used]), kind, qkd.SAEID(caller), ids))
		if len(again) != len(es)+n || used2 <= used {
			t.Fatalf("frame of %d after %d entries parsed as %d entries", n, len(es), len(again))
		}
		for _, e := range again[len(es):] {
			if e.unlease != unlease || e.caller != qkd.SAEID(caller) {
				t.Fatalf("entry %+v, want caller %q unlease %v", e, caller, unlease)
			}
		}
	})
}

// journalSize returns the size of s's journal file.
func journalSize(t testing.TB, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(journalPath(filepath.Join(dir, "keys.db")))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestPopNoIO: once a cache is filled (and leased), popping from it writes
// nothing: no journal frame, no commit.
func TestPopNoIO(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir)
	readyKeys(t, s, 40, nil)
	ctx := t.Context()
	if _, err := s.TakeForPair(ctx, pairReq(1)); err != nil { // fills, leases, pops
		t.Fatal(err)
	}
	if journalSize(t, dir) == 0 {
		t.Fatal("no lease in the journal after a fill")
	}
	takesWithoutIO(t, s, dir, 10, 2)
}

// takesWithoutIO takes n×number keys of pairReq's pair and checks that
// they came from the cache: the journal did not grow and nothing was
// written.
func takesWithoutIO(t *testing.T, s *Store, dir string, n, number int) {
	t.Helper()
	size, dirty := journalSize(t, dir), s.durable.dirty.Load()
	for range n {
		if _, err := s.TakeForPair(t.Context(), pairReq(number)); err != nil {
			t.Fatal(err)
		}
	}
	if got := journalSize(t, dir); got != size {
		t.Errorf("journal grew from %d to %d bytes over %d fast-path takes", size, got, n)
	}
	if got := s.durable.dirty.Load(); got != dirty {
		t.Errorf("%d writes over %d fast-path takes, want none", got-dirty, n)
	}
}

// cacheOf returns the number of live keys in the cache of pairReq's pair
// and whether it waits for a refill.
func cacheOf(s *Store) (live int, refilling bool) {
	r := pairReq(0)
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if c := s.caches[pairOf(&r)]; c != nil {
		return c.live(), c.refilling
	}
	return 0, false
}

// TestJournalReplay takes keys through the fast path (and other ways),
// "crashes" (as kill -9: what was written stays), damages or keeps the
// journal as each case says, and reopens: the keys that were leased and
// not given back are gone — popped or not — and exactly the others are
// there, in order, with their bytes. No key that was returned is there.
func TestJournalReplay(t *testing.T) {
	type result struct {
		returned []keystore.Key
		gone     int // keys[:gone] are gone, also those not returned
		also     []qkd.KeyID
	}
	take := func(t *testing.T, s *Store, n int) []keystore.Key {
		t.Helper()
		got, err := s.TakeForPair(t.Context(), pairReq(n))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	byID := func(t *testing.T, s *Store, k keystore.Key) []keystore.Key {
		t.Helper()
		got, err := s.TakeByID(t.Context(), keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{k.ID}})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	cut := func(n int64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()-n); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		// run works on a store whose caches take 8 keys; keys are 40.
		run    func(t *testing.T, s *Store, keys []keystore.Key) result
		damage func(t *testing.T, path string)
	}{
		{"leased", func(t *testing.T, s *Store, keys []keystore.Key) result {
			got := append(take(t, s, 1), take(t, s, 3)...)
			return result{returned: got, gone: 8}
		}, nil},
		{"evicted", func(t *testing.T, s *Store, keys []keystore.Key) result {
			got := take(t, s, 3)
			got = append(got, byID(t, s, keys[5])...) // evicts the cache: 3, 4, 6, 7 unleased
			return result{returned: got, gone: 3, also: []qkd.KeyID{keys[5].ID}}
		}, nil},
		{"evicted, unlease torn", func(t *testing.T, s *Store, keys []keystore.Key) result {
			got := take(t, s, 3)
			got = append(got, byID(t, s, keys[5])...)
			return result{returned: got, gone: 8} // the unlease is lost: burnt
		}, cut(5)},
		{"leased again", func(t *testing.T, s *Store, keys []keystore.Key) result {
			got := take(t, s, 3)
			got = append(got, byID(t, s, keys[5])...)
			got = append(got, take(t, s, 2)...) // leases 3, 4, 6..11
			return result{returned: got, gone: 12}
		}, nil},
		{"refilled", func(t *testing.T, s *Store, keys []keystore.Key) result {
			got := append(take(t, s, 1), take(t, s, 4)...) // 3 of 8 left: a refill is queued
			if err := s.refillQueued(t.Context()); err != nil {
				t.Fatal(err)
			}
			got = append(got, take(t, s, 1)...)
			return result{returned: got, gone: 16} // 5..7 kept, 8..15 leased
		}, nil},
		{"expired", func(t *testing.T, s *Store, keys []keystore.Key) result {
			got := take(t, s, 1)
			if _, err := s.ExpireKeys(t.Context(), time.Now()); err != nil { // no key expires: nothing evicted
				t.Fatal(err)
			}
			return result{returned: got, gone: 8}
		}, nil},
		{"garbage after", func(t *testing.T, s *Store, keys []keystore.Key) result {
			return result{returned: take(t, s, 2), gone: 8}
		}, func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("\xa7garbage")); err != nil {
				t.Fatal(err)
			}
		}},
		{"left-over rewrite", func(t *testing.T, s *Store, keys []keystore.Key) result {
			return result{returned: take(t, s, 2), gone: 8}
		}, func(t *testing.T, path string) {
			// A rewrite interrupted before its rename: a partial copy.
			if err := os.WriteFile(path+".tmp", []byte{frameLease, 1}, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openQuiet(t, dir)
			keys := readyKeys(t, s, 40, nil)
			setFill(s, pairReq(1), 8)
			res := tt.run(t, s, keys)
			crash(t, s)
			if tt.damage != nil {
				tt.damage(t, journalPath(filepath.Join(dir, "keys.db")))
			}

			s = openQuiet(t, dir)
			ctx := t.Context()
			if _, err := os.Stat(journalPath(filepath.Join(dir, "keys.db")) + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("left-over journal rewrite not removed: %v", err)
			}
			for _, k := range res.returned {
				if n := rowsWithID(t, dir, k.ID); n != 0 {
					t.Errorf("key %s was returned before the crash but is in the database after it", k.ID)
				}
				if _, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{k.ID}}); !errors.Is(err, qkd.ErrNotFound) {
					t.Errorf("TakeByID(returned key %s) after replay = %v, want ErrNotFound", k.ID, err)
				}
			}
			var want []keystore.Key
			for _, k := range keys[res.gone:] {
				if !slices.Contains(res.also, k.ID) {
					want = append(want, k)
				}
			}
			n, err := s.CountKeys(ctx, pairReq(0))
			if err != nil || n != len(want) {
				t.Fatalf("CountKeys after replay = %d, %v; want %d", n, err, len(want))
			}
			rest, err := s.TakeForPair(ctx, pairReq(n))
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if rest[i].ID != want[i].ID || !bytes.Equal(rest[i].Data.Expose(), want[i].Data.Expose()) {
					t.Fatalf("key %d after replay = %s, want %s with its bytes", i, rest[i].ID, want[i].ID)
				}
			}
		})
	}
}

// TestJournalReplayIdempotent: a journal whose leases were all applied
// already (the keys were popped and the flush committed; the journal was
// not tidied) is replayed without harm.
func TestJournalReplayIdempotent(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir)
	keys := readyKeys(t, s, 10, nil)
	setFill(s, pairReq(1), 4)
	for _, n := range []int{1, 3} { // the cache of 4 runs dry
		if _, err := s.TakeForPair(t.Context(), pairReq(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if journalSize(t, dir) == 0 {
		t.Fatal("journal empty after the flush; the test needs the applied lease in it")
	}
	crash(t, s)
	s = openQuiet(t, dir)
	if n, err := s.CountKeys(t.Context(), pairReq(0)); n != 6 || err != nil {
		t.Fatalf("CountKeys after replaying applied deliveries = %d, %v; want 6", n, err)
	}
	got, err := s.TakeForPair(t.Context(), pairReq(6))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(keys[4:]), ids(got)); diff != "" {
		t.Errorf("keys after replay (-want +got):\n%s", diff)
	}
}

// TestJournalFailure: when the journal cannot be written, the keys leased
// already are still served, the fast path shuts at the first frame that
// fails (here an unlease), takes go through the database (as before the
// fast path), and nothing is delivered twice, also across a reopen.
func TestJournalFailure(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir)
	keys := readyKeys(t, s, 20, nil)
	ctx := t.Context()
	var got []keystore.Key
	take := func(n int) {
		t.Helper()
		ks, err := s.TakeForPair(ctx, pairReq(n))
		if err != nil {
			t.Fatalf("TakeForPair(%d) = %v", n, err)
		}
		got = append(got, ks...)
	}
	take(2) // fills the cache: every key leased
	breakJournal(t, s)
	take(3) // leased: served without writing
	s.cmu.Lock()
	fastErr := s.fastErr
	s.cmu.Unlock()
	if fastErr != nil {
		t.Fatalf("fast path shut (%v) before anything was written", fastErr)
	}
	byID, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: ids(keys[10:11])})
	if err != nil { // the eviction's unlease fails; the take does not
		t.Fatal(err)
	}
	s.cmu.Lock()
	fastErr = s.fastErr
	cached := len(s.cachedIDs)
	s.cmu.Unlock()
	if fastErr == nil || fastErr == errStopped || cached != 0 {
		t.Fatalf("after a failed journal write: fastErr %v, %d keys cached; want the fast path shut, none", fastErr, cached)
	}
	take(1) // through the database
	if n := rowsWithID(t, dir, got[5].ID); n != 0 {
		t.Errorf("key delivered through the database still has %d rows", n)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after a journal failure = %v", err)
	}
	s = openQuiet(t, dir)
	rest, err := s.TakeForPair(ctx, pairReq(len(keys)-len(got)-1))
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(ids(keys[:5]), ids(keys[10:11]), ids(keys[5:10]), ids(keys[11:]))
	if diff := cmp.Diff(want, ids(slices.Concat(got[:5], byID, got[5:], rest))); diff != "" {
		t.Errorf("keys delivered across the failure and a reopen (-want +got):\n%s", diff)
	}
}

// breakJournal makes every write to s's journal fail from now on (the file
// is reopened read-only: writes fail, fsync still works).
func breakJournal(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmu.Lock()
	defer s.cmu.Unlock()
	ro, err := os.Open(s.jrn.path)
	if err != nil {
		t.Fatal(err)
	}
	s.jrn.fmu.Lock()
	_ = s.jrn.f.Close()
	s.jrn.f = ro
	s.jrn.fmu.Unlock()
}

// TestZeroizeDestroysJournal: Zeroize wipes cached keys and destroys the
// journal with the rows.
func TestZeroizeDestroysJournal(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir)
	readyKeys(t, s, 10, nil)
	if _, err := s.TakeForPair(t.Context(), pairReq(1)); err != nil {
		t.Fatal(err)
	}
	s.cmu.Lock()
	var cached []keystore.Key
	for _, c := range s.caches {
		cached = append(cached, c.keys[c.head:]...)
	}
	s.cmu.Unlock()
	if len(cached) == 0 {
		t.Fatal("no cached keys")
	}
	if err := s.Zeroize(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, k := range cached {
		if !bytes.Equal(k.Data.Expose(), make([]byte, 32)) {
			t.Fatalf("cached key %s not wiped by Zeroize", k.ID)
		}
	}
	if _, err := os.Stat(journalPath(filepath.Join(dir, "keys.db"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal after Zeroize: %v, want it gone", err)
	}
	if _, err := s.TakeForPair(t.Context(), pairReq(1)); !errors.Is(err, keystore.ErrZeroized) {
		t.Errorf("TakeForPair after Zeroize = %v, want ErrZeroized", err)
	}
}

// TestCloseAppliesJournal: Close applies the journaled deliveries and
// removes the journal; the next Open has nothing to replay, and the keys
// leased but not taken are there.
func TestCloseAppliesJournal(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir)
	readyKeys(t, s, 10, nil)
	got, err := s.TakeForPair(t.Context(), pairReq(3))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(journalPath(filepath.Join(dir, "keys.db"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal after Close: %v, want it gone", err)
	}
	for _, k := range got {
		if n := rowsWithID(t, dir, k.ID); n != 0 {
			t.Errorf("delivered key %s has %d rows after Close", k.ID, n)
		}
	}
	if _, err := s.TakeForPair(t.Context(), pairReq(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("TakeForPair after Close = %v, want ErrClosed", err)
	}
	// The keys leased but not taken are back.
	s = openQuiet(t, dir)
	if n, err := s.CountKeys(t.Context(), pairReq(0)); n != 7 || err != nil {
		t.Errorf("CountKeys after Close and Open = %d, %v; want 7", n, err)
	}
}

// TestJournalRewrite: rewrite replaces the journal by the frames given and
// appends go to the new file; the file is never readable by others and no
// temporary file is left.
func TestJournalRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := openJournal(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; j.size < journalTidy; i++ {
		id := qkd.KeyID{0: byte(i), 1: byte(i >> 8), 15: 1}
		if err := j.append(frameLease, qkd.SAEID([]string{"SAE_A1", "SAE_B1"}[i%2]), []qkd.KeyID{id}); err != nil {
			t.Fatal(err)
		}
	}
	read := func() []entry {
		t.Helper()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		es, used := parseFrames(raw)
		if used != len(raw) {
			t.Fatalf("journal has %d bytes past its frames", len(raw)-used)
		}
		return es
	}
	live := appendFrame(nil, frameLease, "SAE_A1", []qkd.KeyID{{7}, {8}})
	if err := j.rewrite(live); err != nil {
		t.Fatal(err)
	}
	want := []entry{{qkd.KeyID{7}, "SAE_A1", false}, {qkd.KeyID{8}, "SAE_A1", false}}
	if diff := cmp.Diff(want, read(), cmp.AllowUnexported(entry{})); diff != "" {
		t.Errorf("journal after a rewrite (-want +got):\n%s", diff)
	}
	if err := j.append(frameUnlease, "SAE_A1", []qkd.KeyID{{8}}); err != nil { // still appends
		t.Fatal(err)
	}
	want = append(want, entry{qkd.KeyID{8}, "SAE_A1", true})
	if diff := cmp.Diff(want, read(), cmp.AllowUnexported(entry{})); diff != "" {
		t.Errorf("journal after a rewrite and an append (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != j.size {
		t.Errorf("journal: %v, %v; want mode 0600 and %d bytes", fi, err, j.size)
	}
	if err := j.close(true); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".tmp"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after close(true): %v", p, err)
		}
	}
}

// TestTidyJournal: the journal grows by a lease per fill; once it is past
// journalTidy a flush rewrites it with the live leases only, and a crash
// after that burns exactly the keys that were leased and not taken.
func TestTidyJournal(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir)
	ctx := t.Context()
	const fill = 512
	n := int(journalTidy/(fill*idSize)+2) * fill
	keys := readyKeys(t, s, n+100, nil)
	setFill(s, pairReq(1), fill)
	var got []keystore.Key
	for len(got) < n-fill/2 {
		ks, err := s.TakeForPair(ctx, pairReq(fill/4))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ks...)
	}
	before := journalSize(t, dir)
	if before < journalTidy {
		t.Fatalf("journal of %d bytes after %d keys; the test needs more than %d", before, len(got), journalTidy)
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.cmu.Lock()
	live := len(s.cachedIDs)
	s.cmu.Unlock()
	after := journalSize(t, dir)
	if after >= before || after > frameSize(slave, live) {
		t.Errorf("journal of %d bytes tidied to %d, want at most one lease of the %d cached keys (%d)",
			before, after, live, frameSize(slave, live))
	}
	crash(t, s)
	s = openQuiet(t, dir)
	left, err := s.CountKeys(ctx, pairReq(0))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(keys) - len(got) - live; left != want {
		t.Errorf("%d keys after the crash, want %d (%d taken, %d leased burnt)", left, want, len(got), live)
	}
	for _, k := range got[len(got)-3:] {
		if _, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{k.ID}}); !errors.Is(err, qkd.ErrNotFound) {
			t.Errorf("TakeByID(taken key) after the crash = %v, want ErrNotFound", err)
		}
	}
}

// TestFillFollowsRequestSize: a pair that asks for many keys at once gets
// a cache of fillPerRequest such requests (up to maxFill), so that the
// requests after the first are served from memory, with no I/O.
func TestFillFollowsRequestSize(t *testing.T) {
	for _, tc := range []struct {
		number, pool, want int
	}{
		{1, 3000, minFill},
		{100, 9000, fillPerRequest * 100},
		{512, 20000, maxFill},
	} {
		t.Run(fmt.Sprint(tc.number), func(t *testing.T) {
			dir := t.TempDir()
			s := openQuiet(t, dir)
			readyKeys(t, s, tc.pool, nil)
			ctx := t.Context()
			if _, err := s.TakeForPair(ctx, pairReq(tc.number)); err != nil { // fills, leases, pops
				t.Fatal(err)
			}
			if live, _ := cacheOf(s); live != tc.want-tc.number {
				t.Fatalf("cache holds %d keys after the first take, want %d", live, tc.want-tc.number)
			}
			takesWithoutIO(t, s, dir, (tc.want/2-tc.number)/tc.number, tc.number) // not below half: no refill
		})
	}
}

// TestFillGrowsFromCache: a pair whose requests grow while its cache
// serves them is refilled (by the flusher, in the background) to
// fillPerRequest of the larger requests.
func TestFillGrowsFromCache(t *testing.T) {
	s := openAt(t, t.TempDir())
	readyKeys(t, s, fillPerRequest*100+minFill, nil)
	ctx := t.Context()
	if _, err := s.TakeForPair(ctx, pairReq(1)); err != nil { // a cache of minFill
		t.Fatal(err)
	}
	if _, err := s.TakeForPair(ctx, pairReq(100)); err != nil { // from the cache: queues a refill
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for { // until the flusher has refilled the cache
		live, refilling := cacheOf(s)
		if !refilling {
			if want := fillPerRequest*100 + minFill - 101; live != want {
				t.Fatalf("cache refilled to %d keys, want %d", live, want)
			}
			return
		}
		select {
		case <-wait.Done():
			t.Fatal("no refill within 30 s")
		case <-time.After(time.Millisecond):
		}
	}
}
