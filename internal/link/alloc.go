package link

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// outboxEntry is what the outbox stores: the body of a message that must
// reach the peer (it holds no key bytes: only IDs and material positions).
type outboxEntry struct {
	Type  kmsproto.Type `cbor:"1,keyasint"`
	Body  []byte        `cbor:"2,keyasint"`
	IDs   []qkd.KeyID   `cbor:"3,keyasint,omitempty"`
	First uint64        `cbor:"4,keyasint,omitempty"` // make_keys_internal: first slot
}

// maxRefusals: how many Retry/Conflict answers an allocation gets before it
// is aborted (material confirmed at one end a moment before the other).
const maxRefusals = 40

func readRand(r io.Reader, b []byte) (int, error) {
	if r == nil {
		r = rand.Reader
	}
	return io.ReadFull(r, b)
}

func (l *Link) newID() string {
	b := make([]byte, 12)
	_, _ = readRand(l.o.Rand, b)
	return hex.EncodeToString(b)
}

// macFloor is the own material key reservations and relay pads leave
// untouched while the link's MAC slots run low, so that the link can
// always refill them: without MAC keys no message goes out, and the link
// could not recover. With slots to spare there is no floor.
func (l *Link) macFloor() int {
	if l.SlotsLeft() >= l.o.SlotLowWater+reserveSlots {
		return 0
	}
	return 2 * min(l.o.SlotRefill, minRefill) * keystore.SlotSize
}

// minRefill is the fewest slots a refill asks for when material is short.
const minRefill = 16

// piecesLeaving takes want bytes of free material of this end's parity,
// leaving at least floor bytes of own material
// unallocated (qkd.ErrInsufficientKey otherwise).
func (l *Link) piecesLeaving(ctx context.Context, want, floor int) ([]keystore.Piece, error) {
	if floor > 0 {
		all, err := l.o.Store.Material(ctx, l.o.ID, l.parity, want+floor)
		if err != nil {
			return nil, err
		}
		have := 0
		for _, p := range all {
			have += p.Len
		}
		if have < want+floor {
			return nil, qkd.ErrInsufficientKey
		}
	}
	ps, err := l.o.Store.Material(ctx, l.o.ID, l.parity, want)
	if err != nil {
		return nil, err
	}
	got := 0
	for i := range ps {
		if got+ps[i].Len >= want {
			ps[i].Len = want - got
			return ps[:i+1], nil
		}
		got += ps[i].Len
	}
	return nil, qkd.ErrInsufficientKey
}

func wirePieces(ps []keystore.Piece) []kmsproto.Piece {
	out := make([]kmsproto.Piece, len(ps))
	for i, p := range ps {
		out[i] = kmsproto.Piece{Index: p.Index, Off: uint32(p.Off), Len: uint32(p.Len)}
	}
	return out
}

// storePieces converts and checks wire pieces: parity, sizes, total.
func storePieces(ps []kmsproto.Piece, parity int, total int) ([]keystore.Piece, bool) {
	out := make([]keystore.Piece, len(ps))
	sum := 0
	for i, p := range ps {
		if int(p.Index%2) != parity || p.Len == 0 || p.Len > 1<<26 || p.Off > 1<<26 {
			return nil, false
		}
		out[i] = keystore.Piece{Index: p.Index, Off: int(p.Off), Len: int(p.Len)}
		sum += int(p.Len)
	}
	return out, sum == total && len(ps) > 0
}

// Reserve allocates n keys of sizeBits for (master, slaves) from this end's
// material and makes the peer hold them too. It returns when both ends hold
// the keys (Ready here) or fails; keys of a failed allocation are never
// delivered. The local recipients of the keys are the SAEs among master and
// slaves attached to this node.
func (l *Link) Reserve(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID, sizeBits, n int, ttl time.Duration) ([]qkd.KeyID, error) {
	if n <= 0 || sizeBits <= 0 || sizeBits%8 != 0 {
		return nil, fmt.Errorf("link: bad reservation %d×%d bits", n, sizeBits)
	}
	ids, err := qkd.NewKeyIDs(l.o.Rand, n)
	if err != nil {
		return nil, err
	}
	if err := l.reserve(ctx, "", master, slaves, sizeBits, ids, ttl); err != nil {
		return nil, err
	}
	return ids, nil
}

