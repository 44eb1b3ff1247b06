package sqlite

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
)

// The fast path of TakeForPair.
//
// A pair cache holds, for one (master, slaves, size, caller), the first
// Ready keys of the pair that only the caller is still waiting for, in seq
// order, read and opened in one query: a prefix of what the database would
// deliver, as of the fill (a key made Ready later with a lower seq waits for
// the next fill). A TakeForPair without a link filter that finds enough
// unexpired keys in its cache pops them, journals the delivery (journal.go)
// and returns without touching the database. Keys popped but not yet
// applied to the database are in pend. When a cache falls below half its
// fill size, the flusher goroutine refills it in the background (under mu,
// merging with what the cache still holds), so requests do not queue for
// mu behind long transactions; a cache that runs dry anyway is filled with
// twice as many keys next time, up to maxFill.
//
// Invariants (cmu):
//   - a key is in at most one cache, and a cached key is still in the
//     database, Ready, with Pending exactly [caller];
//   - every pend delivery is journaled, and its key is in no cache;
//   - any operation other than a fast-path take first applies pend to the
//     database in its own transaction (so it sees the exact state) and
//     evicts the cached keys it may touch (so a key is never both cached and
//     taken another way). Evicted keys are wiped; they stay in the database.
//
// pend is applied by the next operation, by the flusher ~flushDelay after
// the first unapplied delivery, or at once when flushBatch accumulate.

const (
	minFill    = 256  // keys a cache is filled with, at first
	maxFill    = 8192 // at most (the fill size doubles each time a cache runs dry)
	flushDelay = 100 * time.Millisecond
	flushBatch = 1024
)

// pairID names a pair cache.
type pairID struct {
	master qkd.SAEID
	slaves string // slavesKey
	size   int
	caller qkd.SAEID
}

