package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

func blockSet(l qkd.LinkID) seenSet { return seenSet{kind: seenBlocks, link: string(l)} }

// AddBlock implements keystore.Store.
func (s *Store) AddBlock(ctx context.Context, b keystore.Block) error {
	if err := rules.CheckBlock(b); err != nil {
		return err
	}
	arrived := b.Arrived
	if arrived.IsZero() {
		arrived = s.now()
	}
	return s.tx(ctx, func(tx *txn) error {
		set := blockSet(b.Link)
		lo, hi, ok, err := set.last(ctx, tx, b.Index)
		if err != nil || (ok && hi >= b.Index) {
			return err // an error, or a block seen before: nothing changes
		}
		data, err := s.ring.Seal(s.rand, s.ring.Current(), b.Data.Expose(), adBlock(b.Link, b.Index, 0))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			"INSERT INTO blocks (link, idx, state, off, size, arrived, data) VALUES (?, ?, ?, 0, ?, ?, ?)",
			string(b.Link), enc(b.Index), keystore.BlockUnconfirmed, b.Data.Len(), encTime(arrived), data)
		if err != nil {
			return fmt.Errorf("keystore/sqlite: add block: %w", err)
		}
		tx.blockAdded(b.Link, b.Index, b.Data.Len())
		return set.addOne(ctx, tx, b.Index, lo, hi, ok)
	})
}

const blockCols = "idx, state, off, size, arrived"

func scanBlock(l qkd.LinkID, sc interface{ Scan(...any) error }, extra ...any) (keystore.Block, error) {
	var idx, arrived int64
	var size int
	b := keystore.Block{Link: l}
	err := sc.Scan(append([]any{&idx, &b.State, &b.Offset, &size, &arrived}, extra...)...)
	b.Index, b.Remaining, b.Arrived = dec(idx), size-b.Offset, decTime(arrived)
	return b, err
}

// ListBlocks implements keystore.Store.
func (s *Store) ListBlocks(ctx context.Context, l qkd.LinkID, state keystore.BlockState, limit int) ([]keystore.Block, error) {
	var out []keystore.Block
	err := s.tx(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, "SELECT "+blockCols+" FROM blocks WHERE link = ? AND state = ? ORDER BY idx LIMIT ?",
			string(l), state, limit)
		if err != nil {
			return fmt.Errorf("keystore/sqlite: list blocks: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			b, err := scanBlock(l, rows)
			if err != nil {
				return fmt.Errorf("keystore/sqlite: list blocks: %w", err)
			}
			out = append(out, b)
		}
		return rows.Err()
	})
	return out, err
}

// getBlock reads block idx of l with its unconsumed bytes opened; ok is
// false if it is absent. The caller wipes b.Data.
func (s *Store) getBlock(ctx context.Context, q querier, l qkd.LinkID, idx uint64) (b keystore.Block, ok bool, err error) {
	var sealed []byte
	row := q.QueryRowContext(ctx, "SELECT "+blockCols+", data FROM blocks WHERE link = ? AND idx = ?", string(l), enc(idx))
	b, err = scanBlock(l, row, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return keystore.Block{}, false, nil
	}
	if err != nil {
		return keystore.Block{}, false, fmt.Errorf("keystore/sqlite: get block: %w", err)
	}
	pt, err := s.ring.Open(sealed, adBlock(l, idx, b.Offset))
	if err != nil {
		return keystore.Block{}, false, fmt.Errorf("keystore/sqlite: block %d of %s: %w", idx, l, err)
	}
	b.Data = secret.Adopt(pt)
	return b, true, nil
}

// GetBlocks implements keystore.Store.
func (s *Store) GetBlocks(ctx context.Context, l qkd.LinkID, indices []uint64) ([]keystore.Block, error) {
	var out []keystore.Block
	err := s.tx(ctx, func(tx *txn) error {
		for _, i := range indices {
			b, ok, err := s.getBlock(ctx, tx, l, i)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, b)
			}
		}
		return nil
	})
	if err != nil {
		for i := range out {
			out[i].Data.Wipe()
		}
		return nil, err
	}
	return out, nil
}

