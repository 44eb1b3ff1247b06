package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/sealing"
	"github.com/qkms/qkms/internal/keystore/storetest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// rawDB opens the database file directly, as an attacker with the disk would.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// countRows counts the rows of every table in the database file (all of
// them, not only those the store's tables list names).
func countRows(t testing.TB, path string) int {
	t.Helper()
	db := rawDB(t, path)
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		all = append(all, name)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	if len(all) < len(tables) {
		t.Fatalf("database has tables %v, want at least %v", all, tables)
	}
	total := 0
	for _, table := range all {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

func mustExec(t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// containsAny reports whether file holds any 16-byte window of secret.
func containsAny(file, secret []byte) bool {
	for i := 0; i+16 <= len(secret); i += 4 {
		if bytes.Contains(file, secret[i:i+16]) {
			return true
		}
	}
	return false
}

func TestNoKeyBytesOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	fixture(t, s)
	psk := storetest.Pattern("psk", 0, 4*keystore.SlotSize)
	init := keystore.LinkInit{Link: "A-C", Slots: []keystore.SlotRange{{Sender: "A", Count: 4}}, Material: []secret.Bytes{secret.From(psk)}}
	if _, err := s.InitLink(t.Context(), init); err != nil {
		t.Fatal(err)
	}
	secrets := [][]byte{psk, fixtureRecords["relay-1"], fixtureRecords["relay-2"]}
	for i := uint64(1); i <= 6; i++ {
		secrets = append(secrets, storetest.Pattern(link, i, 256))
	}
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"keys.db", "keys.db-wal"} {
			raw, err := os.ReadFile(filepath.Join(dir, name))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, sec := range secrets {
				if containsAny(raw, sec) {
					t.Errorf("%s: %s holds bytes of secret %d in the clear", when, name, i)
				}
			}
		}
	}
	check("while open")
	_ = s.Close()
	check("after close")
}

// tamper opens a store, applies change to its database from a second
// connection, and returns the store.
func tamper(t *testing.T, change ...string) (*Store, []qkd.KeyID) {
	t.Helper()
	dir := t.TempDir()
	s := openAt(t, dir)
	ids, _ := fixture(t, s)
	db := rawDB(t, filepath.Join(dir, "keys.db"))
	for _, q := range change {
		mustExec(t, db, q)
	}
	return s, ids
}

func TestTamperedRows(t *testing.T) {
	tests := []struct {
		name   string
		change []string
		read   func(ctx context.Context, s *Store, ids []qkd.KeyID) error
	}{
		{"flipped key byte", []string{
			"UPDATE keys SET data = substr(data, 1, 40) || x'00' || substr(data, 42) WHERE seq = (SELECT MIN(seq) FROM keys)",
			"UPDATE keys SET data = CAST(data AS BLOB)",
		}, takeKeys},
		{"swapped keys", []string{
			"UPDATE keys SET data = (SELECT data FROM keys k2 WHERE k2.seq != keys.seq)",
		}, takeKeys},
		{"key readdressed to another master", []string{
			"UPDATE keys SET master = 'SAE_EVIL'",
		}, func(ctx context.Context, s *Store, ids []qkd.KeyID) error {
			_, err := s.TakeByID(ctx, keystore.TakeRequest{Master: "SAE_EVIL", Caller: slave, IDs: ids[:1]})
			return err
		}},
		{"swapped blocks", []string{
			"UPDATE blocks SET data = (SELECT data FROM blocks b2 WHERE b2.idx = blocks.idx + 1) WHERE state = 1 AND idx = (SELECT MIN(idx) FROM blocks WHERE state = 1)",
		}, func(ctx context.Context, s *Store, _ []qkd.KeyID) error {
			_, err := s.GetBlocks(ctx, link, []uint64{5})
			return err
		}},
		{"block offset moved", []string{
			"UPDATE blocks SET off = off + 8 WHERE state = 2 AND off > 0",
		}, func(ctx context.Context, s *Store, _ []qkd.KeyID) error {
			_, err := s.GetBlocks(ctx, link, []uint64{4})
			return err
		}},
		{"relay record expiry changed", []string{
			"UPDATE relay SET expires = expires + 1 WHERE id = 'relay-2'",
		}, func(ctx context.Context, s *Store, _ []qkd.KeyID) error {
			_, err := s.RelayRecord(ctx, "relay-2")
			return err
		}},
		{"relay records swapped", []string{
			"UPDATE relay SET data = (SELECT data FROM relay r2 WHERE r2.id != relay.id)",
		}, func(ctx context.Context, s *Store, _ []qkd.KeyID) error {
			_, err := s.RelayRecord(ctx, "relay-1")
			return err
		}},
		{"slot renumbered", []string{
			"UPDATE slots SET seq = seq + 10",
		}, func(ctx context.Context, s *Store, _ []qkd.KeyID) error {
			_, err := s.TakeSlot(ctx, link, "A", 13)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ids := tamper(t, tt.change...)
			if err := tt.read(t.Context(), s, ids); !errors.Is(err, ErrSealed) {
				t.Errorf("reading a tampered row = %v, want ErrSealed", err)
			}
			if err := s.RotateKEK(t.Context()); !errors.Is(err, ErrSealed) {
				t.Errorf("RotateKEK over a tampered row = %v, want ErrSealed", err)
			}
		})
	}
}

