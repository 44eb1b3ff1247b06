package link

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// checkKeyLen is the material each batch spends on its consistency check.
const checkKeyLen = 32

// maxBatch bounds the indices a peer may name in one new_key_batch.
const maxBatch = 4096

// backlogBatches: a leader with a backlog of unconfirmed blocks puts up to
// this many batches' worth (Options.BatchBlocks each) in one new_key_batch.
const backlogBatches = 8

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

// fixedBatch is a new_key_batch as it was first sent. Its check tag is
// a one-time MAC of exactly its block list under the first block's first
// 32 bytes: sent with another list, that key would tag two messages. So a
// batch is fixed when it is built and sent again, identical (same BatchID,
// indices and tag), until a definite answer (confirmed, mismatch,
// missing); more blocks that arrive meanwhile wait for the next batch.
// It is stored as an outbox entry of type new_key_batch before it is
// first sent, so that a restarted leader sends it again instead of
// building another; the outbox worker leaves such entries alone.
type fixedBatch struct {
	req   kmsproto.NewKeyBatchReq
	entry string // its outbox entry
}

// batchEntryPrefix starts the outbox ID of a batch (then its BatchID).
const batchEntryPrefix = "new_key_batch:"

// confirmOnce sends at most one batch. It returns how long to wait before
// the next attempt (0: at once).
func (l *Link) confirmOnce(ctx context.Context) (time.Duration, error) {
	if !l.batchLoaded {
		b, err := l.loadBatch(ctx)
		if err != nil {
			return 0, err
		}
		l.batch, l.batchLoaded = b, true
	}
	if l.batch == nil {
		b, wait, err := l.buildBatch(ctx)
		if err != nil || b == nil {
			return wait, err
		}
		l.batch = b
	}
	var resp kmsproto.NewKeyBatchResp
	err := l.call(ctx, kmsproto.NewKeyBatch, l.batch.req, &resp)
	if codeOf(err) == kmsproto.BadRequest {
		// The peer refused the batch as malformed: it changed nothing
		// there. Its tag went out, so its blocks go here; the peer drops
		// its copies as stale with the next batch.
		l.log.Error("peer refused a key batch as malformed: its blocks are discarded", "err", err)
		return l.settleBatch(ctx, l.batch.req.Indices)
	}
	if err != nil {
		return 0, err // the identical batch goes again
	}
	return l.applyBatchResult(ctx, resp)
}

// buildBatch fixes the next batch of unconfirmed blocks and stores it; nil
// with the time to wait if none is due.
func (l *Link) buildBatch(ctx context.Context) (*fixedBatch, time.Duration, error) {
	// A backlog (blocks arrive faster than one batch per round trip
	// confirms them) goes in bigger batches, up to backlogBatches times
	// BatchBlocks: one batch is in flight at a time, so its size is
	// what keeps confirmation up with the module.
	list, err := l.o.Store.ListBlocks(ctx, l.o.ID, keystore.BlockUnconfirmed, min(backlogBatches*l.o.BatchBlocks, maxBatch))
	if err != nil || len(list) == 0 {
		if err == nil {
			l.unbatched.Store(0)
		}
		return nil, l.o.BatchDelay, err
	}
	l.unbatched.Store(int64(len(list)))
	// Batches are what the link pays MAC keys (and store transactions)
	// for: wait for a full one, or the batch delay, unless the link has no
	// usable material at all yet.
	if age, delay := l.o.Now().Sub(list[0].Arrived), l.batchDelay(ctx); len(list) < l.o.BatchBlocks && age < delay {
		return nil, delay - age, nil
	}
	indices := make([]uint64, len(list))
	for i, b := range list {
		indices[i] = b.Index
	}
	blocks, err := l.o.Store.GetBlocks(ctx, l.o.ID, indices)
	if err != nil {
		return nil, 0, err
	}
	check, okCheck := batchCheck(blocks)
	wipeBlocks(blocks)
	if !okCheck || len(blocks) != len(indices) {
		_, err := l.o.Store.DiscardBlocks(ctx, l.o.ID, ranges(indices))
		return nil, 0, err
	}
	id := make([]byte, 8)
	_, _ = readRand(l.o.Rand, id)
	b := &fixedBatch{req: kmsproto.NewKeyBatchReq{BatchID: hex.EncodeToString(id), Indices: indices, Check: check}}
	if err := l.storeBatch(ctx, b); err != nil {
		return nil, 0, err
	}
	return b, 0, nil
}

// storeBatch stores b as an outbox entry of type new_key_batch, before
// its tag first leaves the node (the send's Store.Sync makes it durable):
// a restarted leader sends it again, identical, instead of building
// another batch whose check key would tag a second block list.
func (l *Link) storeBatch(ctx context.Context, b *fixedBatch) error {
	body, err := kmsproto.Marshal(b.req)
	if err != nil {
		return err
	}
	payload, err := kmsproto.Marshal(outboxEntry{Type: kmsproto.NewKeyBatch, Body: body})
	if err != nil {
		return err
	}
	id := batchEntryPrefix + b.req.BatchID
	err = l.o.Store.Allocate(ctx, keystore.Allocation{Link: l.o.ID,
		Outbox: &keystore.Outbox{ID: id, Link: l.o.ID, Payload: payload, Created: l.o.Now()}})
	if err != nil {
		return fmt.Errorf("link %s: store key batch: %w", l.o.ID, err)
	}
	b.entry = id
	return nil
}

