package memstore

import (
	"context"
	"fmt"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
)

// ResizeKeys implements keystore.Store: everything is checked before
// anything changes.
func (s *Store) ResizeKeys(ctx context.Context, r keystore.Resize) error {
	if err := rules.CheckResize(&r); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, done := s.resizes[r.ID]; done {
		return fmt.Errorf("keystore: resize %q: %w", r.ID, keystore.ErrApplied)
	}
	old := make([]*keystore.Key, len(r.Old))
	for i, id := range r.Old {
		if k := s.keys[id]; k != nil {
			old[i] = &k.key
		}
	}
	if err := rules.CheckResizeOld(&r, old, s.now()); err != nil {
		return err
	}
	keys := rules.ResizedKeys(&r, old)
	if err := s.checkNewKeys(keys); err != nil {
		wipeKeys(keys)
		return err
	}
	if err := s.checkNewOutbox(r.Outbox); err != nil {
		wipeKeys(keys)
		return err
	}
	for _, id := range r.Old {
		s.deleteKey(id)
	}
	now := s.now()
	s.storeKeys(keys, now) // the store keeps the new keys' buffers
	s.storeOutbox(r.Outbox, r.Link, now)
	s.resizes[r.ID] = keys[0].Expires
	return nil
}

func wipeKeys(keys []keystore.Key) {
	for i := range keys {
		keys[i].Data.Wipe()
	}
}

// expireResizes forgets the resize records whose keys expired (under mu).
func (s *Store) expireResizes(now time.Time) {
	for id, exp := range s.resizes {
		if !exp.IsZero() && !now.Before(exp) {
			delete(s.resizes, id)
		}
	}
}

// ListKeys implements keystore.Store.
func (s *Store) ListKeys(ctx context.Context, f keystore.KeyFilter) ([]keystore.Key, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if f.Now.IsZero() {
		f.Now = s.now()
	}
	recs := s.sortedKeys(func(k *keystore.Key) bool { return rules.MatchesFilter(k, &f) })
	if f.Limit > 0 && len(recs) > f.Limit {
		recs = recs[:f.Limit]
	}
	out := make([]keystore.Key, len(recs))
	for i, k := range recs {
		out[i] = copyKey(&k.key, false)
	}
	return out, nil
}
