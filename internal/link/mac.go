package link

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// ErrMACMismatch: the peer seals its messages with another ITS MAC scheme
// than this end (links[].mac differs); wrapped in ErrUnauthenticated.
var ErrMACMismatch = errors.New("link: peer uses another ITS MAC scheme")

// DefaultMACEpoch is the number of messages per sender whose Wegman–Carter
// tags share one hash key, unless Options.MACEpoch says otherwise.
const DefaultMACEpoch = 1024

// maxSeq bounds message numbers so that the Wegman–Carter tag numbers
// 2·seq and 2·seq+1 cannot overflow.
const maxSeq = 1 << 62

// halfSize is what one Wegman–Carter message takes from a store slot:
// the request pad and the reply pad.
const halfSize = 2 * itsmac.PadSize

// layout maps a sender's message numbers to the MAC slots of the key store
// (keystore.SlotSize = 64 bytes each, numbered from 0 per sender).
//
// Poly1305: message n uses slot n, bytes [0:32] as the request's one-time
// key r‖s and [32:64] as the reply's.
//
// Wegman–Carter with epochs of N messages (N even): epoch e is the E = 1 +
// N/2 slots from e·E. Slot e·E holds the epoch's hash key r in its first 16
// bytes. Message e·N + j uses half j mod 2 (bytes [32·(j mod 2), +32)) of
// slot e·E + 1 + ⌊j/2⌋: the first 16 bytes pad the request's tag, the
// other 16 the reply's.
type layout struct {
	wc    bool
	epoch uint64 // N, Wegman–Carter only
}

func newLayout(s itsmac.Scheme, epoch int) (layout, error) {
	switch {
	case s == itsmac.SchemePoly1305:
		return layout{}, nil
	case s != itsmac.SchemeWegmanCarter:
		return layout{}, fmt.Errorf("link: %w", itsmac.ErrUnknownScheme)
	case epoch < 2 || epoch%2 != 0:
		return layout{}, fmt.Errorf("link: Wegman–Carter epoch of %d messages: want an even number ≥ 2", epoch)
	}
	return layout{wc: true, epoch: uint64(epoch)}, nil
}

func (y layout) epochSlots() uint64 { return 1 + y.epoch/2 }

// slotOf returns the store slot of message seq and, for Wegman–Carter, its
// half.
func (y layout) slotOf(seq uint64) (slot uint64, half int) {
	if !y.wc {
		return seq, 0
	}
	e, j := seq/y.epoch, seq%y.epoch
	return e*y.epochSlots() + 1 + j/2, int(j % 2)
}

// hashSlot returns the slot holding the hash key of epoch e.
func (y layout) hashSlot(e uint64) uint64 { return e * y.epochSlots() }

func (y layout) epochOf(seq uint64) uint64 { return seq / y.epoch }

// msgsBelow returns the first message number whose slot is ≥ slot: the
// messages that slots [0, slot) serve.
func (y layout) msgsBelow(slot uint64) uint64 {
	if !y.wc {
		return slot
	}
	e, r := slot/y.epochSlots(), slot%y.epochSlots()
	if r <= 1 {
		return e * y.epoch
	}
	return e*y.epoch + 2*(r-1)
}

// exchangeKeys are the MAC keys of one exchange: message seq of a sender
// and the reply to it. The holder wipes them.
type exchangeKeys struct {
	seq  uint64
	wc   bool
	hash secret.MACKey // Wegman–Carter: the epoch's hash key (a copy)
	// mat is the exchange's key material: the whole 64-byte slot for
	// Poly1305, the 32-byte half for Wegman–Carter.
	mat secret.Bytes
}

// key returns the one-time key (Poly1305 r‖s) or pad (Wegman–Carter) of
// the request or of the reply, without copying.
func (k *exchangeKeys) key(reply bool) secret.MACKey {
	size := itsmac.KeySize
	if k.wc {
		size = itsmac.PadSize
	}
	off := 0
	if reply {
		off = size
	}
	return secret.MACKey{Bytes: secret.Adopt(k.mat.Expose()[off : off+size])}
}

