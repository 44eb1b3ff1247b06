package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// AddBlock implements keystore.Store.
func (s *Store) AddBlock(ctx context.Context, b keystore.Block) error {
	if err := rules.CheckBlock(b); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	ls := s.link(b.Link, true)
	if ls.seen.Contains(b.Index) {
		return nil
	}
	arrived := b.Arrived
	if arrived.IsZero() {
		arrived = s.now()
	}
	ls.seen.Add(b.Index, b.Index)
	ls.blocks[b.Index] = &block{
		state:   keystore.BlockUnconfirmed,
		data:    slices.Clone(b.Data.Expose()),
		arrived: arrived,
	}
	return nil
}

// sortedIndices returns the indices of ls's blocks in order.
func (ls *link) sortedIndices() []uint64 {
	idx := make([]uint64, 0, len(ls.blocks))
	for i := range ls.blocks {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	return idx
}

func (b *block) view(l qkd.LinkID, idx uint64, withData bool) keystore.Block {
	v := keystore.Block{
		Link: l, Index: idx, State: b.state,
		Offset: b.off, Remaining: len(b.data) - b.off, Arrived: b.arrived,
	}
	if withData {
		v.Data = secret.From(b.data[b.off:])
	}
	return v
}

// ListBlocks implements keystore.Store.
func (s *Store) ListBlocks(ctx context.Context, l qkd.LinkID, state keystore.BlockState, limit int) ([]keystore.Block, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ls := s.link(l, false)
	if ls == nil {
		return nil, nil
	}
	var out []keystore.Block
	for _, i := range ls.sortedIndices() {
		if len(out) >= limit {
			break
		}
		if b := ls.blocks[i]; b.state == state {
			out = append(out, b.view(l, i, false))
		}
	}
	return out, nil
}

// GetBlocks implements keystore.Store.
func (s *Store) GetBlocks(ctx context.Context, l qkd.LinkID, indices []uint64) ([]keystore.Block, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ls := s.link(l, false)
	if ls == nil {
		return nil, nil
	}
	var out []keystore.Block
	for _, i := range indices {
		if b := ls.blocks[i]; b != nil {
			out = append(out, b.view(l, i, true))
		}
	}
	return out, nil
}

// ConfirmBlocks implements keystore.Store.
func (s *Store) ConfirmBlocks(ctx context.Context, l qkd.LinkID, indices []uint64, skip int) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	ls := s.link(l, false)
	if len(indices) == 0 {
		return nil
	}
	for _, i := range indices {
		if ls == nil || ls.blocks[i] == nil {
			return fmt.Errorf("keystore: confirm block %d of link %s: %w", i, l, qkd.ErrNotFound)
		}
	}
	first := ls.blocks[indices[0]]
	if first.state == keystore.BlockUnconfirmed && (skip < 0 || skip > len(first.data)) {
		return fmt.Errorf("keystore: skip %d bytes of a %d-byte block: %w", skip, len(first.data), keystore.ErrConflict)
	}
	for n, i := range indices {
		b := ls.blocks[i]
		if b.state != keystore.BlockUnconfirmed {
			continue
		}
		b.state = keystore.BlockConfirmed
		if n == 0 {
			ls.consume(i, skip)
		}
	}
	return nil
}

// consume advances block i's offset by n bytes, wiping them, and deletes
// the block when nothing is left.
func (ls *link) consume(i uint64, n int) {
	b := ls.blocks[i]
	secret.Wipe(b.data[b.off : b.off+n])
	b.off += n
	if b.off == len(b.data) {
		delete(ls.blocks, i)
	}
}

// DiscardBlocks implements keystore.Store.
func (s *Store) DiscardBlocks(ctx context.Context, l qkd.LinkID, ranges []keystore.Range) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	ls := s.link(l, false)
	if ls == nil {
		return 0, nil
	}
	n := 0
	for i, b := range ls.blocks {
		if b.state != keystore.BlockUnconfirmed || !inRanges(i, ranges) {
			continue
		}
		secret.Wipe(b.data)
		delete(ls.blocks, i)
		n++
	}
	return n, nil
}

func inRanges(i uint64, ranges []keystore.Range) bool {
	for _, r := range ranges {
		if r.From <= i && i <= r.To {
			return true
		}
	}
	return false
}

// Material implements keystore.Store.
func (s *Store) Material(ctx context.Context, l qkd.LinkID, parity int, want int) ([]keystore.Piece, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ls := s.link(l, false)
	if ls == nil {
		return nil, nil
	}
	var out []keystore.Piece
	have := 0
	for _, i := range ls.sortedIndices() {
		if have >= want {
			break
		}
		b := ls.blocks[i]
		if b.state != keystore.BlockConfirmed || int(i%2) != parity {
			continue
		}
		out = append(out, keystore.Piece{Index: i, Off: b.off, Len: len(b.data) - b.off})
		have += len(b.data) - b.off
	}
	return out, nil
}