// ReserveIDs is Reserve with keys named by the caller: the chunks of the
// ETSI 004 key stream stream (its KSID), whose IDs both ends derive from
// the stream ID and the chunk index. Both ends tag the keys with the
// stream (keystore.Key.Stream, make_keys_external Stream), so that they
// are delivered by ID only, never to ETSI 014 requests of the pair, nor
// split, merged or deleted with the pair. The IDs must never have been
// used on this node: a reservation whose first ID exists is taken as
// applied before and is not sent again. Retries of the message itself
// are idempotent as with Reserve.
func (l *Link) ReserveIDs(ctx context.Context, stream string, master qkd.SAEID, slaves []qkd.SAEID, sizeBits int, ids []qkd.KeyID, ttl time.Duration) error {
	if stream == "" || len(stream) > maxStreamID {
		return fmt.Errorf("link: reservation for key stream %q", stream)
	}
	if len(ids) == 0 || sizeBits <= 0 || sizeBits%8 != 0 || hasDupIDs(ids) {
		return fmt.Errorf("link: bad reservation %d×%d bits", len(ids), sizeBits)
	}
	return l.reserve(ctx, stream, master, slaves, sizeBits, ids, ttl)
}

// maxStreamID bounds the key stream ID of a reservation.
const maxStreamID = 256

// reserve allocates the keys ids (make_keys_external), tagged with stream
// ("" for ordinary keys of the pair), and waits for the peer.
func (l *Link) reserve(ctx context.Context, stream string, master qkd.SAEID, slaves []qkd.SAEID, sizeBits int, ids []qkd.KeyID, ttl time.Duration) error {
	n := len(ids)
	now := l.o.Now()
	// Keys are Pending at the reserving end until the peer has them, so
	// that nothing is delivered here that the other end cannot match. One
	// exception: keys of a pair whose master is on the peer's side (both
	// ends stock a shared pair). Here they are only ever delivered by ID,
	// to a slave, and only the master's node can have told anyone those
	// random IDs — after it stored the keys. So they are Ready at once:
	// a slave that asks right after its master got them never finds them
	// pending for want of the acknowledgement still on its way. If the
	// peer refuses them, finish deletes them like any refused keys. Key
	// stream chunks have IDs both ends derive, and stay Pending.
	state := keystore.KeyPending
	if stream == "" && !l.o.LocalSAE(master) {
		state = keystore.KeyReady
	}
	keys := make([]keystore.Key, n)
	for i, id := range ids {
		keys[i] = keystore.Key{ID: id, Link: l.o.ID, State: state, Master: master,
			Slaves: slaves, Pending: l.localOf(master, slaves), SizeBits: sizeBits, Created: now, Expires: now.Add(ttl),
			Stream: stream}
	}
	id := l.newID()
	return l.queueAndWait(ctx, id, 2*l.o.CallTimeout, "make_keys_external", func() error {
		return l.allocate(ctx, n*sizeBits/8, l.macFloor(), func(ps []keystore.Piece) (keystore.Allocation, outboxEntry, error) {
			req := kmsproto.MakeKeysExternalReq{AllocID: id, Master: master, Slaves: slaves, SizeBits: uint32(sizeBits),
				IDs: ids, Pieces: wirePieces(ps), Created: now.UnixMilli(), Expires: now.Add(ttl).UnixMilli(), Stream: stream}
			body, err := kmsproto.Marshal(req)
			return keystore.Allocation{Link: l.o.ID, Pieces: ps, Keys: keys},
				outboxEntry{Type: kmsproto.MakeKeysExternal, Body: body, IDs: ids}, err
		}, id)
	})
}

// queueAndWait runs queue (which stores an outbox entry with ID id), lets
// the outbox send it and waits at most wait for the peer's answer. On a
// timeout the outbox goes on by itself: it finishes the entry (keys become
// Ready and join their pool) or aborts it.
//
// Admission: every queued entry needs exactly one MAC slot (a failed send
// is retried as the identical message, exchange.go), and reserveSlots
// must stay for the refill that brings more. An entry is queued only when
// the slots left cover every queued entry plus that reserve; messages
// from outside the outbox leave the queued entries' slots alone
// (takeSendSlot). So the entries queued ahead of a refill can always be
// sent, and the refill behind them too. Without room the refill is
// started and the caller waits for it (within wait), then hears "not
// now", as for key material.
func (l *Link) queueAndWait(ctx context.Context, id string, wait time.Duration, what string, queue func() error) error {
	done := make(chan error, 1)
	l.mu.Lock()
	l.waiters[id] = done
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.waiters, id)
		l.mu.Unlock()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		changed := l.slotsChanged()
		if int64(l.SlotsLeft())-l.queued.Load() > reserveSlots {
			break
		}
		poke(l.wakeSlots)
		select {
		case <-changed:
		case <-t.C:
			return fmt.Errorf("%w: %w: MAC slots are being refilled", qkd.ErrInsufficientKey, ErrNoSlots)
		case <-ctx.Done():
			return fmt.Errorf("%w: %w: MAC slots are being refilled", qkd.ErrInsufficientKey, ErrNoSlots)
		}
	}
	if err := queue(); err != nil {
		return err
	}
	l.queued.Add(1)
	poke(l.wakeSlots) // the refill may be due, counting this entry
	poke(l.wakeOutbox)
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w: no answer to %s", qkd.ErrPeerUnavailable, what)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", qkd.ErrPeerUnavailable, ctx.Err())
	}
}