// number is the Wegman–Carter tag number: the request and the reply of one
// message get different ones.
func (k *exchangeKeys) number(reply bool) uint64 {
	if reply {
		return 2*k.seq + 1
	}
	return 2 * k.seq
}

func (k *exchangeKeys) sum(reply bool, data []byte) []byte {
	var t itsmac.Tag
	var err error
	if k.wc {
		t, err = itsmac.WCSum(k.hash, k.key(reply), k.number(reply), data)
	} else {
		t, err = itsmac.Sum(k.key(reply), data)
	}
	if err != nil {
		panic("link: MAC key of the wrong size") // slots are always keystore.SlotSize bytes
	}
	return t[:]
}

func (k *exchangeKeys) verify(reply bool, data, tag []byte) bool {
	if k.wc {
		return itsmac.WCVerify(k.hash, k.key(reply), k.number(reply), tag, data)
	}
	return itsmac.Verify(k.key(reply), tag, data)
}

func (k *exchangeKeys) wipe() {
	if k != nil {
		k.hash.Wipe()
		k.mat.Wipe()
	}
}

// slotBook opens the MAC slots of one sender at one end of a link: this
// end's own (to send) or the peer's (to verify). For Wegman–Carter it also
// holds what a store slot cannot: the unused half of a slot whose other
// half was used, and the hash keys of the current and the previous epoch.
// Both are in memory only: lost on a restart, which loses messages (they
// are retried with new numbers) but never reuses a key.
type slotBook struct {
	store  keystore.Slots
	link   qkd.LinkID
	sender qkd.NodeID
	lay    layout

	mu     sync.Mutex               // serialises Wegman–Carter openings (store calls only, never a round trip)
	halves map[uint64]secret.Bytes  // guarded by mu: slot<<1|half → the unused half of an opened slot
	hash   map[uint64]secret.MACKey // guarded by mu: epoch → its hash key
	top    uint64                   // guarded by mu: highest epoch used + 1 (0: none yet)
	closed bool                     // guarded by mu: wiped after zeroisation
}

func newSlotBook(store keystore.Slots, link qkd.LinkID, sender qkd.NodeID, lay layout) *slotBook {
	return &slotBook{store: store, link: link, sender: sender, lay: lay,
		halves: map[uint64]secret.Bytes{}, hash: map[uint64]secret.MACKey{}}
}

// take removes and returns the keys of message seq (to send it);
// qkd.ErrNotFound if they were used or do not exist.
func (b *slotBook) take(ctx context.Context, seq uint64) (*exchangeKeys, error) {
	if !b.lay.wc {
		k, err := b.store.TakeSlot(ctx, b.link, b.sender, seq)
		if err != nil {
			return nil, err
		}
		return &exchangeKeys{seq: seq, mat: k.Bytes}, nil
	}
	k, _, err := b.openWC(ctx, seq, nil)
	return k, err
}

// use opens the keys of message seq (to verify it) and removes them only
// if check accepts them: a message whose tag fails uses up nothing. It
// returns the keys (the caller wipes them) if check accepted them.
func (b *slotBook) use(ctx context.Context, seq uint64, check func(*exchangeKeys) bool) (*exchangeKeys, bool, error) {
	if !b.lay.wc {
		k, used, err := b.store.UseSlot(ctx, b.link, b.sender, seq, func(k secret.MACKey) bool {
			return check(&exchangeKeys{seq: seq, mat: k.Bytes})
		})
		if err != nil || !used {
			k.Wipe()
			return nil, false, err
		}
		return &exchangeKeys{seq: seq, mat: k.Bytes}, true, nil
	}
	return b.openWC(ctx, seq, check)
}

// openWC opens message seq's half slot and its epoch's hash key; with a
// check, the half is removed only if the check accepts the keys.
func (b *slotBook) openWC(ctx context.Context, seq uint64, check func(*exchangeKeys) bool) (*exchangeKeys, bool, error) {
	if seq >= maxSeq {
		return nil, false, fmt.Errorf("link: message number %d: %w", seq, qkd.ErrNotFound)
	}
	e := b.lay.epochOf(seq)
	slot, half := b.lay.slotOf(seq)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, false, fmt.Errorf("link: MAC keys wiped: %w", qkd.ErrNotFound)
	}
	hk, err := b.hashKey(ctx, e)
	if err != nil {
		return nil, false, err
	}
	k := &exchangeKeys{seq: seq, wc: true, hash: secret.MACKey{Bytes: hk.Clone()}}
	ok, err := b.openHalf(ctx, k, slot, half, check)
	if err != nil || !ok {
		k.wipe()
		return nil, false, err
	}
	b.advance(ctx, e)
	return k, true, nil
}

