package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// Stats implements keystore.Store.
func (s *Store) Stats(ctx context.Context, l qkd.LinkID) (keystore.LinkStats, error) {
	var st keystore.LinkStats
	err := s.tx(ctx, func(tx *txn) error {
		st = keystore.LinkStats{Slots: make(map[qkd.NodeID]int)}
		if err := blockStats(ctx, tx, l, &st); err != nil {
			return err
		}
		if err := keyStats(ctx, tx, l, &st); err != nil {
			return err
		}
		if err := slotStats(ctx, tx, l, &st); err != nil {
			return err
		}
		var err error
		st.MaxIndex, st.HasIndex, err = blockSet(l).max(ctx, tx)
		return err
	})
	return st, err
}

// each runs query and calls scan for every row.
func each(ctx context.Context, tx *txn, scan func(*sql.Rows) error, query string, args ...any) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("keystore/sqlite: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("keystore/sqlite: stats: %w", err)
		}
	}
	return rows.Err()
}

func blockStats(ctx context.Context, tx *txn, l qkd.LinkID, st *keystore.LinkStats) error {
	return each(ctx, tx, func(rows *sql.Rows) error {
		var state keystore.BlockState
		var parity, n int
		var bytes int64
		if err := rows.Scan(&state, &parity, &n, &bytes); err != nil {
			return err
		}
		if state == keystore.BlockUnconfirmed {
			st.UnconfirmedBlocks += n
			st.UnconfirmedBytes += bytes
		} else {
			st.ConfirmedBytes[parity] += bytes
		}
		return nil
	}, "SELECT state, idx & 1, COUNT(*), SUM(size - off) FROM blocks WHERE link = ? GROUP BY state, idx & 1", string(l))
}

func keyStats(ctx context.Context, tx *txn, l qkd.LinkID, st *keystore.LinkStats) error {
	return each(ctx, tx, func(rows *sql.Rows) error {
		var state keystore.KeyState
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return err
		}
		if state == keystore.KeyReady {
			st.KeysReady += n
		} else {
			st.KeysPending += n
		}
		return nil
	}, "SELECT state, COUNT(*) FROM keys WHERE link = ? GROUP BY state", string(l))
}

func slotStats(ctx context.Context, tx *txn, l qkd.LinkID, st *keystore.LinkStats) error {
	return each(ctx, tx, func(rows *sql.Rows) error {
		var sender string
		var n int
		if err := rows.Scan(&sender, &n); err != nil {
			return err
		}
		st.Slots[qkd.NodeID(sender)] = n
		return nil
	}, "SELECT sender, COUNT(*) FROM slots WHERE link = ? GROUP BY sender", string(l))
}