// slotsChanged returns a channel closed when the slots left or the queued
// entries change (a refill acknowledged, an entry finished).
func (l *Link) slotsChanged() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.slotsCh == nil {
		l.slotsCh = make(chan struct{})
	}
	return l.slotsCh
}

// noteSlotsChanged wakes the callers waiting in slotsChanged.
func (l *Link) noteSlotsChanged() {
	l.mu.Lock()
	if l.slotsCh != nil {
		close(l.slotsCh)
		l.slotsCh = nil
	}
	l.mu.Unlock()
}

func (l *Link) localOf(master qkd.SAEID, slaves []qkd.SAEID) []qkd.SAEID {
	var out []qkd.SAEID
	for _, s := range append([]qkd.SAEID{master}, slaves...) {
		if l.o.LocalSAE(s) {
			out = append(out, s)
		}
	}
	return out
}

// allocate takes want bytes of own material and applies build's allocation
// together with its outbox entry, under allocMu (store only).
func (l *Link) allocate(ctx context.Context, want, floor int, build func([]keystore.Piece) (keystore.Allocation, outboxEntry, error), id string) error {
	l.allocMu.Lock()
	defer l.allocMu.Unlock()
	ps, err := l.piecesLeaving(ctx, want, floor)
	if err != nil {
		return err
	}
	a, entry, err := build(ps)
	if err != nil {
		return err
	}
	payload, err := kmsproto.Marshal(entry)
	if err != nil {
		return err
	}
	a.Outbox = &keystore.Outbox{ID: id, Link: l.o.ID, Payload: payload, Created: l.o.Now()}
	return l.o.Store.Allocate(ctx, a)
}

// pendingInternal returns the first slot of the oldest unacknowledged
// make_keys_internal in the outbox, or -1.
func (l *Link) pendingInternal(ctx context.Context) (int64, error) {
	box, err := l.o.Store.PendingOutbox(ctx, l.o.ID)
	if err != nil {
		return -1, err
	}
	for _, o := range box {
		var e outboxEntry
		if kmsproto.Unmarshal(o.Payload, &e) == nil && e.Type == kmsproto.MakeKeysInternal {
			return int64(e.First), nil
		}
	}
	return -1, nil
}

// keepSlots keeps this end's MAC slots above the low-water mark: it
// queues a refill (make_keys_internal) when they fall below it and none
// is pending. Run by the service loop when woken: a send took a slot
// below the mark, a batch confirmed material, an entry waits for slots.
func (l *Link) keepSlots(ctx context.Context) {
	if int64(l.SlotsLeft())-l.queued.Load() >= int64(l.o.SlotLowWater+reserveSlots) || l.refillPending(ctx) {
		return
	}
	if err := l.refillSlots(ctx); err != nil {
		l.log.Debug("refill MAC slots", "err", err)
	}
}

func (l *Link) refillPending(ctx context.Context) bool {
	p, err := l.pendingInternal(ctx)
	return err != nil || p >= 0
}

