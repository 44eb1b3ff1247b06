package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// Statistics in memory.
//
// Stats is asked for every link on every housekeeping tick and every ETSI
// 014 status request, so it reads no table: the store keeps per-link
// counters (s.counts, under cmu), loaded by one scan at Open and changed
// by every transaction that changes what they count. A transaction
// records its changes in a delta (txn.delta) as it makes them; inTx adds
// the delta once the transaction commits, and drops it with a rollback.
// Keys popped by the fast path and not yet applied to the database are
// still Ready rows: Stats subtracts them (s.pendLinks), and inTx forgets
// them from pend in the same critical section as it adds the delta of the
// transaction that applied them, so Stats never counts a key twice or not
// at all. Zeroize empties the counters.

// linkCounts are the counters of one link. In a delta the numbers are
// changes (and may be negative).
type linkCounts struct {
	unconfBlocks int
	unconfBytes  int64
	confBytes    [2]int64 // by index parity
	pending      int
	ready        int
	slots        map[qkd.NodeID]int // by sender; no zero entries once added
	maxIndex     uint64             // the highest block index ever added,
	hasIndex     bool               // if any
}

// counts are linkCounts by link.
type counts map[qkd.LinkID]*linkCounts

// of returns the counters of l, creating them.
func (c counts) of(l qkd.LinkID) *linkCounts {
	x := c[l]
	if x == nil {
		x = &linkCounts{slots: make(map[qkd.NodeID]int)}
		c[l] = x
	}
	return x
}

// add adds the delta d.
func (c counts) add(d counts) {
	for l, x := range d {
		y := c.of(l)
		y.unconfBlocks += x.unconfBlocks
		y.unconfBytes += x.unconfBytes
		y.confBytes[0] += x.confBytes[0]
		y.confBytes[1] += x.confBytes[1]
		y.pending += x.pending
		y.ready += x.ready
		for snd, n := range x.slots {
			if y.slots[snd] += n; y.slots[snd] == 0 {
				delete(y.slots, snd)
			}
		}
		if x.hasIndex && (!y.hasIndex || x.maxIndex > y.maxIndex) {
			y.maxIndex, y.hasIndex = x.maxIndex, true
		}
	}
}

// stats returns x as keystore.LinkStats (x may be nil), with ready keys
// less popped.
func (x *linkCounts) stats(popped int) keystore.LinkStats {
	st := keystore.LinkStats{Slots: make(map[qkd.NodeID]int)}
	if x != nil {
		st.UnconfirmedBlocks, st.UnconfirmedBytes = x.unconfBlocks, x.unconfBytes
		st.ConfirmedBytes = x.confBytes
		st.KeysPending, st.KeysReady = x.pending, x.ready
		for snd, n := range x.slots {
			if n != 0 {
				st.Slots[snd] = n
			}
		}
		st.MaxIndex, st.HasIndex = x.maxIndex, x.hasIndex
	}
	st.KeysReady -= popped
	return st
}