// loadBatch returns the batch a previous run of this leader stored and did
// not settle, to be sent again as it was (nil if none). A follower has
// none.
func (l *Link) loadBatch(ctx context.Context) (*fixedBatch, error) {
	box, err := l.o.Store.PendingOutbox(ctx, l.o.ID)
	if err != nil {
		return nil, err
	}
	for _, o := range box {
		if entryType(o.Payload) != kmsproto.NewKeyBatch {
			continue
		}
		var e outboxEntry
		var req kmsproto.NewKeyBatchReq
		if kmsproto.Unmarshal(o.Payload, &e) != nil || kmsproto.Unmarshal(e.Body, &req) != nil || len(req.Indices) == 0 {
			l.log.Error("corrupt key batch in the outbox: dropped", "id", o.ID)
			if err := l.o.Store.AbortAllocation(ctx, o.ID, nil); err != nil {
				return nil, err
			}
			continue
		}
		l.log.Info("sending the key batch of before the restart again", "batch", req.BatchID, "blocks", len(req.Indices))
		return &fixedBatch{req: req, entry: o.ID}, nil
	}
	return nil, nil
}

// forgetBatch ends the batch in flight once its answer is applied: its
// stored entry goes.
func (l *Link) forgetBatch(ctx context.Context) error {
	if err := l.o.Store.SetKeysReady(ctx, nil, l.batch.entry); err != nil {
		return err
	}
	l.batch = nil
	return nil
}

// settleBatch discards the named blocks (those of the batch that the
// answer tells to go) and ends the batch.
func (l *Link) settleBatch(ctx context.Context, discard []uint64) (time.Duration, error) {
	if len(discard) > 0 {
		if _, err := l.o.Store.DiscardBlocks(ctx, l.o.ID, ranges(discard)); err != nil {
			return 0, err
		}
	}
	return 0, l.forgetBatch(ctx)
}

// applyBatchResult applies the peer's verified answer to the batch in
// flight. Applying it twice (a restart before the batch was forgotten, and
// the peer's answer to the batch sent again) does the same.
func (l *Link) applyBatchResult(ctx context.Context, resp kmsproto.NewKeyBatchResp) (time.Duration, error) {
	indices := l.batch.req.Indices
	switch resp.Result {
	case kmsproto.BatchConfirmed:
		err := l.o.Store.ConfirmBlocks(ctx, l.o.ID, indices, checkKeyLen)
		if errors.Is(err, qkd.ErrNotFound) {
			l.log.Error("blocks of a key batch the peer confirmed are gone here: the rest is discarded", "first_index", indices[0])
			return l.settleBatch(ctx, indices)
		}
		if err != nil {
			return 0, err
		}
		l.o.Observer.Batch(l.o.ID, resp.Result, len(indices))
		l.o.Observer.InternalBytes(l.o.ID, checkKeyLen)
		poke(l.wakeSlots)
		return 0, l.forgetBatch(ctx)
	case kmsproto.BatchMismatch:
		l.log.Warn("key batch mismatch between the two ends: batch discarded at both ends",
			"first_index", indices[0], "blocks", len(indices))
		l.o.Observer.Batch(l.o.ID, resp.Result, len(indices))
		return l.settleBatch(ctx, indices)
	case kmsproto.BatchMissing:
		// The check key (the first block's first 32 bytes) tagged a list
		// that no longer exists: the first block goes too, at both ends
		// (handleBatch), so no later batch can use that key again.
		lost := intersect(indices, resp.Missing)
		l.log.Warn("blocks lost at the peer's QKD module: discarded at both ends, with the batch's first block (its check key is spent)",
			"blocks", len(lost))
		gone := withFirst(indices[0], lost)
		l.o.Observer.Batch(l.o.ID, resp.Result, len(gone))
		return l.settleBatch(ctx, gone)
	case kmsproto.BatchPending:
		return l.o.BatchDelay / 4, nil // the same batch goes again
	}
	return l.o.BatchDelay, nil
}

// withFirst returns the sorted indices lost with first added.
func withFirst(first uint64, lost []uint64) []uint64 {
	if slices.Contains(lost, first) {
		return lost
	}
	out := append([]uint64{first}, lost...)
	slices.Sort(out)
	return out
}

// batchDelay is how long a batch may wait to be full: not at all while
// either half of the link (each end allocates from its own block parity)
// holds no confirmed material, BatchDelay while one holds less than
// MaterialLowWater/2 bytes, IdleBatchDelay above. A young link whose
// first block is confirmed thus confirms the next at once: the other
// end's half has nothing yet.
func (l *Link) batchDelay(ctx context.Context) time.Duration {
	st, err := l.o.Store.Stats(ctx, l.o.ID)
	switch have := min(st.ConfirmedBytes[0], st.ConfirmedBytes[1]); {
	case err != nil:
		return l.o.BatchDelay
	case have == 0:
		return 0
	case 2*have < l.o.MaterialLowWater:
		return l.o.BatchDelay
	}
	return l.o.IdleBatchDelay
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
		// The batch's check key (its first block's first 32 bytes) tagged
		// a list that no longer exists: its block goes at both ends (the
		// leader discards it on this answer). A batch sent again names it
		// as missing too, so the leader does the same again.
		if _, err := l.o.Store.DiscardBlocks(ctx, l.o.ID, []keystore.Range{{From: indices[0], To: indices[0]}}); err != nil {
			return refuse(kmsproto.Internal, "store error"), true
		}
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