// refillSlots turns own material into SlotRefill new MAC slots.
func (l *Link) refillSlots(ctx context.Context) error {
	_, next, _, err := l.o.Store.SlotBounds(ctx, l.o.ID, l.o.Self)
	if err != nil {
		return err
	}
	// A full refill when material allows; smaller ones when it is short
	// (the floor that reservations leave keeps at least two small ones).
	count := l.o.SlotRefill
	id := l.newID()
	for {
		err = l.allocate(ctx, count*keystore.SlotSize, 0, func(ps []keystore.Piece) (keystore.Allocation, outboxEntry, error) {
			req := kmsproto.MakeKeysInternalReq{Sender: l.o.Self, First: next, Count: uint32(count), Pieces: wirePieces(ps)}
			body, err := kmsproto.Marshal(req)
			return keystore.Allocation{Link: l.o.ID, Pieces: ps,
					Slots: &keystore.SlotRange{Sender: l.o.Self, First: next, Count: count}},
				outboxEntry{Type: kmsproto.MakeKeysInternal, Body: body, First: next}, err
		}, id)
		if !errors.Is(err, qkd.ErrInsufficientKey) || count <= minRefill {
			break
		}
		count = max(count/4, minRefill)
	}
	if err != nil {
		return err
	}
	l.o.Observer.InternalBytes(l.o.ID, count*keystore.SlotSize)
	poke(l.wakeOutbox)
	return nil
}

// serviceLoop is the link's one long-lived goroutine besides the leader's
// confirm loop (confirm.go). It is woken by events and polls nothing on
// an idle link:
//   - MAC slots: keepSlots, whenever it wakes;
//   - the outbox: it sends entries in order until the peer has them,
//     woken when one is queued (or the peer went inactive), once a second
//     while entries wait, and after a backoff (50 ms doubling to 2 s)
//     when a send failed;
//   - the peer's status: get_status when nothing verified came from the
//     peer for a StatusInterval (statusDue).
func (l *Link) serviceLoop(ctx context.Context) {
	send := time.NewTimer(time.Second) // entries a restart left are sent after a second
	defer send.Stop()
	status := time.NewTicker(l.o.StatusInterval)
	defer status.Stop()
	ob := outboxState{backoff: l.o.RetryDelay, refusals: map[string]int{}}
	for {
		sendNow, statusNow := false, false
		select {
		case <-ctx.Done():
			return
		case <-l.wakeSlots:
		case <-l.wakeOutbox:
			sendNow = !ob.retrying // a failed send waits for its backoff
		case <-send.C:
			sendNow, ob.retrying = true, false
		case <-status.C:
			statusNow = true
		}
		l.keepSlots(ctx)
		if sendNow {
			l.sendAll(ctx, send, &ob)
		}
		if statusNow && l.statusDue() {
			if err := l.pollStatus(ctx); err != nil {
				l.log.Debug("get_status", "err", err)
			}
		}
	}
}

// outboxState is the service loop's outbox bookkeeping.
type outboxState struct {
	backoff  time.Duration  // the next failed send's wait
	retrying bool           // a failed send waits for the send timer
	refusals map[string]int // retry/conflict answers by entry
}

// sendAll sends outbox entries until none can go now, keeping the MAC
// slots up between them; it sets the send timer for the entries that
// wait (a second) or for the retry of a failed send (its backoff).
func (l *Link) sendAll(ctx context.Context, send *time.Timer, ob *outboxState) {
	for {
		more, left, err := l.sendOutbox(ctx, ob.refusals)
		if err != nil {
			l.log.Debug("outbox", "err", err)
			send.Reset(ob.backoff)
			ob.backoff = min(2*ob.backoff, 2*time.Second)
			ob.retrying = true
			return
		}
		ob.backoff = l.o.RetryDelay
		if !more {
			if left {
				send.Reset(time.Second)
			} else {
				send.Stop()
			}
			return
		}
		l.keepSlots(ctx)
	}
}

// sendOutbox sends the oldest entry; more reports that it should be called
// again (an entry was finished: others may wait, and the count of queued
// entries is renewed by the next call).
// Entries of type new_key_batch are the confirm loop's (confirm.go) and
// are skipped. A failed send leaves the entry's sealed message retained
// (exchange.go): the next try sends the identical bytes under the same
// number, so an entry spends one MAC slot however long the peer cannot be
// reached. Only a verified refusal (Retry, Conflict: the exchange was
// used) or a SeqGone answer make it go again under a new number.
//
// left reports whether entries of the outbox loop's may remain.
func (l *Link) sendOutbox(ctx context.Context, refusals map[string]int) (more, left bool, err error) {
	box, err := l.o.Store.PendingOutbox(ctx, l.o.ID)
	if err != nil {
		return false, true, err
	}
	head, types := -1, make([]kmsproto.Type, len(box))
	for i, o := range box {
		types[i] = entryType(o.Payload)
		if head < 0 && types[i] != kmsproto.NewKeyBatch {
			head = i
		}
	}
	if head < 0 {
		if l.queued.Swap(0) != 0 {
			l.noteSlotsChanged()
		}
		return false, false, nil
	}
	more, err = l.sendHead(ctx, box, types, head, refusals)
	return more, true, err
}