// openHalf puts half of slot into k.mat: from memory if the slot was
// opened before, else from the store, keeping the other half in memory.
func (b *slotBook) openHalf(ctx context.Context, k *exchangeKeys, slot uint64, half int, check func(*exchangeKeys) bool) (bool, error) {
	id := slot<<1 | uint64(half)
	if m, ok := b.halves[id]; ok {
		k.mat = m.Clone()
		if check != nil && !check(k) {
			return false, nil
		}
		delete(b.halves, id)
		m.Wipe()
		return true, nil
	}
	var other secret.Bytes
	split := func(s secret.MACKey) bool {
		full := s.Expose()
		k.mat = secret.From(full[half*halfSize : (half+1)*halfSize])
		if check != nil && !check(k) {
			return false
		}
		other = secret.From(full[(1-half)*halfSize : (2-half)*halfSize])
		return true
	}
	var s secret.MACKey
	var err error
	ok := false
	if check == nil {
		if s, err = b.store.TakeSlot(ctx, b.link, b.sender, slot); err == nil {
			ok = split(s)
		}
	} else {
		s, ok, err = b.store.UseSlot(ctx, b.link, b.sender, slot, split)
	}
	s.Wipe()
	if err != nil || !ok {
		return false, err
	}
	b.halves[id^1] = other
	return true, nil
}

// hashKey returns the hash key of epoch e, reading its slot without
// removing it the first time.
func (b *slotBook) hashKey(ctx context.Context, e uint64) (secret.MACKey, error) {
	if k, ok := b.hash[e]; ok {
		return k, nil
	}
	var hk secret.Bytes
	s, _, err := b.store.UseSlot(ctx, b.link, b.sender, b.lay.hashSlot(e), func(s secret.MACKey) bool {
		hk = secret.From(s.Expose()[:itsmac.HashKeySize])
		return false // read, do not use up: the key serves the whole epoch
	})
	s.Wipe()
	if err != nil {
		return secret.MACKey{}, err
	}
	k := secret.MACKey{Bytes: hk}
	b.hash[e] = k
	return k, nil
}

// advance notes that epoch e was used and retires every epoch before e-1:
// their hash keys, unused halves and leftover slots are destroyed, so a
// late message of such an epoch is rejected (and retried under a new
// number). The previous epoch stays for messages that arrive out of order.
func (b *slotBook) advance(ctx context.Context, e uint64) {
	if e+1 <= b.top {
		return
	}
	b.top = e + 1
	if e < 2 {
		return
	}
	keep := e - 1 // first epoch kept
	for ep, k := range b.hash {
		if ep < keep {
			k.Wipe()
			delete(b.hash, ep)
		}
	}
	limit := b.lay.hashSlot(keep)
	for id, m := range b.halves {
		if id>>1 < limit {
			m.Wipe()
			delete(b.halves, id)
		}
	}
	b.dropSlotsBelow(ctx, limit)
}

// dropSlotsBelow deletes the sender's store slots below limit.
func (b *slotBook) dropSlotsBelow(ctx context.Context, limit uint64) {
	for {
		lowest, _, count, err := b.store.SlotBounds(ctx, b.link, b.sender)
		if err != nil || count == 0 || lowest >= limit {
			return
		}
		s, err := b.store.TakeSlot(ctx, b.link, b.sender, lowest)
		s.Wipe()
		if err != nil {
			return
		}
	}
}

// wipe destroys the keys held in memory and refuses further openings.
func (b *slotBook) wipe() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for id, m := range b.halves {
		m.Wipe()
		delete(b.halves, id)
	}
	for e, k := range b.hash {
		k.Wipe()
		delete(b.hash, e)
	}
}
