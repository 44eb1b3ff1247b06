package memstore

import (
	"context"
	"fmt"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// sender returns the slots of id on ls, creating them if create is set.
// A nil ls has no senders.
func (ls *link) sender(id qkd.NodeID, create bool) *sender {
	if ls == nil {
		return nil
	}
	snd := ls.senders[id]
	if snd == nil && create {
		snd = &sender{slots: make(map[uint64]secret.Bytes)}
		ls.senders[id] = snd
	}
	return snd
}

// InitLink implements keystore.Store.
func (s *Store) InitLink(ctx context.Context, in keystore.LinkInit) (bool, error) {
	if err := rules.CheckLinkInit(in); err != nil {
		return false, err
	}
	if err := s.lock(ctx); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	ls := s.link(in.Link, true)
	if ls.initialised {
		return false, nil
	}
	for _, r := range in.Slots {
		if snd := ls.sender(r.Sender, false); snd != nil && snd.seen.Overlaps(r.First, r.First+uint64(r.Count)-1) {
			return false, fmt.Errorf("keystore: PSK slots %d+%d of %s were stored before: %w", r.First, r.Count, r.Sender, keystore.ErrConflict)
		}
	}
	ls.initialised = true
	for i, r := range in.Slots {
		snd := ls.sender(r.Sender, true)
		m := in.Material[i].Expose()
		for j := range r.Count {
			snd.slots[r.First+uint64(j)] = secret.From(m[j*keystore.SlotSize : (j+1)*keystore.SlotSize])
		}
		snd.seen.Add(r.First, r.First+uint64(r.Count)-1)
	}
	return true, nil
}

// TakeSlot implements keystore.Store.
func (s *Store) TakeSlot(ctx context.Context, l qkd.LinkID, from qkd.NodeID, seq uint64) (secret.MACKey, error) {
	if err := s.lock(ctx); err != nil {
		return secret.MACKey{}, err
	}
	defer s.mu.Unlock()
	snd := s.link(l, false).sender(from, false)
	if snd == nil {
		return secret.MACKey{}, fmt.Errorf("keystore: slot %d of %s on %s: %w", seq, from, l, qkd.ErrNotFound)
	}
	m, ok := snd.slots[seq]
	if !ok {
		return secret.MACKey{}, fmt.Errorf("keystore: slot %d of %s on %s: %w", seq, from, l, qkd.ErrNotFound)
	}
	delete(snd.slots, seq)
	return secret.MACKey{Bytes: m}, nil
}

// UseSlot implements keystore.Store.
func (s *Store) UseSlot(ctx context.Context, l qkd.LinkID, from qkd.NodeID, seq uint64, check func(secret.MACKey) bool) (secret.MACKey, bool, error) {
	if err := s.lock(ctx); err != nil {
		return secret.MACKey{}, false, err
	}
	defer s.mu.Unlock()
	snd := s.link(l, false).sender(from, false)
	var m secret.Bytes
	ok := false
	if snd != nil {
		m, ok = snd.slots[seq]
	}
	if !ok {
		return secret.MACKey{}, false, fmt.Errorf("keystore: slot %d of %s on %s: %w", seq, from, l, qkd.ErrNotFound)
	}
	key := secret.MACKey{Bytes: m.Clone()}
	if !check(key) {
		return key, false, nil
	}
	delete(snd.slots, seq)
	m.Wipe()
	return key, true, nil
}

// SlotBounds implements keystore.Store. With no slot left, lowest == next.
func (s *Store) SlotBounds(ctx context.Context, l qkd.LinkID, from qkd.NodeID) (lowest, next uint64, count int, err error) {
	if err := s.lock(ctx); err != nil {
		return 0, 0, 0, err
	}
	defer s.mu.Unlock()
	snd := s.link(l, false).sender(from, false)
	if snd == nil {
		return 0, 0, 0, nil
	}
	if hi, ok := snd.seen.Max(); ok {
		next = hi + 1
	}
	lowest = next
	for seq := range snd.slots {
		lowest = min(lowest, seq)
	}
	return lowest, next, len(snd.slots), nil
}