// sendHead sends the outbox entry box[head] (sendOutbox).
func (l *Link) sendHead(ctx context.Context, box []keystore.Outbox, types []kmsproto.Type, head int, refusals map[string]int) (more bool, err error) {
	o := box[head]
	var e outboxEntry
	if err := kmsproto.Unmarshal(o.Payload, &e); err != nil {
		return true, l.finish(ctx, o.ID, nil, 0, fmt.Errorf("link: corrupt outbox entry: %w", err))
	}
	ctx = context.WithValue(ctx, fromOutbox{}, true)
	if l.countQueued(types, head, l.retained.has(keyOf(e.Type, e.Body))) && e.Type != kmsproto.MakeKeysInternal {
		ctx = context.WithValue(ctx, aheadOfRefill{}, true)
	}
	if l.PeerInactive() {
		// The peer destroyed its keys: nothing it could acknowledge is left.
		return true, l.finish(ctx, o.ID, &e, kmsproto.Inactive, fmt.Errorf("%w: peer is inactive", qkd.ErrNoRoute))
	}
	err = l.callRaw(ctx, e.Type, e.Body)
	switch code := codeOf(err); {
	case err == nil:
		return true, l.finish(ctx, o.ID, &e, 0, nil)
	case code == kmsproto.Retry || code == kmsproto.Conflict:
		refusals[o.ID]++
		if refusals[o.ID] < maxRefusals {
			return true, err
		}
		delete(refusals, o.ID)
		l.log.Error("peer refused an allocation for good: aborted", "type", string(e.Type), "err", err)
		return true, l.finish(ctx, o.ID, &e, code, err)
	case code != kmsproto.OK:
		return true, l.finish(ctx, o.ID, &e, code, err)
	default:
		return true, err // transport or MAC trouble: the identical message goes again later
	}
}

// entryType decodes only the type of an outbox entry ("" if corrupt).
func entryType(payload []byte) kmsproto.Type {
	var e struct {
		Type kmsproto.Type `cbor:"1,keyasint"`
	}
	if kmsproto.Unmarshal(payload, &e) != nil {
		return ""
	}
	return e.Type
}

// countQueued sets l.queued to the outbox entries that still need a MAC
// slot: neither refills nor batches (which have their own reserve), nor
// the head entry if its message is sealed already (headSealed). It
// reports whether a refill waits behind the head.
func (l *Link) countQueued(types []kmsproto.Type, head int, headSealed bool) (refillBehind bool) {
	var n int64
	for i, t := range types {
		switch {
		case t == kmsproto.NewKeyBatch:
		case t == kmsproto.MakeKeysInternal:
			refillBehind = refillBehind || i > head
		case i == head && headSealed:
		default:
			n++
		}
	}
	if l.queued.Swap(n) != n {
		l.noteSlotsChanged()
	}
	return refillBehind
}

// finish completes (res == nil) or aborts an outbox entry and wakes its waiter.
func (l *Link) finish(ctx context.Context, id string, e *outboxEntry, _ kmsproto.Code, res error) error {
	var err error
	switch {
	case res == nil && e != nil:
		err = l.o.Store.SetKeysReady(ctx, e.IDs, id)
		if err == nil && e.Type == kmsproto.MakeKeysInternal {
			l.slotsAcked(ctx)
		}
	default:
		var ids []qkd.KeyID
		if e != nil {
			ids = e.IDs
		}
		if e != nil && (e.Type == kmsproto.MakeKeysExternal || e.Type == kmsproto.ForwardKeys) && len(ids) > 0 {
			// Keys the peer (or the route) refused go, Pending or Ready
			// (a pair whose master is on the peer's side, reserve; keys
			// relayed back, relay.Engine.RelayBack); before the entry,
			// so that a crash in between sends the entry again.
			_, err = l.o.Store.DeleteKeys(ctx, ids)
		}
		if err == nil {
			err = l.o.Store.AbortAllocation(ctx, id, ids)
		}
		if res == nil {
			res = errors.New("link: allocation aborted")
		}
	}
	l.mu.Lock()
	w := l.waiters[id]
	l.mu.Unlock()
	if w != nil {
		if err != nil && res == nil {
			res = err
		}
		select {
		case w <- res:
		default:
		}
	}
	return err
}