func takeKeys(ctx context.Context, s *Store, ids []qkd.KeyID) error {
	_, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: ids})
	return err
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRotationDestroysOldEpochs: a copy of the database taken before a
// rotation opens with the KEK file of its time, but not with the KEK file
// after the rotation.
func TestRotationDestroysOldEpochs(t *testing.T) {
	dir, old := t.TempDir(), t.TempDir()
	db, kek := filepath.Join(dir, "keys.db"), filepath.Join(dir, "keys.db.kek")
	s := openAt(t, dir)
	ids, _ := fixture(t, s)
	_ = s.Close() // checkpoints the WAL into keys.db
	copyFile(t, db, filepath.Join(old, "keys.db"))
	copyFile(t, kek, filepath.Join(old, "then.kek"))

	s = openAt(t, dir) // rotates once
	if err := s.RotateKEK(t.Context()); err != nil {
		t.Fatalf("RotateKEK = %v", err)
	}
	if n, err := s.DeleteKeys(t.Context(), ids); n != 2 || err != nil {
		t.Fatalf("DeleteKeys = %d, %v", n, err)
	}
	_ = s.Close()

	raw, err := os.ReadFile(kek)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := sealing.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(ring.Epochs()) != 1 || ring.Current() < 3 {
		t.Errorf("KEK file after rotations holds epochs %v (current %d); want only the newest", ring.Epochs(), ring.Current())
	}
	ring.Wipe()

	copyPath := filepath.Join(old, "keys.db")
	if _, err := Open(t.Context(), Options{Path: copyPath, KEKFile: kek}); !errors.Is(err, ErrSealed) {
		t.Fatalf("Open(old copy, new KEK file) = %v, want ErrSealed", err)
	}
	then, err := Open(t.Context(), Options{Path: copyPath, KEKFile: filepath.Join(old, "then.kek")})
	if err != nil {
		t.Fatalf("Open(old copy, old KEK file) = %v; the copy itself must be sound", err)
	}
	_ = then.Close()
}

// TestRotationResealsRelayRecords: RotateKEK re-seals relay records under
// the new epoch (so destroying the old one loses nothing), and they read
// the same afterwards.
func TestRotationResealsRelayRecords(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	fixture(t, s)
	epochs := func() map[string]uint32 {
		t.Helper()
		rows, err := rawDB(t, filepath.Join(dir, "keys.db")).Query("SELECT id, data FROM relay")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := make(map[string]uint32)
		for rows.Next() {
			var id string
			var data []byte
			if err := rows.Scan(&id, &data); err != nil {
				t.Fatal(err)
			}
			if out[id], err = sealing.Epoch(data); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	before := epochs()
	if err := s.RotateKEK(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := epochs()
	if len(after) != len(fixtureRecords) {
		t.Fatalf("%d relay rows after RotateKEK, want %d", len(after), len(fixtureRecords))
	}
	for id, e := range after {
		if e != s.ring.Current() || e == before[id] {
			t.Errorf("relay record %s sealed under epoch %d after rotating from %d to %d", id, e, before[id], s.ring.Current())
		}
		got, err := s.RelayRecord(t.Context(), id)
		if err != nil || !bytes.Equal(got, fixtureRecords[id]) {
			t.Errorf("RelayRecord(%s) after RotateKEK = %d bytes, %v", id, len(got), err)
		}
	}
}

// TestRowADUnchanged pins the associated data of each table: rows sealed
// by earlier versions must keep opening.
func TestRowADUnchanged(t *testing.T) {
	u64 := func(u uint64) string { return string(binary.BigEndian.AppendUint64(nil, u)) }
	var id qkd.KeyID
	for i := range id {
		id[i] = byte(i)
	}
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"block", adBlock("A-B", 5, 64), "\x06blocks" + "\x03A-B" + u64(5) + u64(64)},
		{"key", adKey(id, "A-B", "SAE_M", "S", 256), "\x04keys" + "\x10" + string(id[:]) + "\x03A-B" + "\x05SAE_M" + "\x01S" + u64(256)},
		{"slot", adSlot("A-B", "A", 7), "\x05slots" + "\x03A-B" + "\x01A" + u64(7)},
		{"relay", adRelay("step-1", -1), "\x05relay" + "\x06step-1" + u64(1<<64-1)},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("AD of a %s row = %x, want %x", tt.name, tt.got, tt.want)
		}
	}
}