// consume advances block idx of l by n bytes: re-seals the rest at the new
// offset, or deletes the block when nothing is left. b is the block as read
// by getBlock; its Data is wiped.
func (s *Store) consume(ctx context.Context, q *txn, b keystore.Block, n int) error {
	defer b.Data.Wipe()
	off := b.Offset + n
	if n == b.Remaining {
		_, err := q.ExecContext(ctx, "DELETE FROM blocks WHERE link = ? AND idx = ?", string(b.Link), enc(b.Index))
		if err != nil {
			return fmt.Errorf("keystore/sqlite: consume block: %w", err)
		}
		q.blockGone(b.Link, b.Index, b.State, n)
		return nil
	}
	data, err := s.ring.Seal(s.rand, s.ring.Current(), b.Data.Expose()[n:], adBlock(b.Link, b.Index, off))
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, "UPDATE blocks SET off = ?, data = ? WHERE link = ? AND idx = ?", off, data, string(b.Link), enc(b.Index))
	if err != nil {
		return fmt.Errorf("keystore/sqlite: consume block: %w", err)
	}
	q.blockBytes(b.Link, b.Index, b.State, -n)
	return nil
}

// ConfirmBlocks implements keystore.Store.
func (s *Store) ConfirmBlocks(ctx context.Context, l qkd.LinkID, indices []uint64, skip int) error {
	if len(indices) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *txn) error {
		for n, i := range indices {
			var state keystore.BlockState
			var size, off int
			err := tx.QueryRowContext(ctx, "SELECT state, size, off FROM blocks WHERE link = ? AND idx = ?", string(l), enc(i)).Scan(&state, &size, &off)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("keystore: confirm block %d of link %s: %w", i, l, qkd.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("keystore/sqlite: confirm: %w", err)
			}
			if state != keystore.BlockUnconfirmed {
				continue
			}
			if n == 0 && (skip < 0 || skip > size) {
				return fmt.Errorf("keystore: skip %d bytes of a %d-byte block: %w", skip, size, keystore.ErrConflict)
			}
			if _, err := tx.ExecContext(ctx, "UPDATE blocks SET state = ? WHERE link = ? AND idx = ?", keystore.BlockConfirmed, string(l), enc(i)); err != nil {
				return fmt.Errorf("keystore/sqlite: confirm: %w", err)
			}
			tx.blockConfirmed(l, i, size-off)
			if n == 0 && skip > 0 {
				if err := s.skip(ctx, tx, l, i, skip); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (s *Store) skip(ctx context.Context, q *txn, l qkd.LinkID, idx uint64, n int) error {
	b, _, err := s.getBlock(ctx, q, l, idx)
	if err != nil {
		return err
	}
	return s.consume(ctx, q, b, n)
}

// DiscardBlocks implements keystore.Store.
func (s *Store) DiscardBlocks(ctx context.Context, l qkd.LinkID, ranges []keystore.Range) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *txn) error {
		n = 0
		for _, r := range ranges {
			k, err := eachRow(ctx, tx, func(rows *sql.Rows) error {
				var idx int64
				var rest int
				if err := rows.Scan(&idx, &rest); err != nil {
					return err
				}
				tx.blockGone(l, dec(idx), keystore.BlockUnconfirmed, rest)
				return nil
			}, "DELETE FROM blocks WHERE link = ? AND state = ? AND idx BETWEEN ? AND ? RETURNING idx, size - off",
				string(l), keystore.BlockUnconfirmed, enc(r.From), enc(r.To))
			if err != nil {
				return fmt.Errorf("keystore/sqlite: discard: %w", err)
			}
			n += k
		}
		return nil
	})
	return n, err
}

// Material implements keystore.Store.
func (s *Store) Material(ctx context.Context, l qkd.LinkID, parity int, want int) ([]keystore.Piece, error) {
	var out []keystore.Piece
	err := s.tx(ctx, func(tx *txn) error {
		out = nil
		rows, err := tx.QueryContext(ctx, "SELECT idx, off, size FROM blocks WHERE link = ? AND state = ? AND (idx & 1) = ? ORDER BY idx",
			string(l), keystore.BlockConfirmed, parity)
		if err != nil {
			return fmt.Errorf("keystore/sqlite: material: %w", err)
		}
		defer rows.Close()
		for have := 0; have < want && rows.Next(); {
			var idx int64
			var off, size int
			if err := rows.Scan(&idx, &off, &size); err != nil {
				return fmt.Errorf("keystore/sqlite: material: %w", err)
			}
			out = append(out, keystore.Piece{Index: dec(idx), Off: off, Len: size - off})
			have += size - off
		}
		return rows.Err()
	})
	return out, err
}