// slotsAcked makes every own slot up to the store's next usable.
func (l *Link) slotsAcked(ctx context.Context) {
	_, next, _, err := l.o.Store.SlotBounds(ctx, l.o.ID, l.o.Self)
	if err != nil {
		return
	}
	if p, err := l.pendingInternal(ctx); err == nil && p >= 0 && uint64(p) < next {
		next = uint64(p)
	}
	l.mu.Lock()
	if next > l.usableEnd {
		l.usableEnd = next
	}
	l.mu.Unlock()
	l.noteSlotsChanged()
}

// callRaw sends a pre-encoded body.
func (l *Link) callRaw(ctx context.Context, t kmsproto.Type, body []byte) error {
	return l.call(ctx, t, rawBody(body), nil)
}

// rawBody marshals as itself.
type rawBody []byte

// MarshalCBOR implements cbor.Marshaler.
func (r rawBody) MarshalCBOR() ([]byte, error) { return r, nil }

// handleInternal (receiver) stores the sender's new MAC slots.
func (l *Link) handleInternal(ctx context.Context, req kmsproto.MakeKeysInternalReq) handlerResult {
	if req.Sender != l.o.Peer || req.Count == 0 || req.Count > 1<<16 {
		return refuse(kmsproto.BadRequest, "bad slot range")
	}
	ps, good := storePieces(req.Pieces, 1-l.parity, int(req.Count)*keystore.SlotSize)
	if !good {
		return refuse(kmsproto.BadRequest, "pieces do not match the slots or the sender's parity")
	}
	_, next, _, err := l.o.Store.SlotBounds(ctx, l.o.ID, l.o.Peer)
	if err != nil {
		return refuse(kmsproto.Internal, "store error")
	}
	if req.First < next && req.First+uint64(req.Count) <= next {
		return ok(nil) // applied before
	}
	if req.First != next {
		return refuse(kmsproto.Retry, "slot numbers out of order")
	}
	err = l.o.Store.Allocate(ctx, keystore.Allocation{Link: l.o.ID, Pieces: ps,
		Slots: &keystore.SlotRange{Sender: l.o.Peer, First: req.First, Count: int(req.Count)}})
	return l.allocResult(err)
}

func (l *Link) allocResult(err error) handlerResult {
	switch {
	case err == nil:
		return ok(nil)
	case errors.Is(err, keystore.ErrConflict):
		return refuse(kmsproto.Retry, "material not free here (yet)")
	case errors.Is(err, keystore.ErrBadAllocation):
		return refuse(kmsproto.BadRequest, "allocation does not add up")
	}
	l.log.Error("allocation from peer failed", "err", err)
	return refuse(kmsproto.Internal, "store error")
}

// handleExternal (receiver) stores keys the peer reserved for an SAE pair.
func (l *Link) handleExternal(ctx context.Context, req kmsproto.MakeKeysExternalReq) handlerResult {
	n := len(req.IDs)
	if n == 0 || n > 1<<14 || req.SizeBits == 0 || req.SizeBits%8 != 0 || req.SizeBits > 1<<20 ||
		req.Master == "" || len(req.Slaves) == 0 || hasDupIDs(req.IDs) || len(req.Stream) > maxStreamID {
		return refuse(kmsproto.BadRequest, "bad key reservation")
	}
	ps, good := storePieces(req.Pieces, 1-l.parity, n*int(req.SizeBits)/8)
	if !good {
		return refuse(kmsproto.BadRequest, "pieces do not match the keys or the sender's parity")
	}
	created, expires := time.UnixMilli(req.Created), time.UnixMilli(req.Expires)
	keys := make([]keystore.Key, n)
	for i, id := range req.IDs {
		keys[i] = keystore.Key{ID: id, Link: l.o.ID, State: keystore.KeyReady, Master: req.Master, Slaves: req.Slaves,
			Pending: l.localOf(req.Master, req.Slaves), SizeBits: int(req.SizeBits), Created: created, Expires: expires,
			Stream: req.Stream}
	}
	err := l.o.Store.Allocate(ctx, keystore.Allocation{Link: l.o.ID, Pieces: ps, Keys: keys})
	return l.allocResult(err)
}

func hasDupIDs(ids []qkd.KeyID) bool {
	seen := make(map[qkd.KeyID]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			return true
		}
		seen[id] = true
	}
	return false
}
