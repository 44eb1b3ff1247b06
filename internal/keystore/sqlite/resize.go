package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
)

// ResizeKeys implements keystore.Store in one transaction: the old rows
// are opened and deleted (secure_delete), the new keys sealed and
// inserted behind every cached key (as with Allocate, the pair caches stay
// prefixes), the outbox entry and the resize ID stored. The cached copies
// of the old keys are evicted first.
func (s *Store) ResizeKeys(ctx context.Context, r keystore.Resize) error {
	if err := rules.CheckResize(&r); err != nil {
		return err
	}
	return s.txEvict(ctx, evictIDs(s, r.Old), func(tx *txn) error {
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM resize WHERE id = ?", r.ID).Scan(&one)
		if err == nil {
			return fmt.Errorf("keystore: resize %q: %w", r.ID, keystore.ErrApplied)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("keystore/sqlite: resize: %w", err)
		}
		rows, old, err := resizeRows(ctx, tx, r.Old)
		if err != nil {
			return err
		}
		if err := rules.CheckResizeOld(&r, old, s.now()); err != nil {
			return err
		}
		defer func() {
			for _, k := range old {
				k.Data.Wipe()
			}
		}()
		for i := range rows {
			if old[i].Data, err = s.openKey(ctx, tx, &rows[i]); err != nil {
				return err
			}
		}
		keys := rules.ResizedKeys(&r, old)
		defer wipeKeys(keys)
		return s.storeResize(ctx, tx, &r, rows, keys)
	})
}

// resizeRows reads the old keys of a resize with their sealed bytes, in
// order; old[i] is nil for an absent key.
func resizeRows(ctx context.Context, tx *txn, ids []qkd.KeyID) ([]keyRow, []*keystore.Key, error) {
	rows := make([]keyRow, len(ids))
	old := make([]*keystore.Key, len(ids))
	for i, id := range ids {
		var sealed []byte
		row, err := scanKey(tx.QueryRowContext(ctx, "SELECT "+keyCols+", data FROM keys WHERE id = ?", id[:]), &sealed)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("keystore/sqlite: resize: %w", err)
		}
		row.sealed = sealed
		rows[i] = row
		old[i] = &rows[i].key
	}
	return rows, old, nil
}

// storeResize deletes the old rows and stores the new keys, the outbox
// entry and the resize record.
func (s *Store) storeResize(ctx context.Context, tx *txn, r *keystore.Resize, rows []keyRow, keys []keystore.Key) error {
	if err := checkNewKeys(ctx, tx, keys); err != nil {
		return err
	}
	if err := checkNewOutbox(ctx, tx, r.Outbox); err != nil {
		return err
	}
	for i := range rows {
		if _, err := tx.ExecContext(ctx, "DELETE FROM keys WHERE seq = ?", rows[i].seq); err != nil {
			return fmt.Errorf("keystore/sqlite: resize: %w", err)
		}
		tx.keys(rows[i].key.Link, rows[i].key.State, -1)
	}
	if err := s.insertKeys(ctx, tx, keys); err != nil {
		return err
	}
	if err := insertOutbox(ctx, tx, r.Outbox, r.Link, s.now()); err != nil {
		return err
	}
	s.expiresBy(encTime(keys[0].Expires))
	if _, err := tx.ExecContext(ctx, "INSERT INTO resize (id, expires) VALUES (?, ?)", r.ID, encTime(keys[0].Expires)); err != nil {
		return fmt.Errorf("keystore/sqlite: resize: %w", err)
	}
	return nil
}

func wipeKeys(keys []keystore.Key) {
	for i := range keys {
		keys[i].Data.Wipe()
	}
}

// expireResizes forgets the resize records whose keys expired.
func expireResizes(ctx context.Context, tx *txn, now time.Time) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM resize WHERE expires != 0 AND expires <= ?", encTime(now)); err != nil {
		return fmt.Errorf("keystore/sqlite: expire resize records: %w", err)
	}
	return nil
}

// ListKeys implements keystore.Store.
func (s *Store) ListKeys(ctx context.Context, f keystore.KeyFilter) ([]keystore.Key, error) {
	if f.Now.IsZero() {
		f.Now = s.now()
	}
	var out []keystore.Key
	err := s.tx(ctx, func(tx *txn) error {
		out = nil
		rows, err := queryKeys(ctx, tx, f.Limit, func(k *keystore.Key) bool { return rules.MatchesFilter(k, &f) },
			"WHERE master = ? AND slaves = ? AND state = ? AND stream = '' AND (expires = 0 OR expires > ?) ORDER BY seq",
			string(f.Master), encSAEs(f.Slaves), keystore.KeyReady, encTime(f.Now))
		for _, r := range rows {
			out = append(out, r.key)
		}
		return err
	})
	return out, err
}
