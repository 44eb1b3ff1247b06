package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
)

// Kinds of numbers kept in the seen table.
const (
	seenBlocks = 0 // block indices of a link (sender "")
	seenSlots  = 1 // slot numbers of a sender on a link
)

// seenSet is the set of numbers of one kind, link and sender ever stored:
// disjoint, non-adjacent ranges in the seen table. It outlives the rows it
// counts, so indices and slot numbers are never reused.
type seenSet struct {
	kind   int
	link   string
	sender string
}

// last returns the range with the highest lo <= x.
func (n seenSet) last(ctx context.Context, q querier, x uint64) (lo, hi uint64, ok bool, err error) {
	var l, h int64
	err = q.QueryRowContext(ctx,
		"SELECT lo, hi FROM seen WHERE kind = ? AND link = ? AND sender = ? AND lo <= ? ORDER BY lo DESC LIMIT 1",
		n.kind, n.link, n.sender, enc(x)).Scan(&l, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("keystore/sqlite: seen: %w", err)
	}
	return dec(l), dec(h), true, nil
}

// overlaps reports whether any number of [from, to] is in the set.
func (n seenSet) overlaps(ctx context.Context, q querier, from, to uint64) (bool, error) {
	_, hi, ok, err := n.last(ctx, q, to)
	return ok && hi >= from, err
}

// add adds [from, to], which must not overlap the set, merging neighbours.
func (n seenSet) add(ctx context.Context, q querier, from, to uint64) error {
	lo, hi := from, to
	if from > 0 {
		l, h, ok, err := n.last(ctx, q, from-1)
		if err != nil {
			return err
		}
		if ok && h == from-1 {
			lo = l
			if err := n.del(ctx, q, l); err != nil {
				return err
			}
		}
	}
	if to < math.MaxUint64 {
		var h int64
		err := q.QueryRowContext(ctx, "SELECT hi FROM seen WHERE kind = ? AND link = ? AND sender = ? AND lo = ?",
			n.kind, n.link, n.sender, enc(to+1)).Scan(&h)
		switch {
		case err == nil:
			hi = dec(h)
			if err := n.del(ctx, q, to+1); err != nil {
				return err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("keystore/sqlite: seen: %w", err)
		}
	}
	_, err := q.ExecContext(ctx, "INSERT INTO seen (kind, link, sender, lo, hi) VALUES (?, ?, ?, ?, ?)",
		n.kind, n.link, n.sender, enc(lo), enc(hi))
	if err != nil {
		return fmt.Errorf("keystore/sqlite: seen: %w", err)
	}
	return nil
}

// addOne adds x, which must not be in the set, given what last(x)
// returned (the range [lo, hi] with the highest lo <= x, if ok): a block
// arriving after the one before it extends that range with one UPDATE,
// where add would look it up again, delete it and insert the merged one.
func (n seenSet) addOne(ctx context.Context, q querier, x, lo, hi uint64, ok bool) error {
	newHi := x
	if x < math.MaxUint64 {
		var h int64
		err := q.QueryRowContext(ctx, "SELECT hi FROM seen WHERE kind = ? AND link = ? AND sender = ? AND lo = ?",
			n.kind, n.link, n.sender, enc(x+1)).Scan(&h)
		switch {
		case err == nil:
			newHi = dec(h)
			if err := n.del(ctx, q, x+1); err != nil {
				return err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("keystore/sqlite: seen: %w", err)
		}
	}
	if ok && x > 0 && hi == x-1 {
		_, err := q.ExecContext(ctx, "UPDATE seen SET hi = ? WHERE kind = ? AND link = ? AND sender = ? AND lo = ?",
			enc(newHi), n.kind, n.link, n.sender, enc(lo))
		if err != nil {
			return fmt.Errorf("keystore/sqlite: seen: %w", err)
		}
		return nil
	}
	_, err := q.ExecContext(ctx, "INSERT INTO seen (kind, link, sender, lo, hi) VALUES (?, ?, ?, ?, ?)",
		n.kind, n.link, n.sender, enc(x), enc(newHi))
	if err != nil {
		return fmt.Errorf("keystore/sqlite: seen: %w", err)
	}
	return nil
}

func (n seenSet) del(ctx context.Context, q querier, lo uint64) error {
	_, err := q.ExecContext(ctx, "DELETE FROM seen WHERE kind = ? AND link = ? AND sender = ? AND lo = ?",
		n.kind, n.link, n.sender, enc(lo))
	if err != nil {
		return fmt.Errorf("keystore/sqlite: seen: %w", err)
	}
	return nil
}

// max returns the highest number in the set; ok is false if it is empty.
func (n seenSet) max(ctx context.Context, q querier) (hi uint64, ok bool, err error) {
	_, hi, ok, err = n.last(ctx, q, math.MaxUint64)
	return hi, ok, err
}
