package sqlite

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// copyFiles copies the named files from dir src to dir dst; a file absent
// in src is removed from dst.
func copyFiles(t testing.TB, src, dst string, names ...string) {
	t.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(src, n))
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.Remove(filepath.Join(dst, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	dbFiles      = []string{"keys.db", "keys.db-wal"}
	journalFiles = []string{"keys.db.journal"}
)

// TestPowerLoss simulates power loss. The durable state of the files is
// copied aside when a flush of the syncer completes (the database, its
// WAL and the journal) and when a journal rewrite is durable (the
// journal): what power loss must keep at least — the test runs in one
// goroutine, so nothing is written between the end of the flush and the
// copy. During a random run of takes (fast path, refills, slow path, by
// ID), deletions and flushes that tidy the journal, right after the
// first tidies and at the end, the store is opened from a copy of the files as of then, and
// of mixes of those and the files as they are (a disk that kept more of
// one file than of the other): no key that was returned is there, every
// key there has its bytes.
func TestPowerLoss(t *testing.T) {
	for seed := range 2 {
		t.Run("seed="+strconv.Itoa(seed), func(t *testing.T) { powerLoss(t, uint64(seed)) })
	}
}

func powerLoss(t *testing.T, seed uint64) {
	dir, snap := t.TempDir(), t.TempDir()
	s := openQuiet(t, dir)
	ctx := t.Context()
	keys := readyKeys(t, s, 300, nil)
	setFill(s, pairReq(1), 16)
	s.mu.Lock()
	s.tidyAt = 1 << 10 // tidied every few fills
	s.jrn.onRewritten = func() { copyFiles(t, dir, snap, journalFiles...) }
	s.mu.Unlock()
	snapshots := 0
	s.durable.mu.Lock()
	s.durable.onFlushed = func() {
		snapshots++
		copyFiles(t, dir, snap, append(dbFiles, journalFiles...)...)
	}
	s.durable.mu.Unlock()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	byID := make(map[qkd.KeyID][]byte, len(keys))
	for _, k := range keys {
		byID[k.ID] = k.Data.Expose()
	}

	rnd := rand.New(rand.NewPCG(seed, 42))
	returned := make(map[qkd.KeyID]bool)
	note := func(ks []keystore.Key, err error) {
		t.Helper()
		if err != nil && !errors.Is(err, qkd.ErrInsufficientKey) && !errors.Is(err, qkd.ErrNotFound) {
			t.Fatal(err)
		}
		for _, k := range ks {
			if returned[k.ID] {
				t.Fatalf("key %s returned twice", k.ID)
			}
			returned[k.ID] = true
		}
	}
	tidied := 0
	for range 200 {
		switch op := rnd.IntN(10); {
		case op < 5:
			note(s.TakeForPair(ctx, pairReq(1+rnd.IntN(3))))
		case op == 5:
			r := pairReq(1)
			r.Link = link
			note(s.TakeForPair(ctx, r))
		case op == 6:
			note(s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{keys[rnd.IntN(len(keys))].ID}}))
		case op == 7:
			if _, err := s.DeleteKeys(ctx, []qkd.KeyID{keys[rnd.IntN(len(keys))].ID}); err != nil {
				t.Fatal(err)
			}
		case op == 8:
			if err := s.refillQueued(ctx); err != nil {
				t.Fatal(err)
			}
		default:
			before := journalSize(t, dir)
			if err := s.flush(ctx); err != nil {
				t.Fatal(err)
			}
			if journalSize(t, dir) < before {
				tidied++
				if tidied <= 2 { // each check opens 4 stores: slow under -race
					powerLost(t, dir, snap, returned, byID)
				}
			}
		}
	}
	t.Logf("%d keys returned, %d flushes, journal tidied %d times", len(returned), snapshots, tidied)
	if tidied == 0 {
		t.Error("the journal was never tidied; the test needs it")
	}
	powerLost(t, dir, snap, returned, byID)
}

// powerLost opens copies of the files of a store (dir: as they are; snap:
// as of the last flush) and checks that no key that was returned is there
// and every key there has its bytes.
func powerLost(t *testing.T, dir, snap string, returned map[qkd.KeyID]bool, byID map[qkd.KeyID][]byte) {
	t.Helper()
	mixes := []struct {
		name                string
		dbFrom, journalFrom string
	}{
		{"as of the last flush", snap, snap},
		{"database as of the last flush, journal as is", snap, dir},
		{"database as is, journal as of the last flush", dir, snap},
		{"as is (kill -9)", dir, dir},
	}
	for _, m := range mixes {
		at := t.TempDir()
		copyFiles(t, dir, at, "keys.db.kek")
		copyFiles(t, m.dbFrom, at, dbFiles...)
		copyFiles(t, m.journalFrom, at, journalFiles...)
		s, err := Open(t.Context(), Options{Path: filepath.Join(at, "keys.db")})
		if err != nil {
			t.Fatalf("%s: Open = %v", m.name, err)
		}
		s.stopFlusher()
		for id := range returned {
			if n := rowsWithID(t, at, id); n != 0 {
				t.Fatalf("%s: key %s was returned before the power loss and is there after it", m.name, id)
			}
		}
		left, err := s.CountKeys(t.Context(), keystore.TakeRequest{Master: master, Caller: slave, Slaves: []qkd.SAEID{slave}, SizeBits: 256, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if left > 0 {
			rest, err := s.TakeForPair(t.Context(), pairReq(left))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range rest {
				if returned[k.ID] || !bytes.Equal(byID[k.ID], k.Data.Expose()) {
					t.Errorf("%s: key %s after the power loss: returned before %v, or other bytes", m.name, k.ID, returned[k.ID])
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
