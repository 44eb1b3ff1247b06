package sqlite

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/storetest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

const (
	link   qkd.LinkID = "A-B"
	master qkd.SAEID  = "SAE_A1"
	slave  qkd.SAEID  = "SAE_B1"
)

// fixture fills s with blocks, keys, slots and an outbox entry, and returns
// the IDs of the keys (Ready, for slave) and their bytes.
func fixture(t testing.TB, s keystore.Store) ([]qkd.KeyID, [][]byte) {
	t.Helper()
	ctx := context.Background()
	for i := uint64(1); i <= 6; i++ {
		if err := s.AddBlock(ctx, keystore.Block{Link: link, Index: i, Data: secret.From(storetest.Pattern(link, i, 256))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ConfirmBlocks(ctx, link, []uint64{2, 1, 3, 4}, 32); err != nil {
		t.Fatal(err)
	}
	var ids []qkd.KeyID
	var keys [][]byte
	var a keystore.Allocation
	a.Link = link
	a.Pieces = []keystore.Piece{{Index: 2, Len: 256}, {Index: 4, Len: 64}}
	for i := range 2 {
		id, _ := qkd.NewKeyID(nil)
		ids = append(ids, id)
		a.Keys = append(a.Keys, keystore.Key{ID: id, State: keystore.KeyReady, Master: master, Slaves: []qkd.SAEID{slave}, Pending: []qkd.SAEID{slave}, SizeBits: 256})
		keys = append(keys, storetest.Pattern(link, 2, 256)[32+32*i:64+32*i])
	}
	a.Slots = &keystore.SlotRange{Sender: "A", First: 0, Count: 4}
	a.Pieces[0].Off = 32
	a.Pieces[0].Len = 224
	a.Pieces[1].Len = 64 + 4*keystore.SlotSize - 224
	a.Outbox = &keystore.Outbox{ID: "batch-1", Link: link, Payload: []byte("hello")}
	if err := s.Allocate(ctx, a); err != nil {
		t.Fatalf("Allocate = %v", err)
	}
	for seq := range uint64(3) {
		if _, err := s.TakeSlot(ctx, link, "A", seq); err != nil {
			t.Fatal(err)
		}
	}
	// Two relay steps (a destination's and a source's), with their records.
	steps := []keystore.RelayStep{
		{ID: "relay-1", InLink: link, In: []keystore.Piece{{Index: 3, Len: 48}}},
		{ID: "relay-2", OutLink: link, Out: []keystore.Piece{{Index: 1, Len: 16}}, Expires: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, st := range steps {
		if err := s.ApplyRelayStep(ctx, st, func(_, _ secret.Bytes) (keystore.RelayResult, error) {
			return keystore.RelayResult{Record: fixtureRecords[st.ID]}, nil
		}); err != nil {
			t.Fatalf("ApplyRelayStep(%s) = %v", st.ID, err)
		}
	}
	return ids, keys
}

// fixtureRecords are the relay records fixture stores, by step ID.
var fixtureRecords = map[string][]byte{
	"relay-1": storetest.Pattern("record", 1, 600),
	"relay-2": storetest.Pattern("record", 2, 100),
}

// state is everything observable about the fixture's link.
type state struct {
	Stats    keystore.LinkStats
	Blocks   []keystore.Block
	Data     [][]byte
	Outbox   []keystore.Outbox
	Lo, Next uint64
	Count    int
	Records  map[string][]byte
}

func observe(t testing.TB, s keystore.Store) state {
	t.Helper()
	ctx := context.Background()
	var st state
	var err error
	if st.Stats, err = s.Stats(ctx, link); err != nil {
		t.Fatal(err)
	}
	for _, bs := range []keystore.BlockState{keystore.BlockUnconfirmed, keystore.BlockConfirmed} {
		list, err := s.ListBlocks(ctx, link, bs, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range list {
			full, err := s.GetBlocks(ctx, link, []uint64{b.Index})
			if err != nil {
				t.Fatal(err)
			}
			st.Blocks = append(st.Blocks, b)
			st.Data = append(st.Data, bytes.Clone(full[0].Data.Expose()))
		}
	}
	if st.Outbox, err = s.PendingOutbox(ctx, link); err != nil {
		t.Fatal(err)
	}
	if st.Lo, st.Next, st.Count, err = s.SlotBounds(ctx, link, "A"); err != nil {
		t.Fatal(err)
	}
	st.Records = make(map[string][]byte)
	for id := range fixtureRecords {
		if st.Records[id], err = s.RelayRecord(ctx, id); err != nil {
			t.Fatalf("RelayRecord(%s) = %v", id, err)
		}
	}
	return st
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	ids, keys := fixture(t, s)
	before := observe(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir)
	after := observe(t, s)
	if diff := cmp.Diff(before, after, cmpopts.IgnoreTypes(secret.Bytes{})); diff != "" {
		t.Fatalf("state after reopening (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(fixtureRecords, after.Records); diff != "" {
		t.Errorf("relay records after reopening (-want +got):\n%s", diff)
	}
	got, err := s.TakeByID(t.Context(), keystore.TakeRequest{Master: master, Caller: slave, IDs: ids})
	if err != nil {
		t.Fatalf("TakeByID after reopening = %v", err)
	}
	for i := range got {
		if !bytes.Equal(got[i].Data.Expose(), keys[i]) {
			t.Errorf("key %d after reopening has other bytes", i)
		}
	}
	if _, err := s.TakeSlot(t.Context(), link, "A", 3); err != nil {
		t.Fatalf("TakeSlot(3) after reopening = %v", err)
	}
	// Counters outlive the rows.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir)
	if lo, next, n, err := s.SlotBounds(t.Context(), link, "A"); lo != 4 || next != 4 || n != 0 || err != nil {
		t.Errorf("SlotBounds after every slot was used = %d, %d, %d, %v; want 4, 4, 0", lo, next, n, err)
	}
	if st, err := s.Stats(t.Context(), link); st.MaxIndex != 6 || !st.HasIndex || err != nil {
		t.Errorf("Stats.MaxIndex = %d, %v, %v; want 6", st.MaxIndex, st.HasIndex, err)
	}
	if err := s.AddBlock(t.Context(), keystore.Block{Link: link, Index: 2, Data: secret.From([]byte{1, 2, 3})}); err != nil {
		t.Fatal(err)
	}
	if bs, _ := s.GetBlocks(t.Context(), link, []uint64{2}); len(bs) != 0 {
		t.Error("AddBlock re-added consumed block 2 after a restart")
	}
}

func TestOpenOptions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"no path", Options{}, false},
		{"bad synchronous", Options{Path: filepath.Join(dir, "a.db"), Synchronous: "off"}, false},
		{"full", Options{Path: filepath.Join(dir, "b.db"), Synchronous: "full"}, true},
		{"separate KEK file", Options{Path: filepath.Join(dir, "c.db"), KEKFile: filepath.Join(dir, "elsewhere.kek")}, true},
	}
	for _, tt := range tests {
		s, err := Open(t.Context(), tt.opts)
		if (err == nil) != tt.ok {
			t.Errorf("Open(%s) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if s != nil {
			_ = s.Close()
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "elsewhere.kek")); err != nil {
		t.Errorf("KEKFile option not used: %v", err)
	}
}

func TestKEKFileMode(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	kek := filepath.Join(dir, "keys.db.kek")
	fi, err := os.Stat(kek)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("KEK file mode = %v, want 0600", fi.Mode().Perm())
	}
	if err := s.RotateKEK(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(kek); fi.Mode().Perm() != 0o600 {
		t.Errorf("KEK file mode after rotation = %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(kek + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary KEK file left behind: %v", err)
	}
	_ = s.Close()
	if err := os.Chmod(kek, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), Options{Path: filepath.Join(dir, "keys.db")}); !errors.Is(err, ErrKEKFile) {
		t.Errorf("Open(KEK file mode 0644) = %v, want ErrKEKFile", err)
	}
}

func TestKEKMissing(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	fixture(t, s)
	_ = s.Close()
	if err := os.Remove(filepath.Join(dir, "keys.db.kek")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), Options{Path: filepath.Join(dir, "keys.db")}); !errors.Is(err, ErrKEKMissing) {
		t.Errorf("Open(without KEK file) = %v, want ErrKEKMissing", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys.db.kek")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed Open created a new KEK file")
	}
}

func TestZeroize(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	fixture(t, s)
	if err := s.Zeroize(t.Context()); err != nil {
		t.Fatalf("Zeroize = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys.db.kek")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("KEK file after Zeroize: %v, want it gone", err)
	}
	if err := s.RotateKEK(t.Context()); !errors.Is(err, keystore.ErrZeroized) {
		t.Errorf("RotateKEK after Zeroize = %v, want ErrZeroized", err)
	}
	_ = s.Close()
	if n := countRows(t, filepath.Join(dir, "keys.db")); n != 0 {
		t.Errorf("%d rows left after Zeroize", n)
	}
	s = openAt(t, dir)
	if st, err := s.Stats(t.Context(), link); err != nil || st.HasIndex || st.KeysReady != 0 {
		t.Errorf("Stats after Zeroize and Open = %+v, %v; want an empty store", st, err)
	}
}

func TestZeroizeFiles(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	fixture(t, s)
	_ = s.Close()
	db := filepath.Join(dir, "keys.db")
	if err := ZeroizeFiles(db, ""); err != nil {
		t.Fatalf("ZeroizeFiles = %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 0 {
		t.Errorf("files left after ZeroizeFiles: %v", left)
	}
	if err := ZeroizeFiles(db, ""); err != nil {
		t.Errorf("ZeroizeFiles(nothing there) = %v, want nil", err)
	}
}

func TestPragmas(t *testing.T) {
	for _, sync := range []string{"normal", "full"} {
		s, err := Open(t.Context(), Options{Path: filepath.Join(t.TempDir(), "p.db"), Synchronous: sync})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"journal_mode": "wal", "secure_delete": "1", "foreign_keys": "1", "temp_store": "2",
			"synchronous": map[string]string{"normal": "1", "full": "2"}[sync],
		}
		for p, w := range want {
			var got string
			if err := s.db.QueryRow("PRAGMA " + p).Scan(&got); err != nil || got != w {
				t.Errorf("PRAGMA %s = %q, %v; want %q", p, got, err, w)
			}
		}
		_ = s.Close()
	}
}

func TestZeroizeAfterClose(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	fixture(t, s)
	_ = s.Close()
	if err := s.Zeroize(t.Context()); err != nil {
		t.Fatalf("Zeroize after Close = %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("files left after Zeroize of a closed store: %v", left)
	}
}

func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b%20c#d?e")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := openAt(t, dir)
	fixture(t, s)
	_ = s.Close()
	for _, name := range []string{"keys.db", "keys.db.kek"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s not where Options.Path says: %v", name, err)
		}
	}
	s = openAt(t, dir)
	if st, err := s.Stats(t.Context(), link); err != nil || st.MaxIndex != 6 {
		t.Errorf("Stats after reopening = %+v, %v", st, err)
	}
}
