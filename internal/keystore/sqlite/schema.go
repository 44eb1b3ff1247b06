package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// schemaVersion is the version of the schema this build writes. Version 1
// had no keys.stream column; createSchema upgrades it (migrate).
const schemaVersion = 2

// The schema. Integers that hold uint64 values (block indices, slot
// numbers) are stored through enc. Columns named data are sealed.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	k TEXT PRIMARY KEY,
	v INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS links (
	link        TEXT PRIMARY KEY,
	initialised INTEGER NOT NULL
);
-- seen: every block index (kind 0) or slot number (kind 1) ever stored, as
-- disjoint ranges [lo, hi]; it outlives the rows.
CREATE TABLE IF NOT EXISTS seen (
	kind   INTEGER NOT NULL,
	link   TEXT NOT NULL,
	sender TEXT NOT NULL,
	lo     INTEGER NOT NULL,
	hi     INTEGER NOT NULL,
	PRIMARY KEY (kind, link, sender, lo)
);
CREATE TABLE IF NOT EXISTS blocks (
	link    TEXT NOT NULL,
	idx     INTEGER NOT NULL,
	state   INTEGER NOT NULL,
	off     INTEGER NOT NULL,
	size    INTEGER NOT NULL,
	arrived INTEGER NOT NULL,
	data    BLOB NOT NULL,
	PRIMARY KEY (link, idx)
);
CREATE TABLE IF NOT EXISTS keys (
	seq       INTEGER PRIMARY KEY,
	id        BLOB NOT NULL UNIQUE,
	link      TEXT NOT NULL,
	state     INTEGER NOT NULL,
	master    TEXT NOT NULL,
	slaves    TEXT NOT NULL,
	pending   TEXT NOT NULL,
	size_bits INTEGER NOT NULL,
	created   INTEGER NOT NULL,
	expires   INTEGER NOT NULL,
	data      BLOB NOT NULL,
	-- stream: the ETSI 004 key stream (KSID) the key is a chunk of, '' for
	-- an ordinary key of the pair (version 2; not sealed: not secret).
	stream    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS keys_expires ON keys (expires) WHERE expires != 0;
CREATE TABLE IF NOT EXISTS slots (
	link   TEXT NOT NULL,
	sender TEXT NOT NULL,
	seq    INTEGER NOT NULL,
	data   BLOB NOT NULL,
	PRIMARY KEY (link, sender, seq)
);
CREATE TABLE IF NOT EXISTS outbox (
	seq     INTEGER PRIMARY KEY,
	id      TEXT NOT NULL UNIQUE,
	link    TEXT NOT NULL,
	payload BLOB NOT NULL,
	created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_link ON outbox (link, created, seq);
-- relay: the record of each applied relay step, by step ID, until it
-- expires (0: never). Added after version 1 shipped: CREATE IF NOT EXISTS
-- adds it to older databases, which need nothing else.
CREATE TABLE IF NOT EXISTS relay (
	id      TEXT PRIMARY KEY,
	expires INTEGER NOT NULL,
	data    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_expires ON relay (expires) WHERE expires != 0;
-- resize: the ID of each applied split or merge (ResizeKeys), until its
-- keys expire (0: never). No key material. Added like relay.
CREATE TABLE IF NOT EXISTS resize (
	id      TEXT PRIMARY KEY,
	expires INTEGER NOT NULL
);
`

// indexes are created once the tables are at schemaVersion (they may name
// columns a migration adds). keys_by_pair serves TakeForPair, which reads
// only the keys of no stream (stream empty), in seq order.
//
// Every index of keys costs a B-tree insert, move or delete per key on the
// hot path (a key is stored, made Ready, delivered), so there are few and
// they hold no column that changes: a key made Ready rewrites its row
// only. Older builds made keys_link (link, state), which served no query
// on the path, and keys_pair, which held state (a key made Ready moved in
// it); both go.
const indexes = `
CREATE INDEX IF NOT EXISTS keys_by_pair ON keys (master, slaves, size_bits, stream, seq);
DROP INDEX IF EXISTS keys_link;
DROP INDEX IF EXISTS keys_pair;
`

// migrations[v] upgrades a database of version v to v+1, in the
// transaction that creates the schema.
var migrations = map[int]string{
	// 1 → 2: keys.stream; keys_pair, which lacked it, goes (indexes
	// makes keys_by_pair).
	1: `
ALTER TABLE keys ADD COLUMN stream TEXT NOT NULL DEFAULT '';
DROP INDEX IF EXISTS keys_pair;
`,
}

// tables lists every table, for Zeroize.
var tables = []string{"meta", "links", "seen", "blocks", "keys", "slots", "outbox", "relay", "resize"}

func createSchema(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("keystore/sqlite: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("keystore/sqlite: journal_mode is %q, want wal", mode)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("keystore/sqlite: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("keystore/sqlite: create schema: %w", err)
	}
	var v int
	err = tx.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = 'schema'").Scan(&v)
	switch {
	case err == sql.ErrNoRows:
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta (k, v) VALUES ('schema', ?)", schemaVersion); err != nil {
			return fmt.Errorf("keystore/sqlite: %w", err)
		}
	case err != nil:
		return fmt.Errorf("keystore/sqlite: %w", err)
	case v > schemaVersion || v < 1:
		return fmt.Errorf("keystore/sqlite: schema version %d, this build knows %d", v, schemaVersion)
	case v < schemaVersion:
		if err := migrate(ctx, tx, v); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, indexes); err != nil {
		return fmt.Errorf("keystore/sqlite: create indexes: %w", err)
	}
	return tx.Commit()
}

// migrate upgrades the schema from version v to schemaVersion (in tx).
func migrate(ctx context.Context, tx *sql.Tx, v int) error {
	for ; v < schemaVersion; v++ {
		m, ok := migrations[v]
		if !ok {
			return fmt.Errorf("keystore/sqlite: no migration from schema version %d", v)
		}
		if _, err := tx.ExecContext(ctx, m); err != nil {
			return fmt.Errorf("keystore/sqlite: migrate schema %d → %d: %w", v, v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE meta SET v = ? WHERE k = 'schema'", schemaVersion); err != nil {
		return fmt.Errorf("keystore/sqlite: %w", err)
	}
	return nil
}

// metaEpoch returns the KEK epoch the rows are sealed under (0 if none).
func metaEpoch(ctx context.Context, q querier) (uint32, error) {
	var v int64
	err := q.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = 'kek_epoch'").Scan(&v)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("keystore/sqlite: %w", err)
	}
	return uint32(v), nil
}

func setMetaEpoch(ctx context.Context, q querier, epoch uint32) error {
	_, err := q.ExecContext(ctx, "INSERT INTO meta (k, v) VALUES ('kek_epoch', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", int64(epoch))
	if err != nil {
		return fmt.Errorf("keystore/sqlite: %w", err)
	}
	return nil
}

// querier is what *sql.Tx and *sql.DB have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}
