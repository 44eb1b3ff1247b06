package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
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
	ls := s.link(a.Link, false)
	if ls == nil {
		return fmt.Errorf("keystore: allocation on unknown link %s: %w", a.Link, keystore.ErrConflict)
	}
	offs := make(map[uint64]int)
	for _, p := range a.Pieces {
		b := ls.blocks[p.Index]
		if b == nil || b.state != keystore.BlockConfirmed {
			return fmt.Errorf("keystore: block %d is not free confirmed material: %w", p.Index, keystore.ErrConflict)
		}
		off, ok := offs[p.Index]
		if !ok {
			off = b.off
		}
		if p.Off != off || p.Off+p.Len > len(b.data) {
			return fmt.Errorf("keystore: piece [%d,+%d) of block %d: offset is %d of %d: %w",
				p.Off, p.Len, p.Index, off, len(b.data), keystore.ErrConflict)
		}
		offs[p.Index] = off + p.Len
	}
	for _, k := range a.Keys {
		if s.keys[k.ID] != nil {
			return fmt.Errorf("keystore: key %s exists: %w", k.ID, keystore.ErrConflict)
		}
	}
	if r := a.Slots; r != nil {
		if snd := ls.sender(r.Sender, false); snd != nil && snd.seen.Overlaps(r.First, r.First+uint64(r.Count)-1) {
			return fmt.Errorf("keystore: slots %d+%d of %s were stored before: %w", r.First, r.Count, r.Sender, keystore.ErrConflict)
		}
	}
	if a.Outbox != nil && s.outbox[a.Outbox.ID] != nil {
		return fmt.Errorf("keystore: outbox entry %q exists: %w", a.Outbox.ID, keystore.ErrConflict)
	}
	return nil
}

// apply consumes a's pieces and stores its keys, slots and outbox entry.
func (s *Store) apply(a *keystore.Allocation, total int) {
	ls := s.link(a.Link, false)
	buf := make([]byte, 0, total)
	for _, p := range a.Pieces {
		buf = append(buf, ls.blocks[p.Index].data[p.Off:p.Off+p.Len]...)
		ls.consume(p.Index, p.Len)
	}
	slots := rules.Cut(buf, a)
	secret.Wipe(buf)
	now := s.now()
	for _, k := range a.Keys {
		k.Slaves, k.Pending = cloneSAEs(k.Slaves), cloneSAEs(k.Pending)
		if k.Created.IsZero() {
			k.Created = now
		}
		rec := &keyRecord{key: k, seq: s.nextSeq()}
		s.keys[k.ID] = rec
		s.indexKey(rec)
	}
	if r := a.Slots; r != nil {
		snd := ls.sender(r.Sender, true)
		for i, m := range slots {
			snd.slots[r.First+uint64(i)] = m
		}
		snd.seen.Add(r.First, r.First+uint64(r.Count)-1)
	}
	if o := a.Outbox; o != nil {
		e := *o
		e.Payload = slices.Clone(o.Payload)
		if e.Link == "" {
			e.Link = a.Link
		}
		if e.Created.IsZero() {
			e.Created = now
		}
		s.outbox[e.ID] = &outboxRecord{entry: e, seq: s.nextSeq()}
	}
}
