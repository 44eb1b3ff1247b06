package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
)

// SetKeysReady implements keystore.Store. Absent keys are ignored.
func (s *Store) SetKeysReady(ctx context.Context, ids []qkd.KeyID, outboxID string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, id := range ids {
		if k := s.keys[id]; k != nil && k.key.State == keystore.KeyPending {
			k.key.State = keystore.KeyReady
		}
	}
	if outboxID != "" {
		delete(s.outbox, outboxID)
	}
	return nil
}

// sortedKeys returns the keys that match in insertion order.
func (s *Store) sortedKeys(match func(*keystore.Key) bool) []*keyRecord {
	var out []*keyRecord
	for _, k := range s.keys {
		if match(&k.key) {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b *keyRecord) int { return cmpUint(a.seq, b.seq) })
	return out
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Store) defaultNow(r *keystore.TakeRequest) {
	if r.Now.IsZero() {
		r.Now = s.now()
	}
}

// TakeForPair implements keystore.Store.
func (s *Store) TakeForPair(ctx context.Context, r keystore.TakeRequest) ([]keystore.Key, error) {
	if err := rules.CheckTake(&r, false); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	s.defaultNow(&r)
	found := s.pairKeys(&r, r.Number)
	if len(found) < r.Number {
		return nil, fmt.Errorf("keystore: %d of %d keys: %w", len(found), r.Number, qkd.ErrInsufficientKey)
	}
	return s.deliver(found[:r.Number], r.Caller), nil
}

// deliver hands copies of recs to caller, deleting keys nobody else waits for.
func (s *Store) deliver(recs []*keyRecord, caller qkd.SAEID) []keystore.Key {
	out := make([]keystore.Key, len(recs))
	for i, k := range recs {
		last := rules.Served(&k.key, caller)
		out[i] = copyKey(&k.key, true)
		if last {
			s.deleteKey(k.key.ID)
		}
	}
	return out
}

// TakeByID implements keystore.Store.
func (s *Store) TakeByID(ctx context.Context, r keystore.TakeRequest) ([]keystore.Key, error) {
	if err := rules.CheckTake(&r, true); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	s.defaultNow(&r)
	recs := make([]*keyRecord, len(r.IDs))
	var failed error
	for i, id := range r.IDs {
		k := s.keys[id]
		var key *keystore.Key
		if k != nil {
			key = &k.key
		}
		if err := rules.CheckByID(key, &r); err != nil {
			failed = rules.Worse(failed, err)
		}
		recs[i] = k
	}
	if failed != nil {
		return nil, failed
	}
	return s.deliver(recs, r.Caller), nil
}

// CountKeys implements keystore.Store.
func (s *Store) CountKeys(ctx context.Context, r keystore.TakeRequest) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	s.defaultNow(&r)
	return len(s.pairKeys(&r, 0)), nil
}

// DeleteKeys implements keystore.Store.
func (s *Store) DeleteKeys(ctx context.Context, ids []qkd.KeyID) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if s.deleteKey(id) {
			n++
		}
	}
	return n, nil
}

func (s *Store) deleteKey(id qkd.KeyID) bool {
	k := s.keys[id]
	if k == nil {
		return false
	}
	k.key.Data.Wipe()
	k.gone = true
	delete(s.keys, id)
	return true
}

// pairKey names the (master, slaves, size) a key is delivered for.
func pairKey(master qkd.SAEID, slaves []qkd.SAEID, sizeBits int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%q", sizeBits, master)
	for _, s := range slaves {
		fmt.Fprintf(&b, "|%q", s)
	}
	return b.String()
}

// indexKey adds k to its pair's index; keys of a key stream are delivered
// by ID only and stay out of it.
func (s *Store) indexKey(k *keyRecord) {
	if k.key.Stream != "" {
		return
	}
	pk := pairKey(k.key.Master, k.key.Slaves, k.key.SizeBits)
	s.pairs[pk] = append(s.pairs[pk], k)
}

// pairKeys returns up to limit keys r.Caller may take for its pair, oldest
// first (all of them if limit <= 0). Deleted records are swept from the
// pair's index: from its front always, from the rest when they are more
// than half of it.
func (s *Store) pairKeys(r *keystore.TakeRequest, limit int) []*keyRecord {
	pk := pairKey(r.Master, r.Slaves, r.SizeBits)
	list := s.pairs[pk]
	for len(list) > 0 && list[0].gone {
		list[0] = nil
		list = list[1:]
	}
	var out []*keyRecord
	gone := 0
	for _, k := range list {
		if limit > 0 && len(out) == limit {
			break
		}
		if k.gone {
			gone++
		} else if rules.MatchesPair(&k.key, r) {
			out = append(out, k)
		}
	}
	if 2*gone > len(list) {
		list = slices.DeleteFunc(list, func(k *keyRecord) bool { return k.gone })
	}
	if len(list) == 0 {
		delete(s.pairs, pk)
	} else {
		s.pairs[pk] = list
	}
	return out
}

// ExpireKeys implements keystore.Store; relay records go too.
func (s *Store) ExpireKeys(ctx context.Context, now time.Time) ([]keystore.Key, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	expired := s.sortedKeys(func(k *keystore.Key) bool { return rules.Expired(k, now) })
	out := make([]keystore.Key, len(expired))
	for i, k := range expired {
		out[i] = copyKey(&k.key, false)
		s.deleteKey(k.key.ID)
	}
	s.expireRelays(now)
	s.expireResizes(now)
	return out, nil
}

// PendingOutbox implements keystore.Store.
func (s *Store) PendingOutbox(ctx context.Context, l qkd.LinkID) ([]keystore.Outbox, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var recs []*outboxRecord
	for _, o := range s.outbox {
		if o.entry.Link == l {
			recs = append(recs, o)
		}
	}
	slices.SortFunc(recs, func(a, b *outboxRecord) int {
		if c := a.entry.Created.Compare(b.entry.Created); c != 0 {
			return c
		}
		return cmpUint(a.seq, b.seq)
	})
	out := make([]keystore.Outbox, len(recs))
	for i, o := range recs {
		out[i] = o.entry
		out[i].Payload = slices.Clone(o.entry.Payload)
	}
	return out, nil
}

// AbortAllocation implements keystore.Store: it deletes the outbox entry and
// those of ids that are still Pending.
func (s *Store) AbortAllocation(ctx context.Context, outboxID string, ids []qkd.KeyID) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.outbox, outboxID)
	for _, id := range ids {
		if k := s.keys[id]; k != nil && k.key.State == keystore.KeyPending {
			s.deleteKey(id)
		}
	}
	return nil
}
