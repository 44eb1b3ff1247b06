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

// The fast path of TakeForPair: keys leased in bulk.
//
// A pair cache holds, for one (master, slaves, size, caller), the first
// Ready keys of the pair that only the caller is still waiting for, in seq
// order, read and opened in one query: a prefix of what the database would
// deliver, as of the fill (a key made Ready later with a lower seq waits for
// the next fill). Before keys enter a cache they are leased to its caller:
// one journal frame names them all (journal.go) and is made durable (fsync,
// through the syncer) before any of them can be popped. A TakeForPair
// without a link filter that finds enough unexpired keys in its cache pops
// them and returns without any I/O: the lease is the durable mark of their
// delivery. Popped keys wait in pend until a transaction applies their
// delivery to the database. When a cache falls below half its fill size,
// the flusher goroutine refills it in the background (under mu, leasing the
// new keys, merging with what the cache still holds), so requests do not
// queue for mu behind long transactions; a cache that runs dry anyway is
// filled with twice as many keys next time, up to maxFill.
//
// Invariants:
//   - a key is in at most one cache, and a cached key is still in the
//     database, Ready, with Pending exactly [caller], and leased to the
//     caller by a durable journal frame (cmu);
//   - a key leaves a cache either by a pop, which puts its delivery in pend,
//     or by eviction, which queues an unlease of it (unleaseQ, cmu); an
//     evicted key is wiped and stays in the database;
//   - every pend delivery's key is leased in the durable journal and is in
//     no cache (cmu);
//   - journal frames are written only under mu, and the holder of mu writes
//     the queued unleases before any other frame and before its
//     transaction (run, lease), so a key's unlease always precedes its next
//     lease in the file;
//   - any operation other than a fast-path take first applies pend to the
//     database in its own transaction (so it sees the exact state) and
//     evicts the cached keys it may touch (so a key is never both cached and
//     taken another way);
//   - a lease leaves the journal only when tidyJournal rewrites it, keeping
//     the leases of every cached and every pend key, after a barrier made
//     the deliveries applied so far durable; Close removes the journal only
//     once every delivery is applied and durable.
//
// pend is applied by the next operation, by the flusher ~flushDelay after
// the first unapplied delivery, or at once when flushBatch accumulate. A
// crash, or power loss, burns the keys that were leased but not popped
// (replay applies them as delivered) and never serves a key twice.

