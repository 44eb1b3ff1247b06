package memstore

import (
	"context"
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
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.applied(&a) {
		return nil
	}
	if err := s.checkFree(&a); err != nil {
		return err
	}
	s.apply(&a, total)
	return nil
}

// applied reports whether a was applied before: its first key exists or
// its first slot was ever stored.
func (s *Store) applied(a *keystore.Allocation) bool {
	if len(a.Keys) > 0 && s.keys[a.Keys[0].ID] != nil {
		return true
	}
	if a.Slots == nil {
		return false
	}
	ls := s.link(a.Link, false)
	snd := ls.sender(a.Slots.Sender, false)
	return snd != nil && snd.seen.Contains(a.Slots.First)
}

// checkFree returns keystore.ErrConflict unless every piece starts at its
// confirmed block's offset (after the pieces before it) and nothing a would
// create exists.
func (s *Store) checkFree(a *keystore.Allocation) error {
	if err := s.checkPieces(make(pieceOffsets), a.Link, a.Pieces); err != nil {
		return err
	}
	if err := s.checkNewKeys(a.Keys); err != nil {
		return err
	}
	ls := s.link(a.Link, false)
	if r := a.Slots; r != nil {
		if snd := ls.sender(r.Sender, false); snd != nil && snd.seen.Overlaps(r.First, r.First+uint64(r.Count)-1) {
			return fmt.Errorf("keystore: slots %d+%d of %s were stored before: %w", r.First, r.Count, r.Sender, keystore.ErrConflict)
		}
	}
	return s.checkNewOutbox(a.Outbox)
}

// pieceOffsets tracks, within one operation, where the next piece of a
// block must start once pieces before it were checked.
type pieceOffsets map[linkIndex]int

type linkIndex struct {
	link qkd.LinkID
	idx  uint64
}

// checkPieces returns keystore.ErrConflict unless every piece of l starts
// at its confirmed block's offset, after the pieces before it (recorded in
// offs, which it updates), and fits in the block.
func (s *Store) checkPieces(offs pieceOffsets, l qkd.LinkID, pieces []keystore.Piece) error {
	ls := s.link(l, false)
	if ls == nil && len(pieces) > 0 {
		return fmt.Errorf("keystore: pieces of unknown link %s: %w", l, keystore.ErrConflict)
	}
	for _, p := range pieces {
		b := ls.blocks[p.Index]
		var view *keystore.Block
		off := 0
		if b != nil {
			view = &keystore.Block{State: b.state, Offset: b.off, Remaining: len(b.data) - b.off}
			off = b.off
		}
		li := linkIndex{l, p.Index}
		if o, ok := offs[li]; ok {
			off = o
		}
		if err := rules.CheckPiece(l, p, view, off); err != nil {
			return err
		}
		offs[li] = off + p.Len
	}
	return nil
}

// checkNewKeys returns keystore.ErrConflict if one of keys exists.
func (s *Store) checkNewKeys(keys []keystore.Key) error {
	for _, k := range keys {
		if s.keys[k.ID] != nil {
			return fmt.Errorf("keystore: key %s: %w", k.ID, keystore.ErrKeyExists)
		}
	}
	return nil
}

// checkNewOutbox returns keystore.ErrConflict if o (may be nil) exists.
func (s *Store) checkNewOutbox(o *keystore.Outbox) error {
	if o != nil && s.outbox[o.ID] != nil {
		return fmt.Errorf("keystore: outbox entry %q exists: %w", o.ID, keystore.ErrConflict)
	}
	return nil
}

// cutPieces appends the bytes of pieces of l to buf and consumes them
// (checkPieces passed).
func (s *Store) cutPieces(buf []byte, l qkd.LinkID, pieces []keystore.Piece) []byte {
	ls := s.link(l, false)
	for _, p := range pieces {
		buf = append(buf, ls.blocks[p.Index].data[p.Off:p.Off+p.Len]...)
		ls.consume(p.Index, p.Len)
	}
	return buf
}

// storeKeys stores keys (with their Data, copied) in order.
func (s *Store) storeKeys(keys []keystore.Key, now time.Time) {
	for _, k := range keys {
		k.Slaves, k.Pending = cloneSAEs(k.Slaves), cloneSAEs(k.Pending)
		if k.Created.IsZero() {
			k.Created = now
		}
		rec := &keyRecord{key: k, seq: s.nextSeq()}
		s.keys[k.ID] = rec
		s.indexKey(rec)
	}
}

// storeOutbox stores o (may be nil), defaulting its Link to l.
func (s *Store) storeOutbox(o *keystore.Outbox, l qkd.LinkID, now time.Time) {
	if o == nil {
		return
	}
	e := *o
	e.Payload = slices.Clone(o.Payload)
	if e.Link == "" {
		e.Link = l
	}
	if e.Created.IsZero() {
		e.Created = now
	}
	s.outbox[e.ID] = &outboxRecord{entry: e, seq: s.nextSeq()}
}

// apply consumes a's pieces and stores its keys, slots and outbox entry.
func (s *Store) apply(a *keystore.Allocation, total int) {
	buf := s.cutPieces(make([]byte, 0, total), a.Link, a.Pieces)
	slots := rules.Cut(buf, a)
	secret.Wipe(buf)
	now := s.now()
	s.storeKeys(a.Keys, now)
	if r := a.Slots; r != nil {
		snd := s.link(a.Link, false).sender(r.Sender, true)
		for i, m := range slots {
			snd.slots[r.First+uint64(i)] = m
		}
		snd.seen.Add(r.First, r.First+uint64(r.Count)-1)
	}
	s.storeOutbox(a.Outbox, a.Link, now)
}
