package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// encSAEs is the stored form of an SAE list: a JSON array, compared as text.
// A list of one plain ID (the common case: read and written for every key)
// is spelled directly, exactly as encoding/json spells it.
func encSAEs(s []qkd.SAEID) string {
	if len(s) == 1 && plainJSON(string(s[0])) {
		return `["` + string(s[0]) + `"]`
	}
	if s == nil {
		s = []qkd.SAEID{}
	}
	b, _ := json.Marshal(s) // strings always marshal
	return string(b)
}

// plainJSON reports whether encoding/json writes s between quotes as it is:
// printable ASCII other than the quote, the backslash and the characters
// it escapes for HTML (<, >, &).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// decSAEs decodes encSAEs's form.
func decSAEs(s string) ([]qkd.SAEID, error) {
	if len(s) >= 4 && s[:2] == `["` && s[len(s)-2:] == `"]` && plainJSON(s[2:len(s)-2]) {
		return []qkd.SAEID{qkd.SAEID(s[2 : len(s)-2])}, nil
	}
	var out []qkd.SAEID
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("keystore/sqlite: SAE list: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// insertKeyQueries[n] inserts n keys (n in insertChunks).
var (
	insertChunks     = []int{64, 8, 1}
	insertKeyQueries = func() map[int]string {
		m := make(map[int]string)
		for _, n := range insertChunks {
			q := "INSERT INTO keys (id, link, state, master, slaves, pending, size_bits, created, expires, data, stream) VALUES " +
				strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ", n)
			m[n] = strings.TrimSuffix(q, ", ")
		}
		return m
	}()
)

// insertKeys seals and inserts keys, several per statement.
func (s *Store) insertKeys(ctx context.Context, tx *txn, keys []keystore.Key) error {
	args := make([]any, 0, 11*insertChunks[0])
	for len(keys) > 0 {
		n := insertChunks[len(insertChunks)-1]
		for _, c := range insertChunks {
			if c <= len(keys) {
				n = c
				break
			}
		}
		args = args[:0]
		for i := range keys[:n] {
			k := &keys[i]
			slaves := encSAEs(k.Slaves)
			data, err := s.ring.Seal(s.rand, s.ring.Current(), k.Data.Expose(), adKey(k.ID, k.Link, k.Master, slaves, k.SizeBits))
			if err != nil {
				return err
			}
			args = append(args, k.ID[:], string(k.Link), k.State, string(k.Master), slaves, encSAEs(k.Pending), k.SizeBits,
				encTime(k.Created), encTime(k.Expires), data, k.Stream)
			s.expiresBy(encTime(k.Expires))
		}
		if _, err := tx.ExecContext(ctx, insertKeyQueries[n], args...); err != nil {
			return fmt.Errorf("keystore/sqlite: insert key: %w", err)
		}
		for i := range keys[:n] {
			tx.keys(keys[i].Link, keys[i].State, 1)
		}
		keys = keys[n:]
	}
	return nil
}

// idsJSON encodes key IDs as a JSON array of hex strings, for
// "id IN (SELECT unhex(value) FROM json_each(?))".
func idsJSON(ids []qkd.KeyID) string {
	b := make([]byte, 0, 2+len(ids)*(2*len(qkd.KeyID{})+3))
	b = append(b, '[')
	for i := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = hex.AppendEncode(b, ids[i][:])
		b = append(b, '"')
	}
	return string(append(b, ']'))
}

const inIDs = "id IN (SELECT unhex(value) FROM json_each(?))"

const keyCols = "seq, id, link, state, master, slaves, pending, size_bits, created, expires, stream"

// keyRow is a key as read without its bytes, with its stored slaves text
// (and its sealed bytes if they were read with it).
type keyRow struct {
	seq    int64
	slaves string
	sealed []byte
	key    keystore.Key
}

func scanKey(sc interface{ Scan(...any) error }, extra ...any) (keyRow, error) {
	var r keyRow
	var id []byte
	var link, master, pending string
	var created, expires int64
	err := sc.Scan(append([]any{&r.seq, &id, &link, &r.key.State, &master, &r.slaves, &pending, &r.key.SizeBits, &created, &expires, &r.key.Stream}, extra...)...)
	if err != nil {
		return r, err
	}
	if len(id) != len(r.key.ID) {
		return r, fmt.Errorf("keystore/sqlite: key ID of %d bytes", len(id))
	}
	r.key.ID = qkd.KeyID(id)
	r.key.Link, r.key.Master = qkd.LinkID(link), qkd.SAEID(master)
	r.key.Created, r.key.Expires = decTime(created), decTime(expires)
	if r.key.Slaves, err = decSAEs(r.slaves); err != nil {
		return r, err
	}
	r.key.Pending, err = decSAEs(pending)
	return r, err
}

// queryKeys returns the keys of a query on keyCols for which keep is true,
// stopping after limit (no limit if limit <= 0).
func queryKeys(ctx context.Context, q querier, limit int, keep func(*keystore.Key) bool, query string, args ...any) ([]keyRow, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+keyCols+" FROM keys "+query, args...)
	if err != nil {
		return nil, fmt.Errorf("keystore/sqlite: keys: %w", err)
	}
	defer rows.Close()
	var out []keyRow
	for rows.Next() && (limit <= 0 || len(out) < limit) {
		r, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("keystore/sqlite: keys: %w", err)
		}
		if keep(&r.key) {
			out = append(out, r)
		}
	}
	return out, rows.Err()
}

