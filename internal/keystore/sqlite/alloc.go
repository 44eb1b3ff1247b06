package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Allocate implements keystore.Store.
func (s *Store) Allocate(ctx context.Context, a keystore.Allocation) error {
	a.Keys = slices.Clone(a.Keys)
	total, err := rules.CheckAllocation(&a)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx *txn) error {
		if done, err := s.applied(ctx, tx, &a); done || err != nil {
			return err
		}
		if err := checkNew(ctx, tx, &a); err != nil {
			return err
		}
		buf, err := s.takePieces(ctx, tx, a.Link, a.Pieces, total)
		if err != nil {
			return err
		}
		slots := rules.Cut(buf, &a)
		secret.Wipe(buf)
		defer secret.WipeAll(slots)
		defer func() {
			for i := range a.Keys {
				a.Keys[i].Data.Wipe()
			}
		}()
		return s.store(ctx, tx, &a, slots)
	})
}

// applied reports whether a was applied before: its first key exists or
// its first slot was ever stored.
func (s *Store) applied(ctx context.Context, tx *txn, a *keystore.Allocation) (bool, error) {
	if len(a.Keys) > 0 {
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM keys WHERE id = ?", a.Keys[0].ID[:]).Scan(&one)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return false, fmt.Errorf("keystore/sqlite: allocate: %w", err)
		}
	}
	if a.Slots == nil {
		return false, nil
	}
	return slotSet(a.Link, a.Slots.Sender).overlaps(ctx, tx, a.Slots.First, a.Slots.First)
}

// checkNew returns keystore.ErrConflict if a key, slot or outbox entry of a exists.
func checkNew(ctx context.Context, tx *txn, a *keystore.Allocation) error {
	if err := checkNewKeys(ctx, tx, a.Keys); err != nil {
		return err
	}
	if r := a.Slots; r != nil {
		had, err := slotSet(a.Link, r.Sender).overlaps(ctx, tx, r.First, r.First+uint64(r.Count)-1)
		if err != nil {
			return err
		}
		if had {
			return fmt.Errorf("keystore: slots %d+%d of %s were stored before: %w", r.First, r.Count, r.Sender, keystore.ErrConflict)
		}
	}
	return checkNewOutbox(ctx, tx, a.Outbox)
}

// checkNewOutbox returns keystore.ErrConflict if o (may be nil) exists.
func checkNewOutbox(ctx context.Context, tx *txn, o *keystore.Outbox) error {
	if o == nil {
		return nil
	}
	var one int
	err := tx.QueryRowContext(ctx, "SELECT 1 FROM outbox WHERE id = ?", o.ID).Scan(&one)
	if err == nil {
		return fmt.Errorf("keystore: outbox entry %q exists: %w", o.ID, keystore.ErrConflict)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("keystore/sqlite: outbox: %w", err)
	}
	return nil
}

// checkNewKeys returns keystore.ErrConflict naming the first of keys that
// exists: one statement for all of them, then one per key if any does.
func checkNewKeys(ctx context.Context, tx *txn, keys []keystore.Key) error {
	if len(keys) == 0 {
		return nil
	}
	ids := make([]qkd.KeyID, len(keys))
	for i := range keys {
		ids[i] = keys[i].ID
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM keys WHERE "+inIDs, idsJSON(ids)).Scan(&n); err != nil {
		return fmt.Errorf("keystore/sqlite: allocate: %w", err)
	}
	if n == 0 {
		return nil
	}
	var one int
	for _, id := range ids {
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM keys WHERE id = ?", id[:]).Scan(&one)
		if err == nil {
			return fmt.Errorf("keystore: key %s: %w", id, keystore.ErrKeyExists)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("keystore/sqlite: allocate: %w", err)
		}
	}
	return nil
}

// takePieces consumes pieces of link l in order and returns their bytes
// (the caller wipes them); keystore.ErrConflict if a piece is not free.
// Each piece is checked against its block as the pieces before it left it.
func (s *Store) takePieces(ctx context.Context, tx *txn, l qkd.LinkID, pieces []keystore.Piece, total int) ([]byte, error) {
	buf := make([]byte, 0, total)
	for _, p := range pieces {
		b, ok, err := s.getBlock(ctx, tx, l, p.Index)
		if err == nil {
			view := &b
			if !ok {
				view = nil
			}
			err = rules.CheckPiece(l, p, view, b.Offset)
		}
		if err == nil {
			buf = append(buf, b.Data.Expose()[:p.Len]...)
			err = s.consume(ctx, tx, b, p.Len)
		}
		if err != nil {
			b.Data.Wipe()
			secret.Wipe(buf)
			return nil, err
		}
	}
	return buf, nil
}

// store inserts a's keys (with Data cut), slots and outbox entry.
func (s *Store) store(ctx context.Context, tx *txn, a *keystore.Allocation, slots []secret.Bytes) error {
	now := s.now()
	defaultCreated(a.Keys, now)
	if err := s.insertKeys(ctx, tx, a.Keys); err != nil {
		return err
	}
	if r := a.Slots; r != nil {
		if err := s.insertSlots(ctx, tx, a.Link, *r, slots); err != nil {
			return err
		}
	}
	return insertOutbox(ctx, tx, a.Outbox, a.Link, now)
}

// insertOutbox inserts o (may be nil), defaulting its Link to l and its
// Created to now.
func insertOutbox(ctx context.Context, tx *txn, o *keystore.Outbox, l qkd.LinkID, now time.Time) error {
	if o == nil {
		return nil
	}
	link, created := o.Link, o.Created
	if link == "" {
		link = l
	}
	if created.IsZero() {
		created = now
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO outbox (id, link, payload, created) VALUES (?, ?, ?, ?)",
		o.ID, string(link), nonNil(o.Payload), encTime(created))
	if err != nil {
		return fmt.Errorf("keystore/sqlite: outbox: %w", err)
	}
	return nil
}

// defaultCreated sets the Created of keys that have none to now.
func defaultCreated(keys []keystore.Key, now time.Time) {
	for i := range keys {
		if keys[i].Created.IsZero() {
			keys[i].Created = now
		}
	}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
