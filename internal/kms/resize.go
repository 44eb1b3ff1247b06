package kms

import (
	"cmp"
	"context"
	"slices"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// Serving a size the pool lacks from keys of other sizes (keys
// can be split (one entry → several smaller) and merged (several → one)
// to serve requested sizes; the peer is told). When enc_keys asks for a
// size of which the pair holds too few Ready keys, but Ready keys of the
// pair on the same neighbour link can be split (a multiple of the size)
// or merged (a divisor of it) into enough keys, the service splits and
// merges them (split_key, merge_keys: the link changes its store in one
// transaction with an outbox entry, and the new keys become deliverable
// only once the peer confirmed) instead of reserving fresh material.
// Otherwise, or if a resize fails, it reserves as before.

// resizer is what splitting and merging need of a link (link.Link). A
// link without it is served by reservations only.
type resizer interface {
	Split(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID, id qkd.KeyID, parts int) ([]qkd.KeyID, error)
	Merge(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID, ids []qkd.KeyID) (qkd.KeyID, error)
}

// maxResizeOps bounds the split/merge round trips of one request: beyond
// that one reservation is cheaper.
const maxResizeOps = 4

// maxResizeScan bounds the keys looked at for a plan.
const maxResizeScan = 1024

// resizeOp is one split (of split into parts) or one merge (of merge).
type resizeOp struct {
	split qkd.KeyID
	parts int
	merge []qkd.KeyID
}

// planResize picks at most maxOps splits and merges of keys (Ready keys
// of one pair, oldest first) that make at least need keys of sizeBits, or
// returns nil. Splits go first, smallest suitable keys first (the least
// material changes size); then merges, of the largest suitable size first
// (the fewest keys per merge).
func planResize(keys []keystore.Key, sizeBits, need, maxOps int) []resizeOp {
	if need <= 0 || sizeBits <= 0 {
		return nil
	}
	var big []keystore.Key
	small := map[int][]qkd.KeyID{}
	for _, k := range keys {
		switch {
		case k.Stream != "": // a key stream's chunk (ListKeys lists none): not the pair's
		case k.SizeBits > sizeBits && k.SizeBits%sizeBits == 0:
			big = append(big, k)
		case k.SizeBits < sizeBits && k.SizeBits > 0 && sizeBits%k.SizeBits == 0:
			small[k.SizeBits] = append(small[k.SizeBits], k.ID)
		}
	}
	slices.SortStableFunc(big, func(a, b keystore.Key) int { return cmp.Compare(a.SizeBits, b.SizeBits) })
	var plan []resizeOp
	made := 0
	for _, k := range big {
		if made >= need || len(plan) == maxOps {
			break
		}
		plan = append(plan, resizeOp{split: k.ID, parts: k.SizeBits / sizeBits})
		made += k.SizeBits / sizeBits
	}
	sizes := make([]int, 0, len(small))
	for sz := range small {
		sizes = append(sizes, sz)
	}
	slices.SortFunc(sizes, func(a, b int) int { return cmp.Compare(b, a) })
	for _, sz := range sizes {
		ids, per := small[sz], sizeBits/sz
		for len(ids) >= per && made < need && len(plan) < maxOps {
			plan = append(plan, resizeOp{merge: ids[:per:per]})
			ids = ids[per:]
			made++
		}
	}
	if made < need {
		return nil
	}
	return plan
}

// resizeAndTake serves req from the pair's Ready keys of other sizes on l,
// split or merged with the peer; qkd.ErrInsufficientKey if it cannot.
func (s *Service) resizeAndTake(ctx context.Context, l Link, caller qkd.SAEID, slaves []qkd.SAEID, req KeyRequest) ([]keystore.Key, error) {
	rz, ok := l.(resizer)
	if !ok {
		return nil, qkd.ErrInsufficientKey
	}
	now := s.o.Now()
	have, err := s.o.Store.CountKeys(ctx, keystore.TakeRequest{Link: l.ID(), Master: caller, Slaves: slaves,
		Caller: caller, SizeBits: req.Size, Now: now})
	if err != nil {
		return nil, err
	}
	keys, err := s.o.Store.ListKeys(ctx, keystore.KeyFilter{Link: l.ID(), Master: caller, Slaves: slaves, Caller: caller,
		Limit: maxResizeScan, Now: now})
	if err != nil {
		return nil, err
	}
	plan := planResize(keys, req.Size, req.Number-have, maxResizeOps)
	if plan == nil {
		return nil, qkd.ErrInsufficientKey
	}
	for _, op := range plan {
		if op.parts > 0 {
			_, err = rz.Split(ctx, caller, slaves, op.split, op.parts)
		} else {
			_, err = rz.Merge(ctx, caller, slaves, op.merge)
		}
		if err != nil {
			// Taken meanwhile, or the peer is away: a reservation may still do.
			s.log.Debug("resizing keys failed", "link", string(l.ID()), "err", err)
			return nil, qkd.ErrInsufficientKey
		}
	}
	return s.o.Store.TakeForPair(ctx, keystore.TakeRequest{Master: caller, Slaves: slaves, Caller: caller,
		SizeBits: req.Size, Number: req.Number, Now: s.o.Now()})
}