// pairKeys returns up to limit keys that r.Caller may take for its pair.
func pairKeys(ctx context.Context, q querier, r *keystore.TakeRequest, limit int) ([]keyRow, error) {
	return queryKeys(ctx, q, limit, func(k *keystore.Key) bool { return rules.MatchesPair(k, r) },
		"WHERE master = ? AND slaves = ? AND size_bits = ? AND state = ? AND stream = '' AND (expires = 0 OR expires > ?) ORDER BY seq",
		string(r.Master), encSAEs(r.Slaves), r.SizeBits, keystore.KeyReady, encTime(r.Now))
}

// pairKeysSealed is pairKeys for a request without a link filter, reading
// the sealed bytes along, and at most limit rows.
func pairKeysSealed(ctx context.Context, q querier, r *keystore.TakeRequest, limit int) ([]keyRow, error) {
	caller, _ := json.Marshal(string(r.Caller))
	rows, err := q.QueryContext(ctx, "SELECT "+keyCols+", data FROM keys "+
		"WHERE master = ? AND slaves = ? AND size_bits = ? AND state = ? AND stream = '' AND (expires = 0 OR expires > ?) "+
		"AND instr(pending, ?) > 0 ORDER BY seq LIMIT ?",
		string(r.Master), encSAEs(r.Slaves), r.SizeBits, keystore.KeyReady, encTime(r.Now), string(caller), limit)
	if err != nil {
		return nil, fmt.Errorf("keystore/sqlite: keys: %w", err)
	}
	defer rows.Close()
	out := make([]keyRow, 0, min(limit, maxFill))
	for rows.Next() {
		var sealed []byte
		k, err := scanKey(rows, &sealed)
		if err != nil {
			return nil, fmt.Errorf("keystore/sqlite: keys: %w", err)
		}
		k.sealed = sealed
		if rules.MatchesPair(&k.key, r) {
			out = append(out, k)
		}
	}
	return out, rows.Err()
}

// openKey returns the bytes of row r, reading them through q if r holds
// none (q may be nil if r holds them).
func (s *Store) openKey(ctx context.Context, q querier, r *keyRow) (secret.Bytes, error) {
	sealed := r.sealed
	if sealed == nil && q != nil {
		if err := q.QueryRowContext(ctx, "SELECT data FROM keys WHERE seq = ?", r.seq).Scan(&sealed); err != nil {
			return secret.Bytes{}, fmt.Errorf("keystore/sqlite: deliver: %w", err)
		}
	}
	k := &r.key
	pt, err := s.ring.Open(sealed, adKey(k.ID, k.Link, k.Master, r.slaves, k.SizeBits))
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("keystore/sqlite: key %s: %w", k.ID, err)
	}
	return secret.Adopt(pt), nil
}

