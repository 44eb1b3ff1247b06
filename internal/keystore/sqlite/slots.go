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

func slotSet(l qkd.LinkID, sender qkd.NodeID) seenSet {
	return seenSet{kind: seenSlots, link: string(l), sender: string(sender)}
}

// insertSlots stores slots r.First.. of r.Sender; slots[i] holds slot First+i.
func (s *Store) insertSlots(ctx context.Context, tx *txn, l qkd.LinkID, r keystore.SlotRange, slots []secret.Bytes) error {
	for i, m := range slots {
		seq := r.First + uint64(i)
		data, err := s.ring.Seal(s.rand, s.ring.Current(), m.Expose(), adSlot(l, r.Sender, seq))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO slots (link, sender, seq, data) VALUES (?, ?, ?, ?)",
			string(l), string(r.Sender), enc(seq), data); err != nil {
			return fmt.Errorf("keystore/sqlite: insert slot: %w", err)
		}
	}
	tx.slotsOf(l, r.Sender, len(slots))
	return slotSet(l, r.Sender).add(ctx, tx, r.First, r.First+uint64(r.Count)-1)
}

// InitLink implements keystore.Store.
func (s *Store) InitLink(ctx context.Context, in keystore.LinkInit) (bool, error) {
	if err := rules.CheckLinkInit(in); err != nil {
		return false, err
	}
	done := false
	err := s.tx(ctx, func(tx *txn) error {
		var init int
		err := tx.QueryRowContext(ctx, "SELECT initialised FROM links WHERE link = ?", string(in.Link)).Scan(&init)
		if err == nil && init != 0 {
			return nil
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("keystore/sqlite: init link: %w", err)
		}
		for i, r := range in.Slots {
			if err := s.initSlots(ctx, tx, in.Link, r, in.Material[i]); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO links (link, initialised) VALUES (?, 1) ON CONFLICT (link) DO UPDATE SET initialised = 1",
			string(in.Link)); err != nil {
			return fmt.Errorf("keystore/sqlite: init link: %w", err)
		}
		done = true
		return nil
	})
	return done && err == nil, err
}

func (s *Store) initSlots(ctx context.Context, tx *txn, l qkd.LinkID, r keystore.SlotRange, material secret.Bytes) error {
	had, err := slotSet(l, r.Sender).overlaps(ctx, tx, r.First, r.First+uint64(r.Count)-1)
	if err != nil {
		return err
	}
	if had {
		return fmt.Errorf("keystore: PSK slots %d+%d of %s were stored before: %w", r.First, r.Count, r.Sender, keystore.ErrConflict)
	}
	m := material.Expose()
	slots := make([]secret.Bytes, r.Count)
	for j := range slots {
		slots[j] = secret.Adopt(m[j*keystore.SlotSize : (j+1)*keystore.SlotSize])
	}
	// slots alias the caller's material: not wiped here.
	return s.insertSlots(ctx, tx, l, r, slots)
}

// TakeSlot implements keystore.Store.
func (s *Store) TakeSlot(ctx context.Context, l qkd.LinkID, sender qkd.NodeID, seq uint64) (secret.MACKey, error) {
	var out secret.MACKey
	err := s.tx(ctx, func(tx *txn) error {
		var sealed []byte
		err := tx.QueryRowContext(ctx, "SELECT data FROM slots WHERE link = ? AND sender = ? AND seq = ?",
			string(l), string(sender), enc(seq)).Scan(&sealed)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("keystore: slot %d of %s on %s: %w", seq, sender, l, qkd.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("keystore/sqlite: take slot: %w", err)
		}
		pt, err := s.ring.Open(sealed, adSlot(l, sender, seq))
		if err != nil {
			return fmt.Errorf("keystore/sqlite: slot %d of %s on %s: %w", seq, sender, l, err)
		}
		out = secret.MACKey{Bytes: secret.Adopt(pt)}
		if _, err := tx.ExecContext(ctx, "DELETE FROM slots WHERE link = ? AND sender = ? AND seq = ?",
			string(l), string(sender), enc(seq)); err != nil {
			out.Wipe()
			return fmt.Errorf("keystore/sqlite: take slot: %w", err)
		}
		tx.slotsOf(l, sender, -1)
		return nil
	})
	if err != nil {
		out.Wipe()
		return secret.MACKey{}, err
	}
	return out, nil
}

// UseSlot implements keystore.Store.
func (s *Store) UseSlot(ctx context.Context, l qkd.LinkID, sender qkd.NodeID, seq uint64, check func(secret.MACKey) bool) (secret.MACKey, bool, error) {
	var out secret.MACKey
	used := false
	err := s.tx(ctx, func(tx *txn) error {
		var sealed []byte
		err := tx.QueryRowContext(ctx, "SELECT data FROM slots WHERE link = ? AND sender = ? AND seq = ?",
			string(l), string(sender), enc(seq)).Scan(&sealed)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("keystore: slot %d of %s on %s: %w", seq, sender, l, qkd.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("keystore/sqlite: use slot: %w", err)
		}
		pt, err := s.ring.Open(sealed, adSlot(l, sender, seq))
		if err != nil {
			return fmt.Errorf("keystore/sqlite: slot %d of %s on %s: %w", seq, sender, l, err)
		}
		out = secret.MACKey{Bytes: secret.Adopt(pt)}
		if used = check(out); !used {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM slots WHERE link = ? AND sender = ? AND seq = ?",
			string(l), string(sender), enc(seq)); err != nil {
			return fmt.Errorf("keystore/sqlite: use slot: %w", err)
		}
		tx.slotsOf(l, sender, -1)
		return nil
	})
	if err != nil {
		out.Wipe()
		return secret.MACKey{}, false, err
	}
	return out, used, nil
}

// SlotBounds implements keystore.Store. With no slot left, lowest == next.
func (s *Store) SlotBounds(ctx context.Context, l qkd.LinkID, sender qkd.NodeID) (lowest, next uint64, count int, err error) {
	err = s.tx(ctx, func(tx *txn) error {
		hi, ok, err := slotSet(l, sender).max(ctx, tx)
		if err != nil {
			return err
		}
		next = 0
		if ok {
			next = hi + 1
		}
		var low sql.NullInt64
		if err := tx.QueryRowContext(ctx, "SELECT MIN(seq), COUNT(*) FROM slots WHERE link = ? AND sender = ?",
			string(l), string(sender)).Scan(&low, &count); err != nil {
			return fmt.Errorf("keystore/sqlite: slot bounds: %w", err)
		}
		lowest = next
		if low.Valid {
			lowest = dec(low.Int64)
		}
		return nil
	})
	return lowest, next, count, err
}
