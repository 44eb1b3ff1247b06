package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// schemaV1 turns the database at dir back into a version 1 database (no
// keys.stream column, the indexes keys_pair and keys_link of that version).
func schemaV1(t *testing.T, dir string) {
	t.Helper()
	db := rawDB(t, filepath.Join(dir, "keys.db"))
	for _, q := range []string{
		"DROP INDEX keys_by_pair",
		"ALTER TABLE keys DROP COLUMN stream",
		"CREATE INDEX keys_pair ON keys (master, slaves, size_bits, state, seq)",
		"CREATE INDEX keys_link ON keys (link, state)",
		"UPDATE meta SET v = 1 WHERE k = 'schema'",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateV1 opens a version 1 database: it is upgraded, and its keys
// stay deliverable as ordinary pair keys.
func TestMigrateV1(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	ids, _ := fixture(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	schemaV1(t, dir)

	s = openAt(t, dir)
	ctx := t.Context()
	var v int
	if err := s.db.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = 'schema'").Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("schema version after opening = %d, %v; want %d", v, err, schemaVersion)
	}
	var cols string
	if err := s.db.QueryRowContext(ctx, "SELECT group_concat(name) FROM pragma_index_info('keys_by_pair')").Scan(&cols); err != nil ||
		cols != "master,slaves,size_bits,stream,seq" {
		t.Errorf("keys_by_pair after migration = %q, %v", cols, err)
	}
	var old int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name IN ('keys_pair', 'keys_link')").Scan(&old); err != nil || old != 0 {
		t.Errorf("%d indexes of older builds left after migration, %v", old, err)
	}
	list, err := s.ListKeys(ctx, keystore.KeyFilter{Master: master, Slaves: []qkd.SAEID{slave}})
	if err != nil || len(list) != len(ids) {
		t.Fatalf("ListKeys after migration = %d keys, %v; want %d", len(list), err, len(ids))
	}
	for _, k := range list {
		if k.Stream != "" {
			t.Errorf("key %s of a version 1 database has Stream %q", k.ID, k.Stream)
		}
	}
	got, err := s.TakeForPair(ctx, keystore.TakeRequest{Master: master, Slaves: []qkd.SAEID{slave}, Caller: slave,
		SizeBits: 256, Number: len(ids)})
	if err != nil || len(got) != len(ids) {
		t.Fatalf("TakeForPair after migration = %d keys, %v", len(got), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Opening again leaves a version 2 database alone.
	s = openAt(t, dir)
	if err := s.db.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = 'schema'").Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("schema version after reopening = %d, %v", v, err)
	}
}

// TestNewerSchema: a database of a later version is refused.
func TestNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, filepath.Join(dir, "keys.db"))
	if _, err := db.Exec("UPDATE meta SET v = ? WHERE k = 'schema'", schemaVersion+1); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if s, err := Open(t.Context(), Options{Path: filepath.Join(dir, "keys.db")}); err == nil {
		_ = s.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
}