// deliver opens the keys of rows for caller, and records the delivery:
// the key loses caller from Pending, or is deleted if it was the last.
func (s *Store) deliver(ctx context.Context, tx *txn, rows []keyRow, caller qkd.SAEID) ([]keystore.Key, error) {
	out := make([]keystore.Key, 0, len(rows))
	fail := func(err error) ([]keystore.Key, error) {
		for i := range out {
			out[i].Data.Wipe()
		}
		return nil, err
	}
	for i := range rows {
		r := &rows[i]
		k := r.key
		var err error
		if k.Data, err = s.openKey(ctx, tx, r); err != nil {
			return fail(err)
		}
		out = append(out, k)
		if rules.Served(&out[len(out)-1], caller) {
			_, err = tx.ExecContext(ctx, "DELETE FROM keys WHERE seq = ?", r.seq)
			tx.keys(k.Link, k.State, -1)
		} else {
			_, err = tx.ExecContext(ctx, "UPDATE keys SET pending = ? WHERE seq = ?", encSAEs(out[len(out)-1].Pending), r.seq)
		}
		if err != nil {
			return fail(fmt.Errorf("keystore/sqlite: deliver: %w", err))
		}
	}
	return out, nil
}

func (s *Store) defaultNow(r *keystore.TakeRequest) {
	if r.Now.IsZero() {
		r.Now = s.now()
	}
}

// TakeForPair implements keystore.Store. It is served from the pair's
// cache when it can (cache.go); otherwise it applies the journaled
// deliveries, reads the first keys of the pair and either fills the cache
// with them and pops from it, or delivers them in the transaction (with a
// link filter, when the first keys wait for other SAEs too, or once the
// journal failed). Keys delivered in a transaction are returned only after
// the barrier (Sync) made that transaction durable.
func (s *Store) TakeForPair(ctx context.Context, r keystore.TakeRequest) ([]keystore.Key, error) {
	if err := rules.CheckTake(&r, false); err != nil {
		return nil, err
	}
	s.defaultNow(&r)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pid := pairOf(&r)
	if keys, ok := s.takeCached(pid, &r); ok {
		return keys, nil
	}
	keys, durable, err := s.takeLocked(ctx, pid, &r)
	if err != nil || durable {
		return keys, err
	}
	return s.durableKeys(ctx, keys)
}

// takeLocked is the slow path of TakeForPair. durable reports whether the
// keys' delivery is durable already.
func (s *Store) takeLocked(ctx context.Context, pid pairID, r *keystore.TakeRequest) (keys []keystore.Key, durable bool, err error) {
	if err := s.lock(ctx); err != nil {
		return nil, false, err
	}
	defer s.mu.Unlock()
	// Requests that missed together queue here: the first refills the
	// cache, the others are served from it.
	if keys, ok := s.takeCached(pid, r); ok {
		return keys, true, nil
	}
	// Keys taken now could not be made durable: take none.
	if err := s.durable.err(); err != nil {
		return nil, false, s.syncErr(err)
	}
	s.cmu.Lock()
	fast := s.fastErr == nil && r.Link == "" && len(r.Caller) <= maxCaller
	s.cmu.Unlock()
	keys, durable, err = s.takeInTx(ctx, pid, r, fast)
	if err == nil || !errors.Is(err, errJournal) {
		return keys, durable, err
	}
	// The journal failed (logged; the fast path is shut): the keys are
	// still in the database — unless nothing can be made durable.
	if err := s.durable.err(); err != nil {
		return nil, false, s.syncErr(err)
	}
	return s.takeInTx(ctx, pid, r, false)
}

// durableKeys returns keys once their delivery, committed, is durable. If
// the barrier fails the keys are wiped and not returned: they are marked
// delivered already, so they are lost rather than risk being delivered
// again after power loss. The wait ignores ctx's cancellation: giving up
// would lose the keys too.
func (s *Store) durableKeys(ctx context.Context, keys []keystore.Key) ([]keystore.Key, error) {
	if err := s.barrier(context.WithoutCancel(ctx)); err != nil {
		return nil, s.wipeOnError(keys, err)
	}
	return keys, nil
}

