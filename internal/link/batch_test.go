package link_test

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// outboxStore is the real store with a fault: failForget makes that many
// deletions of a stored key batch (outbox entries of type new_key_batch)
// fail, as a crash right after the batch's answer was applied would.
type outboxStore struct {
	keystore.Store
	failForget atomic.Int32
}

// failing reports whether a deletion of entry id is to fail.
func (s *outboxStore) failing(id string) bool {
	if !strings.HasPrefix(id, "new_key_batch:") {
		return false
	}
	for {
		n := s.failForget.Load()
		if n <= 0 {
			return false
		}
		if s.failForget.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

var errCrashed = errors.New("outboxStore: crashed before the entry was deleted")

func (s *outboxStore) SetKeysReady(ctx context.Context, ids []qkd.KeyID, outboxID string) error {
	if s.failing(outboxID) {
		return errCrashed
	}
	return s.Store.SetKeysReady(ctx, ids, outboxID)
}

func (s *outboxStore) AbortAllocation(ctx context.Context, outboxID string, ids []qkd.KeyID) error {
	if s.failing(outboxID) {
		return errCrashed
	}
	return s.Store.AbortAllocation(ctx, outboxID, ids)
}

// batchLog records the new_key_batch messages A sends: the request as
// sealed and its message number.
type batchLog struct {
	mu   sync.Mutex
	reqs []kmsproto.NewKeyBatchReq
	seqs []uint64
}

func (b *batchLog) tamper(tp kmsproto.Type, payload []byte) []byte {
	if tp != kmsproto.NewKeyBatch {
		return payload
	}
	h, ok := linktest.RequestHeader(payload)
	var req kmsproto.NewKeyBatchReq
	if !ok || kmsproto.Unmarshal(h.Body, &req) != nil {
		return payload
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, req)
	b.seqs = append(b.seqs, h.Seq)
	b.mu.Unlock()
	return payload
}

func (b *batchLog) sent() ([]kmsproto.NewKeyBatchReq, []uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.reqs), slices.Clone(b.seqs)
}

// addBlocks stores blocks first.. (data[i]) at one end directly, with an
// arrival time an hour ahead: a leader with material then waits for a
// full batch (4 blocks in these tests), so a test decides what a batch
// holds.
func addBlocks(t *testing.T, s keystore.Store, first uint64, data [][]byte, skip ...uint64) {
	t.Helper()
	for i, d := range data {
		idx := first + uint64(i)
		if slices.Contains(skip, idx) {
			continue
		}
		err := s.AddBlock(context.Background(), keystore.Block{Link: "A-B", Index: idx, State: keystore.BlockUnconfirmed,
			Data: secret.From(d), Remaining: len(d), Arrived: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func randomBlocks(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, size)
		_, _ = rand.Read(out[i])
	}
	return out
}

// confirmedPair makes a pair with sa as A's store (B on a memstore) whose
// blocks 0..7 are confirmed at both ends and their batch forgotten (its
// stored entry deleted: a later fault injected in sa meets a later batch).
func confirmedPair(t *testing.T, sa keystore.Store) *linktest.Pair {
	t.Helper()
	p := linktest.NewPair(t, linktest.Options{Logger: testLogger(t), Stores: func(testing.TB) (keystore.Store, keystore.Store) {
		return sa, memstore.New(memstore.Options{})
	}})
	p.Push(t, 8, 1024, nil)
	linktest.WaitFor(t, "blocks 0..7 confirmed", func() bool {
		return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Stats(t, p.SB).UnconfirmedBlocks == 0 &&
			outboxEmpty(t, p.SA)
	})
	return p
}

// withMaterial makes a pair whose blocks 0..7 are confirmed (so that the
// leader waits for full batches), A on an outboxStore.
func withMaterial(t *testing.T) (*linktest.Pair, *outboxStore, *batchLog) {
	t.Helper()
	sa := &outboxStore{Store: memstore.New(memstore.Options{})}
	p := confirmedPair(t, sa)
	log := &batchLog{}
	p.PA.SetTamper(log.tamper)
	return p, sa, log
}

// TestBatchFixedAtFirstSend: a batch the peer cannot answer yet
// ("pending"), or whose messages are lost, is sent again identical (same
// BatchID, indices and check tag; a lost message even as the same sealed
// bytes under the same number) although more blocks arrived between the
// tries; they go in the next batch.
func TestBatchFixedAtFirstSend(t *testing.T) {
	for _, tc := range []struct {
		name string
		// first ingests blocks 8..11 (data) so that the first batch waits:
		// at A only (B answers pending), or at both ends with the requests
		// lost; release lets it through.
		first   func(p *linktest.Pair, data [][]byte)
		release func(p *linktest.Pair, data [][]byte)
		sameSeq bool
	}{
		{"pending at the peer",
			func(p *linktest.Pair, data [][]byte) { addBlocks(t, p.SA, 8, data[:4]) },
			func(p *linktest.Pair, data [][]byte) { addBlocks(t, p.SB, 8, data) },
			false},
		{"requests lost",
			func(p *linktest.Pair, data [][]byte) {
				p.PA.DropRequests(kmsproto.NewKeyBatch, 1<<20)
				addBlocks(t, p.SA, 8, data[:4])
				addBlocks(t, p.SB, 8, data[:4])
			},
			func(p *linktest.Pair, data [][]byte) {
				addBlocks(t, p.SB, 12, data[4:])
				p.PA.DropRequests(kmsproto.NewKeyBatch, 0)
			},
			true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, log := withMaterial(t)
			data := randomBlocks(8, 1024)
			tc.first(p, data)
			linktest.WaitFor(t, "the first batch sent twice", func() bool {
				reqs, _ := log.sent()
				return len(reqs) >= 2
			})
			// More blocks arrive while the batch is retried.
			addBlocks(t, p.SA, 12, data[4:])
			linktest.WaitFor(t, "the first batch sent again after more blocks arrived", func() bool {
				reqs, _ := log.sent()
				return len(reqs) >= 4
			})
			tc.release(p, data)
			linktest.WaitFor(t, "blocks 8..15 confirmed at both ends", func() bool {
				return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Stats(t, p.SB).UnconfirmedBlocks == 0
			})
			reqs, seqs := log.sent()
			first := reqs[0]
			if want := []uint64{8, 9, 10, 11}; !slices.Equal(first.Indices, want) {
				t.Fatalf("first batch names %v, want %v", first.Indices, want)
			}
			n := slices.IndexFunc(reqs, func(r kmsproto.NewKeyBatchReq) bool { return r.BatchID != first.BatchID })
			if n < 4 {
				t.Fatalf("only %d sends of the first batch before the next one", n)
			}
			for i, r := range reqs[:n] {
				if diff := cmp.Diff(first, r); diff != "" {
					t.Fatalf("send %d of the first batch differs (-first +send):\n%s", i, diff)
				}
				if tc.sameSeq && seqs[i] != seqs[0] {
					t.Fatalf("send %d of a lost batch message has number %d, want the first's %d", i, seqs[i], seqs[0])
				}
			}
			if next := reqs[n]; !slices.Equal(next.Indices, []uint64{12, 13, 14, 15}) || string(next.Check) == string(first.Check) {
				t.Fatalf("the next batch names %v: want the blocks that arrived meanwhile, 12..15, with their own tag", next.Indices)
			}
			if a, b := linktest.Confirmed(t, p.SA), linktest.Confirmed(t, p.SB); a != b {
				t.Fatalf("confirmed bytes differ: A %d, B %d", a, b)
			}
		})
	}
}

// blockState returns the state of block idx of A-B in a store (0: absent).
func blockState(t *testing.T, s keystore.Store, idx uint64) keystore.BlockState {
	t.Helper()
	bs, err := s.GetBlocks(context.Background(), "A-B", []uint64{idx})
	if err != nil {
		t.Fatal(err)
	}
	for i := range bs {
		bs[i].Data.Wipe()
	}
	if len(bs) == 0 {
		return 0
	}
	return bs[0].State
}

// TestBatchMissingBurnsCheckKey: the peer lost block 9 of the batch
// 8..11. Both ends discard block 9 and the batch's first block 8, whose
// first 32 bytes keyed the check tag of a list that no longer exists: no
// later batch can use that key. The leader crashes right after applying
// the answer (its batch stays stored) and sends the same batch again as a
// new message: the peer, which burnt block 8 too, answers "missing" again
// and both ends still agree. Later batches never name 8 or 9.
func TestBatchMissingBurnsCheckKey(t *testing.T) {
	p, sa, log := withMaterial(t)
	sa.failForget.Store(1)
	data := randomBlocks(8, 1024)
	addBlocks(t, p.SB, 8, data, 9) // B lost 9 and has later ones: 9 is lost, not late
	addBlocks(t, p.SA, 8, data[:4])
	linktest.WaitFor(t, "the batch settled and forgotten", func() bool {
		reqs, _ := log.sent()
		return outboxEmpty(t, p.SA) && len(reqs) >= 2 && blockState(t, p.SA, 8) == 0
	})
	reqs, seqs := log.sent()
	if diff := cmp.Diff(reqs[0], reqs[1]); diff != "" || seqs[0] == seqs[1] {
		t.Fatalf("after the crash the batch went as numbers %d, %d; want the same batch in a new message (-first +again):\n%s", seqs[0], seqs[1], diff)
	}
	for _, idx := range []uint64{8, 9} {
		if a, b := blockState(t, p.SA, idx), blockState(t, p.SB, idx); a != 0 || b != 0 {
			t.Errorf("block %d held in state A %d, B %d; want discarded at both ends", idx, a, b)
		}
	}
	for _, idx := range []uint64{10, 11} {
		if a, b := blockState(t, p.SA, idx), blockState(t, p.SB, idx); a != keystore.BlockUnconfirmed || b != keystore.BlockUnconfirmed {
			t.Errorf("block %d in state A %d, B %d; want unconfirmed at both ends, for the next batch", idx, a, b)
		}
	}
	// The next batch starts at 10 with a check key of its own.
	for i, d := range data[4:] {
		if err := p.A.Ingest(context.Background(), 12+uint64(i), secret.From(d)); err != nil {
			t.Fatal(err)
		}
	}
	linktest.WaitFor(t, "blocks 10..13 confirmed at both ends", func() bool {
		for _, idx := range []uint64{10, 11, 12, 13} {
			if blockState(t, p.SA, idx) != keystore.BlockConfirmed || blockState(t, p.SB, idx) != keystore.BlockConfirmed {
				return false
			}
		}
		return true
	})
	reqs, _ = log.sent()
	for _, r := range reqs[2:] {
		if slices.Contains(r.Indices, 8) || slices.Contains(r.Indices, 9) {
			t.Fatalf("a later batch names %v", r.Indices)
		}
	}
	if a, b := linktest.Confirmed(t, p.SA), linktest.Confirmed(t, p.SB); a != b {
		t.Fatalf("confirmed bytes differ: A %d, B %d", a, b)
	}
}

func outboxEmpty(t *testing.T, s keystore.Store) bool {
	t.Helper()
	box, err := s.PendingOutbox(context.Background(), "A-B")
	if err != nil {
		t.Fatal(err)
	}
	return len(box) == 0
}

// TestBatchResentAfterRestart: a leader restarted while its batch waits
// for the peer sends the stored batch again as it was, although more
// blocks arrived meanwhile; it never builds another over those blocks.
func TestBatchResentAfterRestart(t *testing.T) {
	p, _, log := withMaterial(t)
	data := randomBlocks(8, 1024)
	addBlocks(t, p.SA, 8, data[:4]) // B has none of them yet: pending
	linktest.WaitFor(t, "the batch sent", func() bool {
		reqs, _ := log.sent()
		return len(reqs) >= 1
	})
	p.PA.Down.Store(true) // nothing goes out while A restarts
	p.Restart(t, "A")
	before, _ := log.sent()
	addBlocks(t, p.SA, 12, data[4:])
	p.PA.Down.Store(false)
	linktest.WaitFor(t, "the restarted leader's first batch", func() bool {
		reqs, _ := log.sent()
		return len(reqs) > len(before)
	})
	addBlocks(t, p.SB, 8, data)
	linktest.WaitFor(t, "blocks 8..15 confirmed at both ends", func() bool {
		return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Stats(t, p.SB).UnconfirmedBlocks == 0
	})
	reqs, _ := log.sent()
	n := slices.IndexFunc(reqs, func(r kmsproto.NewKeyBatchReq) bool { return r.BatchID != before[0].BatchID })
	if n <= len(before) {
		t.Fatalf("the restarted leader sent batch %+v first, want the stored %+v", reqs[len(before)], before[0])
	}
	for i, r := range reqs[:n] {
		if diff := cmp.Diff(before[0], r); diff != "" {
			t.Fatalf("send %d of the batch differs (-first +send):\n%s", i, diff)
		}
	}
	if !slices.Equal(reqs[n].Indices, []uint64{12, 13, 14, 15}) {
		t.Fatalf("the next batch names %v, want 12..15", reqs[n].Indices)
	}
	if a, b := linktest.Confirmed(t, p.SA), linktest.Confirmed(t, p.SB); a != b {
		t.Fatalf("confirmed bytes differ: A %d, B %d", a, b)
	}
}