const (
	minFill = 1024 // keys a cache is filled with, at first
	maxFill = 8192 // at most (the fill size doubles each time a cache runs dry)
	// fillPerRequest: a cache holds at least this many of the largest
	// request its pair made (up to maxFill), so that requests for many
	// keys at once are served from memory too, not every other one
	// through the database.
	fillPerRequest = 64
	flushDelay     = 100 * time.Millisecond
	flushBatch     = 4096
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
// cache, too few keys, a link filter, the fast path shut): the caller takes
// the slow path, which refills the cache. The keys' delivery is durable
// (their lease).
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
// r.Now and c.now (unleasing expired ones met on the way). No I/O: the
// keys are leased. Under cmu.
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
	n, i := 0, c.head
	for ; i < len(c.keys) && n < r.Number; i++ {
		if !rules.Expired(&c.keys[i], now) {
			n++
		}
	}
	if n < r.Number {
		return nil, false
	}
	c.now = now
	s.fitFill(c.id, r.Number) // refilled to more keys, below
	out := make([]keystore.Key, 0, r.Number)
	was := len(s.pend)
	for j := c.head; j < i; j++ {
		k := c.keys[j]
		c.keys[j] = keystore.Key{}
		delete(s.cachedIDs, k.ID)
		if rules.Expired(&k, now) {
			s.unleaseLocked(c, k.ID)
			k.Data.Wipe()
			continue
		}
		rules.Served(&k, r.Caller)
		out = append(out, k)
		s.pend = append(s.pend, delivery{id: k.ID, caller: r.Caller, link: k.Link})
		s.pendLinks[k.Link]++
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

// unleaseLocked queues the unlease of key id, which left cache c without
// being popped. Nothing is queued once the journal failed (its leases are
// burnt at the next Open unless Close removes it). Under cmu.
func (s *Store) unleaseLocked(c *pairCache, id qkd.KeyID) {
	if s.journalOK() {
		s.unleaseQ = append(s.unleaseQ, delivery{id: id, caller: c.id.caller})
	}
}

// fitFill raises the fill size of pid's cache to perRequest requests of
// number keys (up to maxFill): a pair asking for many keys at once is
// served from memory too. Under cmu.
func (s *Store) fitFill(pid pairID, number int) {
	if want := min(s.perRequest*number, maxFill); want > s.fillSize(pid) {
		s.fill[pid] = want
	}
}

// fillSize returns how many keys the cache of pid is filled with. Under cmu.
func (s *Store) fillSize(pid pairID) int {
	if n := s.fill[pid]; n > 0 {
		return n
	}
	return minFill
}

// installLocked makes keys (opened, seq order, Pending exactly [caller],
// leased durably) the cache of the pair of r. Under mu (the keys were read
// in the transaction that just ended) and cmu; the pair has no cache.
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
// keep being served from c meanwhile. Keys c still holds keep their bytes
// and their lease; keys popped meanwhile are left out; new keys are opened
// outside cmu and leased (durably) before they join c; keys c held that
// are not read again are unleased. Under mu.
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
	defer s.writeUnleases()

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
	var fresh []qkd.KeyID
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
		fresh = append(fresh, rows[i].key.ID)
	}
	if err == nil && len(fresh) > 0 {
		err = s.lease(ctx, req.Caller, fresh)
	}

	s.cmu.Lock()
	defer s.cmu.Unlock()
	c.refilling = false
	if cur := s.caches[c.id]; err != nil || s.fastErr != nil || (cur != nil && cur != c) {
		if err != nil {
			s.log.Warn("refilling a key cache failed", "err", err)
		}
		for i := range rows {
			if !known[rows[i].key.ID] {
				if err == nil {
					s.unleaseLocked(c, rows[i].key.ID)
				}
				rows[i].key.Data.Wipe()
			}
		}
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
		s.unleaseLocked(c, c.keys[j].ID)
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

// lease writes the lease of ids to caller — after the queued unleases —
// and makes it durable. Under mu. Any error shuts the fast path
// (failJournal): the keys may be leased in the journal, and are burnt if
// it is replayed.
func (s *Store) lease(ctx context.Context, caller qkd.SAEID, ids []qkd.KeyID) error {
	if err := s.writeUnleases(); err != nil {
		return err
	}
	s.cmu.Lock()
	err := s.fastErr
	s.cmu.Unlock()
	if err != nil {
		return err
	}
	if err := s.jrn.append(frameLease, caller, ids); err != nil {
		s.failJournal(err)
		return err
	}
	s.durable.touch()
	if err := s.durable.sync(context.WithoutCancel(ctx)); err != nil {
		s.failJournal(err)
		return err
	}
	return nil
}

// writeUnleases writes the queued unleases, one frame per run of one
// caller, not synced (see journal.go). Under mu. A write error shuts the
// fast path (the unwritten keys stay leased: burnt if the journal is
// replayed) and is returned.
func (s *Store) writeUnleases() error {
	s.cmu.Lock()
	q := s.unleaseQ
	s.unleaseQ = nil
	ok := s.journalOK()
	s.cmu.Unlock()
	if len(q) == 0 || !ok || s.jrn == nil {
		return nil
	}
	ids := make([]qkd.KeyID, 0, len(q))
	for i := 0; i < len(q); {
		k := i
		ids = ids[:0]
		for ; k < len(q) && q[k].caller == q[i].caller; k++ {
			ids = append(ids, q[k].id)
		}
		if err := s.jrn.append(frameUnlease, q[i].caller, ids); err != nil {
			s.failJournal(err)
			return err
		}
		i = k
	}
	s.durable.touch()
	return nil
}

// failJournal shuts the fast path for good after a journal (or sync)
// failure and drops the caches; their keys are still in the database.
// Under mu.
func (s *Store) failJournal(err error) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.fastErr == nil || s.fastErr == errStopped {
		s.log.Error("delivery journal failed; keys are delivered through the database from now on", "err", err)
	}
	if s.fastErr == nil {
		s.fastErr = err
	}
	s.unleaseQ = nil
	s.dropAllLocked()
}

// tidyJournal rewrites the journal with the live leases only (the keys
// cached and those popped but not applied) once it has grown past
// journalTidy (s.tidyAt) and past twice their size. The deliveries applied so far
// must be durable before their leases go: a barrier first. Under mu, after
// run applied pend.
func (s *Store) tidyJournal(ctx context.Context) {
	j := s.jrn
	if j == nil || j.size < s.tidyAt {
		return
	}
	s.cmu.Lock()
	ok := s.fastErr == nil
	live := len(s.pend) + len(s.cachedIDs)
	s.cmu.Unlock()
	if !ok || j.size < 2*int64(live)*int64(idSize) {
		return
	}
	if err := s.durable.sync(context.WithoutCancel(ctx)); err != nil {
		s.log.Warn("delivery journal not tidied", "err", err)
		return
	}
	s.cmu.Lock()
	var b []byte
	for _, c := range s.caches {
		ids := make([]qkd.KeyID, 0, c.live())
		for _, k := range c.keys[c.head:] {
			ids = append(ids, k.ID)
		}
		if len(ids) > 0 {
			b = appendFrame(b, frameLease, c.id.caller, ids)
		}
	}
	for i := 0; i < len(s.pend); {
		k := i
		var ids []qkd.KeyID
		for ; k < len(s.pend) && s.pend[k].caller == s.pend[i].caller; k++ {
			ids = append(ids, s.pend[k].id)
		}
		b = appendFrame(b, frameLease, s.pend[i].caller, ids)
		i = k
	}
	s.cmu.Unlock()
	err := j.rewrite(b)
	s.durable.touch()
	switch {
	case err == nil:
	case errors.Is(err, errJournalReplaced):
		s.failJournal(err)
	default:
		s.log.Warn("delivery journal not tidied", "err", err)
	}
}

// dropLocked evicts the cache c: its keys are unleased and wiped. Under
// cmu.
func (s *Store) dropLocked(c *pairCache) {
	for j := c.head; j < len(c.keys); j++ {
		delete(s.cachedIDs, c.keys[j].ID)
		s.unleaseLocked(c, c.keys[j].ID)
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

// evictExpired drops (unleases) the cached keys expired at now, keeping
// the rest.
func evictExpired(s *Store, now time.Time) func() {
	return func() {
		for _, c := range s.caches {
			live := c.keys[c.head:c.head]
			for j := c.head; j < len(c.keys); j++ {
				k := c.keys[j]
				if rules.Expired(&k, now) {
					delete(s.cachedIDs, k.ID)
					s.unleaseLocked(c, k.ID)
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

// forgetAppliedLocked forgets the first n deliveries once a committed
// transaction has applied them. Their leases stay in the journal until
// tidyJournal. The caller holds mu and cmu.
func (s *Store) forgetAppliedLocked(n int) {
	for _, d := range s.pend[:n] {
		if s.pendLinks[d.link]--; s.pendLinks[d.link] == 0 {
			delete(s.pendLinks, d.link)
		}
	}
	m := copy(s.pend, s.pend[n:])
	clear(s.pend[m:])
	s.pend = s.pend[:m]
	if len(s.pend) > 0 {
		notify(s.armed)
	}
	if s.onApplied != nil {
		s.onApplied(n)
	}
}

// journalOK reports whether the journal file is sound (it did not fail;
// the fast path may be stopped for Close). Under cmu.
func (s *Store) journalOK() bool { return s.fastErr == nil || s.fastErr == errStopped }

// notify sends on a 1-buffered channel without blocking.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// flushLoop applies pend flushDelay after the first unapplied delivery, or
// at once when flushBatch accumulate, and refills the caches popLocked
// queued, until stop is closed.
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

// flush applies pend now (and writes the queued unleases), then tidies
// the journal if it grew large.
func (s *Store) flush(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if err := s.run(ctx, nil, nil); err != nil {
		return err
	}
	s.tidyJournal(ctx)
	return nil
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
