package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/qkms/qkms/internal/keystore/sealing"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// RotateKEK starts a new key epoch: it re-seals every live row under a new
// KEK in one transaction, then destroys the old epochs (rewrites the KEK
// file without them and wipes them in memory). Rows deleted before cannot
// be recovered afterwards, even from a copy of the database and the new
// KEK file. A crash at any point leaves a store that opens.
func (s *Store) RotateKEK(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	return s.rotate(ctx)
}

// rotate is RotateKEK for callers that hold mu (or own s during Open).
func (s *Store) rotate(ctx context.Context) error {
	epoch := s.ring.Latest() + 1
	if epoch == 0 {
		return fmt.Errorf("keystore/sqlite: KEK epochs exhausted")
	}
	kek, err := secret.Random(s.rand, sealing.KEKSize)
	if err != nil {
		return err
	}
	if err := s.ring.Add(epoch, secret.KEK{Bytes: kek}); err != nil {
		return err
	}
	// The new epoch is on disk before any row uses it.
	if err := sealing.WriteFile(s.kekFile, s.ring); err != nil {
		return err
	}
	n := 0
	// The journaled deliveries are applied first (those rows are not
	// re-sealed) and the caches dropped.
	err = s.run(ctx, evictAll(s), func(tx *txn) error {
		var err error
		if n, err = s.resealAll(ctx, tx, epoch); err != nil {
			return err
		}
		return setMetaEpoch(ctx, tx, epoch)
	})
	if err != nil {
		return err
	}
	s.ring.SetCurrent(epoch)
	s.ring.KeepOnly(epoch)
	if err := sealing.WriteFile(s.kekFile, s.ring); err != nil {
		return err
	}
	s.checkpoint(ctx)
	s.log.Info("key-encryption key rotated", "epoch", epoch, "rows", n)
	return nil
}

// checkpoint moves the WAL into the database and truncates it, so that old
// page images do not linger in the -wal file.
func (s *Store) checkpoint(ctx context.Context) {
	if _, err := s.db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		s.log.Warn("WAL checkpoint failed", "err", err)
	}
}

// resealer re-seals the data column of one table. query selects rowid,
// data and the identity columns of rows with rowid > ?, in rowid order;
// scan reads one row and returns its rowid, sealed data and AD.
type resealer struct {
	table string
	query string
	scan  func(rows *sql.Rows) (rowid int64, data, ad []byte, err error)
}

var resealers = []resealer{
	{"blocks", "SELECT rowid, data, link, idx, off FROM blocks WHERE rowid > ? ORDER BY rowid LIMIT 256",
		func(rows *sql.Rows) (int64, []byte, []byte, error) {
			var id, idx int64
			var off int
			var link string
			var data []byte
			err := rows.Scan(&id, &data, &link, &idx, &off)
			return id, data, adBlock(qkd.LinkID(link), dec(idx), off), err
		}},
	{"keys", "SELECT rowid, data, id, link, master, slaves, size_bits FROM keys WHERE rowid > ? ORDER BY rowid LIMIT 256",
		func(rows *sql.Rows) (int64, []byte, []byte, error) {
			var rowid int64
			var data, id []byte
			var link, master, slaves string
			var bits int
			err := rows.Scan(&rowid, &data, &id, &link, &master, &slaves, &bits)
			return rowid, data, adKey(qkd.KeyID(id), qkd.LinkID(link), qkd.SAEID(master), slaves, bits), err
		}},
	{"slots", "SELECT rowid, data, link, sender, seq FROM slots WHERE rowid > ? ORDER BY rowid LIMIT 256",
		func(rows *sql.Rows) (int64, []byte, []byte, error) {
			var rowid, seq int64
			var data []byte
			var link, sender string
			err := rows.Scan(&rowid, &data, &link, &sender, &seq)
			return rowid, data, adSlot(qkd.LinkID(link), qkd.NodeID(sender), dec(seq)), err
		}},
	// Relay records may be MiBs each: a few rows per batch.
	{"relay", "SELECT rowid, data, id, expires FROM relay WHERE rowid > ? ORDER BY rowid LIMIT 8",
		func(rows *sql.Rows) (int64, []byte, []byte, error) {
			var rowid, expires int64
			var data []byte
			var id string
			err := rows.Scan(&rowid, &data, &id, &expires)
			return rowid, data, adRelay(id, expires), err
		}},
}

// resealAll re-seals every sealed column under epoch and returns how many
// rows it touched. Any row that does not open aborts it.
func (s *Store) resealAll(ctx context.Context, tx *txn, epoch uint32) (int, error) {
	total := 0
	for _, r := range resealers {
		for after := int64(-1 << 63); ; {
			sealed, last, err := s.resealBatch(ctx, tx, r, after, epoch)
			if err != nil {
				return 0, fmt.Errorf("keystore/sqlite: re-seal %s: %w", r.table, err)
			}
			if len(sealed) == 0 {
				break
			}
			for rowid, data := range sealed {
				if _, err := tx.ExecContext(ctx, "UPDATE "+r.table+" SET data = ? WHERE rowid = ?", data, rowid); err != nil {
					return 0, fmt.Errorf("keystore/sqlite: re-seal %s: %w", r.table, err)
				}
			}
			total += len(sealed)
			after = last
		}
	}
	return total, nil
}

// resealBatch reads one batch of r after rowid after and returns the new
// sealed values by rowid, and the last rowid read.
func (s *Store) resealBatch(ctx context.Context, tx *txn, r resealer, after int64, epoch uint32) (map[int64][]byte, int64, error) {
	rows, err := tx.QueryContext(ctx, r.query, after)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	out := make(map[int64][]byte)
	last := after
	for rows.Next() {
		rowid, data, ad, err := r.scan(rows)
		if err != nil {
			return nil, 0, err
		}
		pt, err := s.ring.Open(data, ad)
		if err != nil {
			return nil, 0, fmt.Errorf("row %d: %w", rowid, err)
		}
		out[rowid], err = s.ring.Seal(s.rand, epoch, pt, ad)
		secret.Wipe(pt)
		if err != nil {
			return nil, 0, err
		}
		last = rowid
	}
	return out, last, rows.Err()
}