// syncErr is barrier's wrapping of a syncer error.
func (s *Store) syncErr(err error) error {
	if errors.Is(err, ErrClosed) || errors.Is(err, keystore.ErrZeroized) {
		return err
	}
	return fmt.Errorf("keystore/sqlite: sync: %w", err)
}

// errJournal: the delivery journal failed during a take.
var errJournal = errors.New("keystore/sqlite: delivery journal failed")

// takeInTx is the slow path of TakeForPair, under mu. With fast set it may
// fill the pair's cache — leasing the keys durably — and pop from it
// (leased true); otherwise the keys are delivered in the transaction.
func (s *Store) takeInTx(ctx context.Context, pid pairID, r *keystore.TakeRequest, fast bool) (keys []keystore.Key, leased bool, err error) {
	var out, fill []keystore.Key
	err = s.run(ctx, evictPair(s, pid), func(tx *txn) error {
		out, fill = nil, nil
		if !fast {
			rows, err := pairKeys(ctx, tx, r, r.Number)
			if err != nil {
				return err
			}
			if len(rows) < r.Number {
				return insufficient(len(rows), r.Number)
			}
			out, err = s.deliver(ctx, tx, rows, r.Caller)
			return err
		}
		s.cmu.Lock()
		s.fitFill(pid, r.Number)
		limit := max(s.fillSize(pid), 2*r.Number)
		s.cmu.Unlock()
		rows, err := pairKeysSealed(ctx, tx, r, limit)
		if err != nil {
			return err
		}
		if len(rows) < r.Number {
			return insufficient(len(rows), r.Number)
		}
		only := 0 // rows[:only] wait for the caller alone
		for only < len(rows) && len(rows[only].key.Pending) == 1 {
			only++
		}
		if only < r.Number {
			out, err = s.deliver(ctx, tx, rows[:r.Number], r.Caller)
			return err
		}
		fill, err = s.openFill(ctx, tx, rows[:only], r.Number)
		return err
	})
	if err != nil || fill == nil {
		return out, false, s.wipeOnError(out, err)
	}
	// Still under mu: nothing else read or changed these keys since the
	// transaction, and pid has no cache (evicted, and only this path
	// fills). The lease is durable before any of them can be popped.
	ids := make([]qkd.KeyID, len(fill))
	for i := range fill {
		ids[i] = fill[i].ID
	}
	if err := s.lease(ctx, r.Caller, ids); err != nil {
		wipeKeys(fill)
		return nil, false, errJournal
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	c := s.installLocked(pid, r, fill)
	if keys, ok := s.popLocked(c, r); ok {
		return keys, true, nil
	}
	s.dropLocked(c) // not reached: the first r.Number keys are unexpired at r.Now
	return nil, false, errJournal
}

func insufficient(have, want int) error {
	return fmt.Errorf("keystore: %d of %d keys: %w", have, want, qkd.ErrInsufficientKey)
}

// openFill opens rows for a pair cache. A row that does not open fails the
// take if it is among the first need ones (as it would have without the
// cache); later ones only end the fill before them.
func (s *Store) openFill(ctx context.Context, tx *txn, rows []keyRow, need int) ([]keystore.Key, error) {
	out := make([]keystore.Key, 0, len(rows))
	for i := range rows {
		data, err := s.openKey(ctx, tx, &rows[i])
		if err != nil {
			if i < need {
				return nil, s.wipeOnError(out, err)
			}
			break
		}
		k := rows[i].key
		k.Data = data
		out = append(out, k)
	}
	return out, nil
}

// wipeOnError wipes keys that will not be returned because err != nil.
func (s *Store) wipeOnError(keys []keystore.Key, err error) error {
	if err != nil {
		for i := range keys {
			keys[i].Data.Wipe()
		}
	}
	return err
}

// TakeByID implements keystore.Store. The keys are returned once the
// transaction that delivered them is durable (the barrier).
func (s *Store) TakeByID(ctx context.Context, r keystore.TakeRequest) ([]keystore.Key, error) {
	if err := rules.CheckTake(&r, true); err != nil {
		return nil, err
	}
	s.defaultNow(&r)
	if err := s.durable.err(); err != nil {
		return nil, s.syncErr(err)
	}
	var out []keystore.Key
	err := s.txEvict(ctx, evictIDs(s, r.IDs), func(tx *txn) error {
		out = nil
		var rows []keyRow
		var failed error
		for _, id := range r.IDs {
			row, err := scanKey(tx.QueryRowContext(ctx, "SELECT "+keyCols+" FROM keys WHERE id = ?", id[:]))
			var k *keystore.Key
			switch {
			case err == nil:
				k = &row.key
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("keystore/sqlite: take: %w", err)
			}
			if err := rules.CheckByID(k, &r); err != nil {
				failed = rules.Worse(failed, err)
			}
			rows = append(rows, row)
		}
		if failed != nil {
			return failed
		}
		var err error
		out, err = s.deliver(ctx, tx, rows, r.Caller)
		return err
	})
	if err != nil {
		return nil, s.wipeOnError(out, err)
	}
	return s.durableKeys(ctx, out)
}

// CountKeys implements keystore.Store. It counts in SQL on the pair index:
// Pending is a JSON array of SAE IDs, so the caller's quoted ID is in it
// exactly when the caller may still receive the key (Allocate admits only
// the key's recipients to Pending).
func (s *Store) CountKeys(ctx context.Context, r keystore.TakeRequest) (int, error) {
	s.defaultNow(&r)
	caller, _ := json.Marshal(string(r.Caller))
	n := 0
	err := s.tx(ctx, func(tx *txn) error {
		return tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM keys "+
			"WHERE master = ? AND slaves = ? AND size_bits = ? AND state = ? AND stream = '' AND (expires = 0 OR expires > ?) "+
			"AND (? = '' OR link = ?) AND instr(pending, ?) > 0",
			string(r.Master), encSAEs(r.Slaves), r.SizeBits, keystore.KeyReady, encTime(r.Now),
			string(r.Link), string(r.Link), string(caller)).Scan(&n)
	})
	return n, err
}

