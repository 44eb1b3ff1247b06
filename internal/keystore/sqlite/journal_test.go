package sqlite

import (
	"bytes"
	"context"
	"errors"
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
// (the journal, committed transactions) stays.
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
	one := appendFrame(nil, "SAE_A1", []qkd.KeyID{id(1)})
	two := appendFrame(slices.Clone(one), "SAE_B2", []qkd.KeyID{id(2), id(3)})
	flipped := slices.Clone(two)
	flipped[len(one)+9] ^= 1
	tests := []struct {
		name string
		in   []byte
		want []delivery
		used int
	}{
		{"empty", nil, nil, 0},
		{"one", one, []delivery{{id(1), "SAE_A1"}}, len(one)},
		{"two", two, []delivery{{id(1), "SAE_A1"}, {id(2), "SAE_B2"}, {id(3), "SAE_B2"}}, len(two)},
		{"torn second frame", two[:len(two)-1], []delivery{{id(1), "SAE_A1"}}, len(one)},
		{"torn in the header", two[:len(one)+3], []delivery{{id(1), "SAE_A1"}}, len(one)},
		{"corrupt second frame", flipped, []delivery{{id(1), "SAE_A1"}}, len(one)},
		{"garbage after", append(slices.Clone(one), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), []delivery{{id(1), "SAE_A1"}}, len(one)},
		{"zeros", make([]byte, 64), nil, 0},
		{"huge count", []byte{frameMagic, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, used := parseFrames(tt.in)
			if used != tt.used {
				t.Errorf("used = %d, want %d", used, tt.used)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(delivery{})); diff != "" {
				t.Errorf("deliveries (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseFrames(f *testing.F) {
	f.Add(appendFrame(nil, "SAE_A1", []qkd.KeyID{{1}, {2}}), "SAE_B1", 3)
	f.Add([]byte{frameMagic, 0xff, 0xff, 0xff, 0xff, 0, 1}, "", 0)
	f.Fuzz(func(t *testing.T, prefix []byte, caller string, n int) {
		if len(caller) > maxCaller || n < 0 || n > 64 {
			return
		}
		recs, used := parseFrames(prefix) // must not panic
		if used > len(prefix) {
			t.Fatalf("used %d of %d bytes", used, len(prefix))
		}
		// Appending a whole frame after what parses adds exactly its deliveries.
		ids := make([]qkd.KeyID, n)
		for i := range ids {
			ids[i][0] = byte(i)
		}
		again, used2 := parseFrames(appendFrame(slices.Clone(prefix[:used]), qkd.SAEID(caller), ids))
		if len(again) != len(recs)+n || used2 <= used {
			t.Fatalf("frame of %d after %d deliveries parsed as %d deliveries", n, len(recs), len(again))
		}
	})
}

// TestJournalReplay takes keys through the fast path, "crashes" before the
// deliveries reach the database, damages or keeps the journal as each case
// says, and reopens: the journaled deliveries are gone, everything else is
// there with its bytes.
func TestJournalReplay(t *testing.T) {
	tests := []struct {
		name string
		// damage changes the journal after the crash; it returns how many
		// of the last takes it undid (those keys must be back).
		damage func(t *testing.T, path string) int
	}{
		{"intact", func(*testing.T, string) int { return 0 }},
		{"torn last frame", func(t *testing.T, path string) int {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()-5); err != nil {
				t.Fatal(err)
			}
			return 1
		}},
		{"garbage after", func(t *testing.T, path string) int {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("\xa7garbage")); err != nil {
				t.Fatal(err)
			}
			return 0
		}},
		{"left-over rewrite", func(t *testing.T, path string) int {
			// A rewrite interrupted before its rename: a partial copy.
			if err := os.WriteFile(path+".tmp", []byte{frameMagic, 1}, 0o600); err != nil {
				t.Fatal(err)
			}
			return 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openQuiet(t, dir)
			keys := readyKeys(t, s, 40, nil)
			ctx := t.Context()
			var taken [][]keystore.Key
			for _, n := range []int{1, 3, 1, 2} {
				got, err := s.TakeForPair(ctx, pairReq(n))
				if err != nil {
					t.Fatal(err)
				}
				taken = append(taken, got)
			}
			if rowsWithID(t, dir, taken[0][0].ID) != 1 || rowsWithID(t, dir, taken[3][0].ID) != 1 {
				t.Fatal("deliveries reached the database before the crash; the test needs them journaled only")
			}
			crash(t, s)
			undone := tt.damage(t, journalPath(filepath.Join(dir, "keys.db")))

			s = openQuiet(t, dir)
			if _, err := os.Stat(journalPath(filepath.Join(dir, "keys.db")) + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("left-over journal rewrite not removed: %v", err)
			}
			gone := taken[:len(taken)-undone]
			nGone := 0
			for _, ks := range gone {
				for _, k := range ks {
					nGone++
					if n := rowsWithID(t, dir, k.ID); n != 0 {
						t.Errorf("key %s was returned before the crash but is in the database after it", k.ID)
					}
					if _, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{k.ID}}); !errors.Is(err, qkd.ErrNotFound) {
						t.Errorf("TakeByID(returned key %s) after replay = %v, want ErrNotFound", k.ID, err)
					}
				}
			}
			n, err := s.CountKeys(ctx, pairReq(0))
			if err != nil || n != len(keys)-nGone {
				t.Fatalf("CountKeys after replay = %d, %v; want %d", n, err, len(keys)-nGone)
			}
			// Everything not journaled (including the keys of undone
			// takes) is there, in order, with its bytes.
			rest, err := s.TakeForPair(ctx, pairReq(n))
			if err != nil {
				t.Fatal(err)
			}
			want := keys[nGone:]
			if len(rest) != len(want) {
				t.Fatalf("took %d keys after replay, want %d", len(rest), len(want))
			}
			for i := range want {
				if rest[i].ID != want[i].ID || !bytes.Equal(rest[i].Data.Expose(), want[i].Data.Expose()) {
					t.Fatalf("key %d after replay = %s, want %s with its bytes", i, rest[i].ID, want[i].ID)
				}
			}
		})
	}
}

// TestJournalReplayIdempotent: a journal whose deliveries were applied
// already (the flush committed, the crash came before the journal was
// emptied) is replayed without harm.
func TestJournalReplayIdempotent(t *testing.T) {
	dir := t.TempDir()
	path := journalPath(filepath.Join(dir, "keys.db"))
	s := openQuiet(t, dir)
	keys := readyKeys(t, s, 10, nil)
	for range 4 {
		if _, err := s.TakeForPair(t.Context(), pairReq(1)); err != nil {
			t.Fatal(err)
		}
	}
	journaled, err := os.ReadFile(path)
	if err != nil || len(journaled) == 0 {
		t.Fatalf("journal after 4 takes: %d bytes, %v", len(journaled), err)
	}
	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Fatalf("journal holds %d bytes after a flush, want 0", fi.Size())
	}
	crash(t, s)
	if err := os.WriteFile(path, journaled, 0o600); err != nil {
		t.Fatal(err)
	}
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

// TestJournalFailure: when the journal cannot be written, takes go through
// the database (as before the fast path) and nothing is delivered twice.
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
	take(2) // fills the cache
	breakJournal(t, s)
	take(3) // the fast path fails, the database delivers
	s.cmu.Lock()
	fastErr := s.fastErr
	s.cmu.Unlock()
	if fastErr == nil || fastErr == errStopped {
		t.Fatalf("fast path not shut after a journal failure (fastErr %v)", fastErr)
	}
	take(1)
	if n := rowsWithID(t, dir, got[4].ID); n != 0 {
		t.Errorf("key delivered through the database still has %d rows", n)
	}
	if err := s.Close(); err != nil {
		t.Logf("Close after a journal failure = %v", err)
	}
	s = openQuiet(t, dir)
	rest, err := s.TakeForPair(ctx, pairReq(len(keys)-len(got)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(keys), ids(append(got, rest...))); diff != "" {
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
// removes the journal; the next Open has nothing to replay.
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
}

// TestJournalApplied: once deliveries are applied the journal is emptied;
// if some are not, it is left alone until it grows past journalTidy, then
// replaced by a journal of the unapplied ones only. It is never readable
// by others.
func TestJournalApplied(t *testing.T) {
	for _, sync := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "j")
		j, err := openJournal(path, sync, nil)
		if err != nil {
			t.Fatal(err)
		}
		var all []delivery
		for i := 0; j.size < journalTidy; i++ {
			id := qkd.KeyID{0: byte(i), 1: byte(i >> 8), 15: 1}
			caller := qkd.SAEID([]string{"SAE_A1", "SAE_B1"}[i%2])
			if err := j.append(caller, []qkd.KeyID{id}); err != nil {
				t.Fatal(err)
			}
			all = append(all, delivery{id: id, caller: caller})
		}
		read := func() []delivery {
			t.Helper()
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			recs, used := parseFrames(raw)
			if used != len(raw) {
				t.Fatalf("journal has %d bytes past its frames", len(raw)-used)
			}
			return recs
		}
		if err := j.applied(all[1:]); err != nil { // large: rewritten
			t.Fatal(err)
		}
		if diff := cmp.Diff(all[1:], read(), cmp.AllowUnexported(delivery{})); diff != "" {
			t.Errorf("journal after a rewrite (-want +got):\n%s", diff)
		}
		if err := j.append("SAE_C1", []qkd.KeyID{{9}}); err != nil { // still appends
			t.Fatal(err)
		}
		if got := read(); len(got) != len(all) || got[len(got)-1].caller != "SAE_C1" {
			t.Errorf("append after a rewrite: %d deliveries, want %d", len(got), len(all))
		}
		if err := j.applied(nil); err != nil {
			t.Fatal(err)
		}
		if got := read(); len(got) != 0 {
			t.Errorf("journal after everything was applied holds %d deliveries", len(got))
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("journal mode = %v, %v; want 0600", fi.Mode().Perm(), err)
		}
		if err := j.close(true); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("rewrite left %s.tmp: %v", path, err)
		}
	}
}
