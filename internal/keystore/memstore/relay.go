package memstore

import (
	"context"
	"crypto/subtle"
	"fmt"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// relayRecord is the record of an applied relay step.
type relayRecord struct {
	data    []byte
	expires time.Time
}

// ApplyRelayStep implements keystore.Store. Everything is checked, and build
// called, before anything changes: an error at any point leaves the store
// as it was.
func (s *Store) ApplyRelayStep(ctx context.Context, st keystore.RelayStep, build func(in, out secret.Bytes) (keystore.RelayResult, error)) error {
	inLen, outLen, err := rules.CheckRelayStep(&st)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.relays[st.ID] != nil {
		return fmt.Errorf("keystore: relay step %q: %w", st.ID, keystore.ErrApplied)
	}
	// In is consumed before Out: should both name the same link, Out's
	// pieces start where In's end.
	offs := make(pieceOffsets)
	if err := s.checkPieces(offs, st.InLink, st.In); err != nil {
		return err
	}
	if err := s.checkPieces(offs, st.OutLink, st.Out); err != nil {
		return err
	}
	in, out := rules.Pad(inLen), rules.Pad(outLen)
	for _, side := range []struct {
		buf    *[]byte
		link   qkd.LinkID
		pieces []keystore.Piece
	}{{&in, st.InLink, st.In}, {&out, st.OutLink, st.Out}} {
		ls := s.link(side.link, false)
		for _, p := range side.pieces {
			*side.buf = append(*side.buf, ls.blocks[p.Index].data[p.Off:p.Off+p.Len]...)
		}
	}
	for i, id := range st.Combine {
		r := s.keys[id]
		switch {
		case r == nil:
			secret.Wipe(in)
			secret.Wipe(out)
			return fmt.Errorf("keystore: share %s: not here (yet): %w", id, keystore.ErrConflict)
		case r.key.Stream != keystore.ShareStream || i > 0 && r.key.Data.Len() != len(out):
			secret.Wipe(in)
			secret.Wipe(out)
			return fmt.Errorf("keystore: key %s is not a share of this step: %w", id, keystore.ErrConflict)
		}
		if i == 0 {
			out = make([]byte, r.key.Data.Len())
		}
		subtle.XORBytes(out, out, r.key.Data.Expose())
	}
	res, err := rules.RunBuild(build, in, out)
	if err != nil {
		return err
	}
	defer rules.WipeRelayKeys(&res)
	if err := rules.CheckRelayResult(&st, &res); err != nil {
		return err
	}
	if err := s.checkNewKeys(res.Keys); err != nil {
		return err
	}
	if err := s.checkNewOutbox(res.Outbox); err != nil {
		return err
	}

	// Apply: nothing below fails.
	s.consumePieces(st.InLink, st.In)
	s.consumePieces(st.OutLink, st.Out)
	for _, id := range st.Combine {
		s.deleteKey(id)
	}
	keys := slices.Clone(res.Keys)
	for i := range keys {
		keys[i].Data = keys[i].Data.Clone()
	}
	now := s.now()
	s.storeKeys(keys, now)
	s.storeOutbox(res.Outbox, rules.RelayKeyLink(&st), now)
	s.relays[st.ID] = &relayRecord{data: slices.Clone(res.Record), expires: st.Expires}
	return nil
}

// consumePieces consumes pieces of l (checkPieces passed).
func (s *Store) consumePieces(l qkd.LinkID, pieces []keystore.Piece) {
	ls := s.link(l, false)
	for _, p := range pieces {
		ls.consume(p.Index, p.Len)
	}
}

// RelayRecord implements keystore.Store. A record is there until
// ExpireKeys deletes it.
func (s *Store) RelayRecord(ctx context.Context, id string) ([]byte, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	r := s.relays[id]
	if r == nil {
		return nil, fmt.Errorf("keystore: relay step %q: %w", id, qkd.ErrNotFound)
	}
	return append([]byte{}, r.data...), nil
}

// expireRelays deletes the relay records with Expires <= now (under mu).
func (s *Store) expireRelays(now time.Time) {
	for id, r := range s.relays {
		if !r.expires.IsZero() && !now.Before(r.expires) {
			secret.Wipe(r.data)
			delete(s.relays, id)
		}
	}
}