// scanGone counts a key deleted by a statement that returns its link and
// state.
func scanGone(tx *txn) func(*sql.Rows) error {
	return func(rows *sql.Rows) error {
		var link string
		var state keystore.KeyState
		if err := rows.Scan(&link, &state); err != nil {
			return err
		}
		tx.keys(qkd.LinkID(link), state, -1)
		return nil
	}
}

// DeleteKeys implements keystore.Store.
func (s *Store) DeleteKeys(ctx context.Context, ids []qkd.KeyID) (int, error) {
	n := 0
	err := s.txEvict(ctx, evictIDs(s, ids), func(tx *txn) error {
		n = 0
		for _, id := range ids {
			k, err := eachRow(ctx, tx, scanGone(tx), "DELETE FROM keys WHERE id = ? RETURNING link, state", id[:])
			if err != nil {
				return fmt.Errorf("keystore/sqlite: delete keys: %w", err)
			}
			n += k
		}
		return nil
	})
	return n, err
}

// ExpireKeys implements keystore.Store; relay records go too. While now is
// before the earliest expiry (Store.expiryHint) it does nothing at all.
func (s *Store) ExpireKeys(ctx context.Context, now time.Time) ([]keystore.Key, error) {
	if h := s.expiryHint.Load(); h != 0 && encTime(now) < h {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.cmu.Lock()
		gone := s.gone // closed or zeroised, as Stats reports it
		s.cmu.Unlock()
		return nil, gone
	}
	var out []keystore.Key
	err := s.txEvict(ctx, evictExpired(s, now), func(tx *txn) error {
		out = nil
		rows, err := queryKeys(ctx, tx, 0, func(*keystore.Key) bool { return true },
			"WHERE expires != 0 AND expires <= ? ORDER BY seq", encTime(now))
		if err != nil {
			return err
		}
		for _, r := range rows {
			if _, err := tx.ExecContext(ctx, "DELETE FROM keys WHERE seq = ?", r.seq); err != nil {
				return fmt.Errorf("keystore/sqlite: expire: %w", err)
			}
			tx.keys(r.key.Link, r.key.State, -1)
			out = append(out, r.key)
		}
		if err := expireResizes(ctx, tx, now); err != nil {
			return err
		}
		if err := expireRelays(ctx, tx, now); err != nil {
			return err
		}
		// What is left expires at the earliest then (under mu: no insert
		// runs meanwhile; later ones lower the hint).
		var next sql.NullInt64
		if err := tx.QueryRowContext(ctx, "SELECT MIN(e) FROM ("+
			"SELECT MIN(expires) AS e FROM keys WHERE expires != 0 UNION ALL "+
			"SELECT MIN(expires) FROM relay WHERE expires != 0 UNION ALL "+
			"SELECT MIN(expires) FROM resize WHERE expires != 0)").Scan(&next); err != nil {
			return fmt.Errorf("keystore/sqlite: next expiry: %w", err)
		}
		hint := int64(math.MaxInt64)
		if next.Valid {
			hint = next.Int64
		}
		s.expiryHint.Store(hint)
		return nil
	})
	if err != nil {
		s.expiryHint.Store(0)
	}
	return out, err
}