// Stats implements keystore.Store from the counters: no table is read and
// the store's lock is not taken.
func (s *Store) Stats(ctx context.Context, l qkd.LinkID) (keystore.LinkStats, error) {
	if err := ctx.Err(); err != nil {
		return keystore.LinkStats{}, err
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.gone != nil {
		return keystore.LinkStats{}, s.gone
	}
	return s.counts[l].stats(s.pendLinks[l]), nil
}

// Changes of a transaction, recorded in its delta.

func (t *txn) counts(l qkd.LinkID) *linkCounts {
	if t.delta == nil {
		t.delta = make(counts)
	}
	return t.delta.of(l)
}

// blockAdded counts a new unconfirmed block of n bytes.
func (t *txn) blockAdded(l qkd.LinkID, idx uint64, n int) {
	c := t.counts(l)
	c.unconfBlocks++
	c.unconfBytes += int64(n)
	if !c.hasIndex || idx > c.maxIndex {
		c.maxIndex, c.hasIndex = idx, true
	}
}

// blockBytes counts n more (fewer, if negative) free bytes in a block.
func (t *txn) blockBytes(l qkd.LinkID, idx uint64, state keystore.BlockState, n int) {
	c := t.counts(l)
	if state == keystore.BlockUnconfirmed {
		c.unconfBytes += int64(n)
	} else {
		c.confBytes[idx&1] += int64(n)
	}
}

// blockGone counts a block deleted with rest bytes left.
func (t *txn) blockGone(l qkd.LinkID, idx uint64, state keystore.BlockState, rest int) {
	t.blockBytes(l, idx, state, -rest)
	if state == keystore.BlockUnconfirmed {
		t.counts(l).unconfBlocks--
	}
}

// blockConfirmed counts an unconfirmed block with rest bytes confirmed.
func (t *txn) blockConfirmed(l qkd.LinkID, idx uint64, rest int) {
	t.blockGone(l, idx, keystore.BlockUnconfirmed, rest)
	t.blockBytes(l, idx, keystore.BlockConfirmed, rest)
}

// keys counts n more (fewer) keys of l in state.
func (t *txn) keys(l qkd.LinkID, state keystore.KeyState, n int) {
	c := t.counts(l)
	if state == keystore.KeyReady {
		c.ready += n
	} else {
		c.pending += n
	}
}

// slotsOf counts n more (fewer) slots of sender on l.
func (t *txn) slotsOf(l qkd.LinkID, sender qkd.NodeID, n int) {
	t.counts(l).slots[sender] += n
}

// eachRow runs query (a statement with RETURNING, or a SELECT) and calls
// scan for every row; it returns how many rows there were.
func eachRow(ctx context.Context, q querier, scan func(*sql.Rows) error, query string, args ...any) (int, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if err := scan(rows); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// scanCounts counts everything in the tables: once at Open, and in tests.
func scanCounts(ctx context.Context, q querier) (counts, error) {
	c := make(counts)
	wrap := func(err error) error { return fmt.Errorf("keystore/sqlite: counting: %w", err) }
	_, err := eachRow(ctx, q, func(rows *sql.Rows) error {
		var link string
		var state keystore.BlockState
		var parity, n int
		var bytes int64
		if err := rows.Scan(&link, &state, &parity, &n, &bytes); err != nil {
			return err
		}
		x := c.of(qkd.LinkID(link))
		if state == keystore.BlockUnconfirmed {
			x.unconfBlocks += n
			x.unconfBytes += bytes
		} else {
			x.confBytes[parity] += bytes
		}
		return nil
	}, "SELECT link, state, idx & 1, COUNT(*), SUM(size - off) FROM blocks GROUP BY link, state, idx & 1")
	if err != nil {
		return nil, wrap(err)
	}
	_, err = eachRow(ctx, q, func(rows *sql.Rows) error {
		var link string
		var state keystore.KeyState
		var n int
		if err := rows.Scan(&link, &state, &n); err != nil {
			return err
		}
		if x := c.of(qkd.LinkID(link)); state == keystore.KeyReady {
			x.ready += n
		} else {
			x.pending += n
		}
		return nil
	}, "SELECT link, state, COUNT(*) FROM keys GROUP BY link, state")
	if err != nil {
		return nil, wrap(err)
	}
	_, err = eachRow(ctx, q, func(rows *sql.Rows) error {
		var link, sender string
		var n int
		if err := rows.Scan(&link, &sender, &n); err != nil {
			return err
		}
		c.of(qkd.LinkID(link)).slots[qkd.NodeID(sender)] = n
		return nil
	}, "SELECT link, sender, COUNT(*) FROM slots GROUP BY link, sender")
	if err != nil {
		return nil, wrap(err)
	}
	_, err = eachRow(ctx, q, func(rows *sql.Rows) error {
		var link string
		var hi int64
		if err := rows.Scan(&link, &hi); err != nil {
			return err
		}
		x := c.of(qkd.LinkID(link))
		x.maxIndex, x.hasIndex = dec(hi), true
		return nil
	}, "SELECT link, MAX(hi) FROM seen WHERE kind = ? GROUP BY link", seenBlocks)
	if err != nil {
		return nil, wrap(err)
	}
	return c, nil
}

// loadCounts replaces the counters by a count of the tables. Open calls it
// once, after the journal's replay; the caller owns s.
func (s *Store) loadCounts(ctx context.Context) error {
	c, err := scanCounts(ctx, s.db)
	if err != nil {
		return err
	}
	s.cmu.Lock()
	s.counts = c
	s.cmu.Unlock()
	return nil
}
