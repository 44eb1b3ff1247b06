package link

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/secret"
)

// checkKeyLen is the material each batch spends on its consistency check.
const checkKeyLen = 32

// maxBatch bounds the indices a peer may name in one new_key_batch.
const maxBatch = 4096

// batchCheck is the consistency tag of a batch: a one-time Poly1305 tag over
// the batch's material after its first 32 bytes, keyed with those 32 bytes.
// It reveals nothing about the material (the s half of the key is a fresh
// one-time pad) and differs between ends whose material differs.
func batchCheck(blocks []keystore.Block) ([]byte, bool) {
	total := 0
	for _, b := range blocks {
		total += b.Data.Len()
	}
	if total <= checkKeyLen {
		return nil, false
	}
	buf := make([]byte, 0, total)
	for _, b := range blocks {
		buf = append(buf, b.Data.Expose()...)
	}
	defer secret.Wipe(buf)
	return polyTag(buf[:checkKeyLen], buf[checkKeyLen:]), true
}

func wipeBlocks(bs []keystore.Block) {
	for i := range bs {
		bs[i].Data.Wipe()
	}
}

// confirmLoop (leader only) batches unconfirmed blocks and confirms them
// with the peer.
func (l *Link) confirmLoop(ctx context.Context) {
	if !l.leader {
		return
	}
	timer := time.NewTimer(l.o.BatchDelay)
	defer timer.Stop()
	backoff := l.o.RetryDelay
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wakeConfirm:
		case <-timer.C:
		}
		wait, err := l.confirmOnce(ctx)
		if err != nil {
			l.log.Debug("confirm batch", "err", err)
			wait = backoff
			backoff = min(2*backoff, 2*time.Second)
		} else {
			backoff = l.o.RetryDelay
		}
		if wait == 0 {
			poke(l.wakeConfirm)
			wait = l.o.BatchDelay
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// confirmOnce sends at most one batch. It returns how long to wait before
// the next attempt (0: at once).
func (l *Link) confirmOnce(ctx context.Context) (time.Duration, error) {
	list, err := l.o.Store.ListBlocks(ctx, l.o.ID, keystore.BlockUnconfirmed, l.o.BatchBlocks)
	if err != nil || len(list) == 0 {
		return l.o.BatchDelay, err
	}
	// Batches are what the link pays MAC keys for: wait for a full one, or
	// BatchDelay, unless the link has no usable material at all yet.
	if age := l.o.Now().Sub(list[0].Arrived); len(list) < l.o.BatchBlocks && age < l.o.BatchDelay && l.hasMaterial(ctx) {
		return l.o.BatchDelay - age, nil
	}
	indices := make([]uint64, len(list))
	for i, b := range list {
		indices[i] = b.Index
	}
	blocks, err := l.o.Store.GetBlocks(ctx, l.o.ID, indices)
	if err != nil {
		return 0, err
	}
	check, okCheck := batchCheck(blocks)
	wipeBlocks(blocks)
	if !okCheck || len(blocks) != len(indices) {
		_, err := l.o.Store.DiscardBlocks(ctx, l.o.ID, ranges(indices))
		return 0, err
	}
	id := make([]byte, 8)
	_, _ = readRand(l.o.Rand, id)
	req := kmsproto.NewKeyBatchReq{BatchID: hex.EncodeToString(id), Indices: indices, Check: check}
	var resp kmsproto.NewKeyBatchResp
	if err := l.call(ctx, kmsproto.NewKeyBatch, req, &resp); err != nil {
		return 0, err
	}
	return l.applyBatchResult(ctx, indices, resp)
}

func (l *Link) applyBatchResult(ctx context.Context, indices []uint64, resp kmsproto.NewKeyBatchResp) (time.Duration, error) {
	l.o.Observer.Batch(l.o.ID, resp.Result, len(indices))
	switch resp.Result {
	case kmsproto.BatchConfirmed:
		if err := l.o.Store.ConfirmBlocks(ctx, l.o.ID, indices, checkKeyLen); err != nil {
			return 0, err
		}
		l.o.Observer.InternalBytes(l.o.ID, checkKeyLen)
		poke(l.wakeSlots)
		return 0, nil
	case kmsproto.BatchMismatch:
		l.log.Warn("key batch mismatch between the two ends: batch discarded at both ends",
			"first_index", indices[0], "blocks", len(indices))
		_, err := l.o.Store.DiscardBlocks(ctx, l.o.ID, ranges(indices))
		return 0, err
	case kmsproto.BatchMissing:
		lost := intersect(indices, resp.Missing)
		l.log.Warn("blocks lost at the peer's QKD module: discarded at both ends", "blocks", len(lost))
		_, err := l.o.Store.DiscardBlocks(ctx, l.o.ID, ranges(lost))
		return 0, err
	case kmsproto.BatchPending:
		return l.o.BatchDelay / 4, nil
	}
	return l.o.BatchDelay, nil
}

// hasMaterial reports whether this link holds any confirmed material.
func (l *Link) hasMaterial(ctx context.Context) bool {
	st, err := l.o.Store.Stats(ctx, l.o.ID)
	return err != nil || st.ConfirmedBytes[0]+st.ConfirmedBytes[1] > 0
}

// handleBatch (follower) checks a batch against its own blocks.
func (l *Link) handleBatch(ctx context.Context, req kmsproto.NewKeyBatchReq) handlerResult {
	if len(req.Indices) == 0 || len(req.Indices) > maxBatch || len(req.Check) != 16 ||
		!slices.IsSorted(req.Indices) || hasDup(req.Indices) {
		return refuse(kmsproto.BadRequest, "bad batch")
	}
	blocks, err := l.o.Store.GetBlocks(ctx, l.o.ID, req.Indices)
	if err != nil {
		return refuse(kmsproto.Internal, "store error")
	}
	defer wipeBlocks(blocks)
	if res, done := l.batchMissing(ctx, req.Indices, blocks); done {
		return res
	}
	unconfirmed := 0
	for _, b := range blocks {
		if b.State == keystore.BlockUnconfirmed {
			unconfirmed++
		}
	}
	last := req.Indices[len(req.Indices)-1]
	if unconfirmed == 0 { // a retry of a batch confirmed before
		return ok(kmsproto.NewKeyBatchResp{Result: kmsproto.BatchConfirmed})
	}
	check, okCheck := batchCheck(blocks)
	if !okCheck || !tagEqual(check, req.Check) {
		l.log.Warn("key batch mismatch between the two ends: batch discarded at both ends",
			"first_index", req.Indices[0], "blocks", len(req.Indices))
		_, _ = l.o.Store.DiscardBlocks(ctx, l.o.ID, ranges(req.Indices))
		l.o.Observer.Batch(l.o.ID, kmsproto.BatchMismatch, len(req.Indices))
		l.discardStale(ctx, last)
		return ok(kmsproto.NewKeyBatchResp{Result: kmsproto.BatchMismatch})
	}
	if err := l.o.Store.ConfirmBlocks(ctx, l.o.ID, req.Indices, checkKeyLen); err != nil {
		return refuse(kmsproto.Internal, "store error")
	}
	l.o.Observer.Batch(l.o.ID, kmsproto.BatchConfirmed, len(req.Indices))
	l.o.Observer.InternalBytes(l.o.ID, checkKeyLen)
	l.discardStale(ctx, last)
	poke(l.wakeSlots)
	return ok(kmsproto.NewKeyBatchResp{Result: kmsproto.BatchConfirmed})
}

// batchMissing answers a batch naming blocks this end does not hold: lost
// ones (this end already saw a later index) are reported "missing", blocks
// not arrived yet "pending".
func (l *Link) batchMissing(ctx context.Context, indices []uint64, blocks []keystore.Block) (handlerResult, bool) {
	if len(blocks) == len(indices) {
		return handlerResult{}, false
	}
	have := make(map[uint64]bool, len(blocks))
	for _, b := range blocks {
		have[b.Index] = true
	}
	st, err := l.o.Store.Stats(ctx, l.o.ID)
	if err != nil {
		return refuse(kmsproto.Internal, "store error"), true
	}
	var lost []uint64
	for _, i := range indices {
		if !have[i] && st.HasIndex && st.MaxIndex > i {
			lost = append(lost, i)
		}
	}
	if len(lost) > 0 {
		l.o.Observer.Batch(l.o.ID, kmsproto.BatchMissing, len(lost))
		return ok(kmsproto.NewKeyBatchResp{Result: kmsproto.BatchMissing, Missing: lost}), true
	}
	return ok(kmsproto.NewKeyBatchResp{Result: kmsproto.BatchPending}), true
}

// discardStale drops this end's unconfirmed blocks up to last that the
// leader did not name: the leader confirms in index order, so it lacks them.
func (l *Link) discardStale(ctx context.Context, last uint64) {
	n, err := l.o.Store.DiscardBlocks(ctx, l.o.ID, []keystore.Range{{From: 0, To: last}})
	if err == nil && n > 0 {
		l.log.Warn("blocks lost at the leader's QKD module: discarded", "blocks", n)
	}
}

func tagEqual(a, b []byte) bool { return len(a) == 16 && subtle.ConstantTimeCompare(a, b) == 1 }

func hasDup(s []uint64) bool {
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			return true
		}
	}
	return false
}

// ranges turns sorted indices into inclusive ranges.
func ranges(idx []uint64) []keystore.Range {
	var out []keystore.Range
	for _, i := range idx {
		if n := len(out); n > 0 && out[n-1].To+1 == i {
			out[n-1].To = i
			continue
		}
		out = append(out, keystore.Range{From: i, To: i})
	}
	return out
}

func intersect(a, b []uint64) []uint64 {
	in := make(map[uint64]bool, len(b))
	for _, x := range b {
		in[x] = true
	}
	var out []uint64
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}