// expiresBy lowers the expiry hint to e (an encTime; 0: never expires).
// Called in the transaction that stores a record expiring at e, before it
// commits: a transaction that then fails leaves the hint merely early.
func (s *Store) expiresBy(e int64) {
	if e == 0 {
		return
	}
	for {
		h := s.expiryHint.Load()
		if h == 0 || h <= e || s.expiryHint.CompareAndSwap(h, e) {
			return // unknown (ExpireKeys looks anyway), early enough, or lowered
		}
	}
}

// SetKeysReady implements keystore.Store. Absent keys are ignored.
func (s *Store) SetKeysReady(ctx context.Context, ids []qkd.KeyID, outboxID string) error {
	return s.tx(ctx, func(tx *txn) error {
		if len(ids) > 0 {
			if _, err := eachRow(ctx, tx, func(rows *sql.Rows) error {
				var link string
				if err := rows.Scan(&link); err != nil {
					return err
				}
				tx.keys(qkd.LinkID(link), keystore.KeyPending, -1)
				tx.keys(qkd.LinkID(link), keystore.KeyReady, 1)
				return nil
			}, "UPDATE keys SET state = ? WHERE "+inIDs+" AND state = ? RETURNING link",
				keystore.KeyReady, idsJSON(ids), keystore.KeyPending); err != nil {
				return fmt.Errorf("keystore/sqlite: set ready: %w", err)
			}
		}
		return deleteOutbox(ctx, tx, outboxID)
	})
}

func deleteOutbox(ctx context.Context, tx *txn, id string) error {
	if id == "" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM outbox WHERE id = ?", id); err != nil {
		return fmt.Errorf("keystore/sqlite: outbox: %w", err)
	}
	return nil
}

// PendingOutbox implements keystore.Store.
func (s *Store) PendingOutbox(ctx context.Context, l qkd.LinkID) ([]keystore.Outbox, error) {
	var out []keystore.Outbox
	err := s.tx(ctx, func(tx *txn) error {
		out = nil
		rows, err := tx.QueryContext(ctx, "SELECT id, link, payload, created FROM outbox WHERE link = ? ORDER BY created, seq", string(l))
		if err != nil {
			return fmt.Errorf("keystore/sqlite: outbox: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var o keystore.Outbox
			var created int64
			if err := rows.Scan(&o.ID, &o.Link, &o.Payload, &created); err != nil {
				return fmt.Errorf("keystore/sqlite: outbox: %w", err)
			}
			if len(o.Payload) == 0 {
				o.Payload = nil
			}
			o.Created = decTime(created)
			out = append(out, o)
		}
		return rows.Err()
	})
	return out, err
}

// AbortAllocation implements keystore.Store: it deletes the outbox entry and
// those of ids that are still Pending.
func (s *Store) AbortAllocation(ctx context.Context, outboxID string, ids []qkd.KeyID) error {
	return s.tx(ctx, func(tx *txn) error {
		for _, id := range ids {
			if _, err := eachRow(ctx, tx, scanGone(tx), "DELETE FROM keys WHERE id = ? AND state = ? RETURNING link, state",
				id[:], keystore.KeyPending); err != nil {
				return fmt.Errorf("keystore/sqlite: abort: %w", err)
			}
		}
		return deleteOutbox(ctx, tx, outboxID)
	})
}