// slavesKey encodes a slave list unambiguously (length-prefixed).
func slavesKey(sl []qkd.SAEID) string {
	if len(sl) == 1 && len(sl[0]) < 0x80 {
		return string(rune(len(sl[0]))) + string(sl[0])
	}
	var b []byte
	for _, s := range sl {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return string(b)
}

func pairOf(r *keystore.TakeRequest) pairID {
	return pairID{master: r.Master, slaves: slavesKey(r.Slaves), size: r.SizeBits, caller: r.Caller}
}

type pairCache struct {
	id  pairID
	req keystore.TakeRequest // Master, Slaves, SizeBits, Caller of the pair
	// keys[head:] are live, with Data.
	keys []keystore.Key
	head int
	// now: the latest request time the cache served or was filled at; keys
	// expired then were dropped.
	now time.Time
	// refilling: queued for a background refill.
	refilling bool
}

func (c *pairCache) live() int { return len(c.keys) - c.head }

// errStopped is stored in fastErr while the fast path is shut (never
// returned: the slow path reports ErrClosed or ErrZeroized).
var errStopped = errors.New("keystore/sqlite: fast path stopped")

// takeCached serves r from its pair cache. ok is false if it cannot (no
// cache, too few keys, a link filter, journal trouble): the caller takes the
// slow path, which refills the cache.
func (s *Store) takeCached(pid pairID, r *keystore.TakeRequest) (keys []keystore.Key, ok bool) {
	if r.Link != "" {
		return nil, false
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.fastErr != nil {
		return nil, false
	}
	c := s.caches[pid]
	if c == nil {
		return nil, false
	}
	return s.popLocked(c, r)
}

// popLocked pops the first r.Number keys of c unexpired at the later of
// r.Now and c.now (dropping expired ones met on the way) and journals their
// delivery. Under cmu.
//
// A request whose Now is earlier than c.now (concurrent requests read the
// clock before they queue for cmu) is served as if it came at c.now: a key
// unexpired then is unexpired at r.Now too; if that leaves too few keys the
// slow path answers at r.Now exactly.
func (s *Store) popLocked(c *pairCache, r *keystore.TakeRequest) ([]keystore.Key, bool) {
	now := r.Now
	if now.Before(c.now) {
		now = c.now
	}
	picked := make([]qkd.KeyID, 0, r.Number)
	i := c.head
	for ; i < len(c.keys) && len(picked) < r.Number; i++ {
		if !rules.Expired(&c.keys[i], now) {
			picked = append(picked, c.keys[i].ID)
		}
	}
	if len(picked) < r.Number {
		return nil, false
	}
	if err := s.jrn.append(r.Caller, picked); err != nil {
		s.fastErr = err
		s.log.Error("delivery journal failed; keys are delivered through the database from now on", "err", err)
		s.dropAllLocked()
		return nil, false
	}
	s.durable.touch()
	c.now = now
	out := make([]keystore.Key, 0, r.Number)
	was := len(s.pend)
	for j := c.head; j < i; j++ {
		k := c.keys[j]
		c.keys[j] = keystore.Key{}
		delete(s.cachedIDs, k.ID)
		if rules.Expired(&k, now) {
			k.Data.Wipe()
			continue
		}
		rules.Served(&k, r.Caller)
		out = append(out, k)
		s.pend = append(s.pend, delivery{id: k.ID, caller: r.Caller})
	}
	c.head = i
	if c.head == len(c.keys) {
		delete(s.caches, c.id)
		if c.refilling {
			// It ran dry before its refill came: fill more next time.
			s.fill[c.id] = min(2*s.fillSize(c.id), maxFill)
		}
	} else if !c.refilling && c.live() < s.fillSize(c.id)/2 {
		c.refilling = true
		s.refillQ[c.id] = c
		notify(s.refillKick)
	}
	if was == 0 {
		notify(s.armed)
	}
	if was < flushBatch && len(s.pend) >= flushBatch {
		notify(s.full)
	}
	return out, true
}

// fillSize returns how many keys the cache of pid is filled with. Under cmu.
func (s *Store) fillSize(pid pairID) int {
	if n := s.fill[pid]; n > 0 {
		return n
	}
	return minFill
}

// installLocked makes keys (opened, seq order, Pending exactly [caller])
// the cache of the pair of r. Under mu (the keys were read in the
// transaction that just ended) and cmu; the pair has no cache.
func (s *Store) installLocked(pid pairID, r *keystore.TakeRequest, keys []keystore.Key) *pairCache {
	req := keystore.TakeRequest{Master: r.Master, Slaves: slices.Clone(r.Slaves), SizeBits: r.SizeBits, Caller: r.Caller}
	c := &pairCache{id: pid, req: req, keys: keys, now: r.Now}
	s.caches[pid] = c
	for i := range keys {
		s.cachedIDs[keys[i].ID] = c
	}
	return c
}

// refillQueued refills the caches popLocked queued. Called by flushLoop.
func (s *Store) refillQueued(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.cmu.Lock()
	q := s.refillQ
	s.refillQ = make(map[pairID]*pairCache)
	s.cmu.Unlock()
	for _, c := range q {
		s.refill(ctx, c)
	}
	return nil
}

// refill re-reads the first keys of c's pair (applying the journaled
// deliveries first) and makes them c's keys, before c runs dry: requests
// keep being served from c meanwhile. Keys c still holds keep their bytes;
// keys popped meanwhile are left out; new keys are opened outside cmu.
// Under mu.
func (s *Store) refill(ctx context.Context, c *pairCache) {
	s.cmu.Lock()
	if cur := s.caches[c.id]; s.fastErr != nil || (cur != nil && cur != c) {
		c.refilling = false
		s.cmu.Unlock()
		return
	}
	known := make(map[qkd.KeyID]bool, c.live())
	for _, k := range c.keys[c.head:] {
		known[k.ID] = true
	}
	limit := s.fillSize(c.id) + len(known)
	req := c.req
	req.Now = c.now
	s.cmu.Unlock()

	var rows []keyRow
	err := s.run(ctx, nil, func(tx *txn) error {
		var err error
		rows, err = pairKeysSealed(ctx, tx, &req, limit)
		only := 0
		for only < len(rows) && len(rows[only].key.Pending) == 1 {
			only++
		}
		rows = rows[:only]
		return err
	})
	for i := 0; err == nil && i < len(rows); i++ {
		if known[rows[i].key.ID] {
			continue
		}
		data, oerr := s.openKey(ctx, nil, &rows[i])
		if oerr != nil { // the cache ends before it; a take that reaches it fails
			rows = rows[:i]
			break
		}
		rows[i].key.Data = data
	}

	s.cmu.Lock()
	defer s.cmu.Unlock()
	c.refilling = false
	wipeNew := func() {
		for i := range rows {
			if !known[rows[i].key.ID] {
				rows[i].key.Data.Wipe()
			}
		}
	}
	if cur := s.caches[c.id]; err != nil || s.fastErr != nil || (cur != nil && cur != c) {
		if err != nil {
			s.log.Warn("refilling a key cache failed", "err", err)
		}
		wipeNew()
		return
	}
	at := make(map[qkd.KeyID]int, c.live())
	for j := c.head; j < len(c.keys); j++ {
		at[c.keys[j].ID] = j
	}
	keys := make([]keystore.Key, 0, len(rows))
	for i := range rows {
		id := rows[i].key.ID
		if !known[id] {
			keys = append(keys, rows[i].key)
			continue
		}
		if j, ok := at[id]; ok { // still cached: keep it (and its bytes)
			keys = append(keys, c.keys[j])
			c.keys[j] = keystore.Key{}
			delete(at, id)
		}
		// else popped meanwhile
	}
	for _, j := range at { // cached but not read again (expired, or pushed out)
		delete(s.cachedIDs, c.keys[j].ID)
		c.keys[j].Data.Wipe()
	}
	c.keys, c.head = keys, 0
	for i := range keys {
		s.cachedIDs[keys[i].ID] = c
	}
	switch {
	case len(keys) == 0:
		delete(s.caches, c.id)
	default:
		s.caches[c.id] = c
	}
}

// dropLocked evicts and wipes the cache c. Under cmu.
func (s *Store) dropLocked(c *pairCache) {
	for j := c.head; j < len(c.keys); j++ {
		delete(s.cachedIDs, c.keys[j].ID)
		c.keys[j].Data.Wipe()
	}
	c.keys, c.head = nil, 0
	delete(s.caches, c.id)
}

func (s *Store) dropAllLocked() {
	for _, c := range s.caches {
		s.dropLocked(c)
	}
}

// Evictions, for run: each returns a function to call under cmu.

func evictPair(s *Store, pid pairID) func() {
	return func() {
		if c := s.caches[pid]; c != nil {
			s.dropLocked(c)
		}
	}
}

func evictIDs(s *Store, ids []qkd.KeyID) func() {
	return func() {
		for _, id := range ids {
			if c := s.cachedIDs[id]; c != nil {
				s.dropLocked(c)
			}
		}
	}
}

func evictAll(s *Store) func() { return s.dropAllLocked }

// evictExpired drops the cached keys expired at now, keeping the rest.
func evictExpired(s *Store, now time.Time) func() {
	return func() {
		for _, c := range s.caches {
			live := c.keys[c.head:c.head]
			for j := c.head; j < len(c.keys); j++ {
				k := c.keys[j]
				if rules.Expired(&k, now) {
					delete(s.cachedIDs, k.ID)
					k.Data.Wipe()
					continue
				}
				live = append(live, k)
			}
			clear(c.keys[c.head+len(live):])
			c.keys = c.keys[:c.head+len(live)]
			if c.head == len(c.keys) {
				delete(s.caches, c.id)
			}
		}
	}
}

// detach runs evict under cmu and returns the deliveries not yet applied to
// the database (a view that fast-path appends do not touch). The caller
// holds mu.
func (s *Store) detach(evict func()) []delivery {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if evict != nil {
		evict()
	}
	return s.pend[:len(s.pend):len(s.pend)]
}

// forgetApplied forgets the first n deliveries once a committed transaction has
// applied them, and lets the journal shrink. The caller holds mu.
func (s *Store) forgetApplied(n int) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	m := copy(s.pend, s.pend[n:])
	clear(s.pend[m:])
	s.pend = s.pend[:m]
	if s.jrn != nil && s.journalOK() {
		if err := s.jrn.applied(s.pend); err != nil {
			s.log.Warn("delivery journal not emptied (replay skips applied deliveries)", "err", err)
		}
		s.durable.touch()
	}
	if len(s.pend) > 0 {
		notify(s.armed)
	}
	if s.onApplied != nil {
		s.onApplied(n)
	}
}

// journalOK reports whether the journal file is sound (it did not fail).
// Under cmu.
func (s *Store) journalOK() bool { return s.fastErr == nil || s.fastErr == errStopped }

// notify sends on a 1-buffered channel without blocking.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// flushLoop applies pend flushDelay after the first unapplied delivery, or
// at once when flushBatch accumulate, until stop is closed.
func (s *Store) flushLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-stop:
			t.Stop()
			return
		case <-s.armed:
			t.Reset(flushDelay)
			continue
		case <-s.refillKick:
			if err := s.refillQueued(context.Background()); err != nil &&
				!errors.Is(err, ErrClosed) && !errors.Is(err, keystore.ErrZeroized) {
				s.log.Error("refilling key caches failed", "err", err)
			}
			continue
		case <-s.full:
		case <-t.C:
		}
		t.Stop()
		err := s.flush(context.Background())
		switch {
		case err == nil, errors.Is(err, ErrClosed), errors.Is(err, keystore.ErrZeroized):
		default:
			s.log.Error("applying delivered keys to the database failed; retrying", "err", err)
			notify(s.armed)
		}
	}
}

// flush applies pend now.
func (s *Store) flush(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	return s.run(ctx, nil, nil)
}

// stopFlusher stops flushLoop and waits for it (not under mu: it may be
// waiting for mu).
func (s *Store) stopFlusher() {
	s.stopOnce.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.loopDone
		}
	})
}
