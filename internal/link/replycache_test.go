package link_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
)

// countingObserver counts the results of messages per type.
type countingObserver struct {
	mu sync.Mutex
	n  map[string]int // guarded by mu: "type/result" → count
}

func (o *countingObserver) Message(_ qkd.LinkID, t kmsproto.Type, result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[string(t)+"/"+result]++
}

func (o *countingObserver) count(t kmsproto.Type, result string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[string(t)+"/"+result]
}

func (*countingObserver) MACFailure(qkd.LinkID, string) {}
func (*countingObserver) Batch(qkd.LinkID, string, int) {}
func (*countingObserver) InternalBytes(qkd.LinkID, int) {}
func (*countingObserver) PSKTag(qkd.LinkID)             {}

// seqOf returns the message number of a sealed request.
func seqOf(t *testing.T, payload []byte) uint64 {
	t.Helper()
	h, ok := linktest.RequestHeader(payload)
	if !ok {
		t.Fatal("request does not decode")
	}
	return h.Seq
}

// TestReplyCache: a request whose reply is lost is sent again as the
// identical message under its number; the peer answers it from its reply
// cache: the request ran once (delete_keys reports the key it deleted the
// first time), and it took one message number, one MAC slot. Other bytes
// under the used number are rejected. A peer that restarted (its cache is
// lost) answers SeqGone, and the request goes again under a new number.
func TestReplyCache(t *testing.T) {
	for _, m := range macModes {
		t.Run(m.name, func(t *testing.T) {
			obsB := &countingObserver{}
			o := m.o
			o.Logger, o.Observers = testLogger(t), map[qkd.NodeID]link.Observer{"B": obsB}
			p := linktest.NewPair(t, o)
			p.Push(t, 16, 1024, nil)
			linktest.WaitFor(t, "material", func() bool { return linktest.Stats(t, p.SA).ConfirmedBytes[0] > 4096 })
			ctx := context.Background()
			waitInitialPolls(t, p)
			ids, err := p.A.Reserve(ctx, masterA, slavesB, 256, 2, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			linktest.WaitFor(t, "A's outbox idle", func() bool { return outboxIdle(t, p.SA) })

			sent0, answered0 := p.PA.Numbers()
			p.PA.DropReplies(kmsproto.DeleteKeys, 1)
			if _, err := p.A.DeleteAtPeer(ctx, ids[:1], "test"); !errors.Is(err, qkd.ErrPeerUnavailable) {
				t.Fatalf("delete_keys with its reply lost = %v, want qkd.ErrPeerUnavailable", err)
			}
			first := bytes.Clone(p.PA.LastOf(kmsproto.DeleteKeys))
			n, err := p.A.DeleteAtPeer(ctx, ids[:1], "test")
			if err != nil || n != 1 {
				t.Fatalf("delete_keys again = %d deleted, %v; want the first run's answer, 1", n, err)
			}
			if again := p.PA.LastOf(kmsproto.DeleteKeys); !bytes.Equal(again, first) {
				t.Fatalf("the retry is another message (number %d, first %d), want the identical bytes", seqOf(t, again), seqOf(t, first))
			}
			if got := obsB.count(kmsproto.DeleteKeys, "retry_answered"); got != 1 {
				t.Fatalf("B answered %d delete_keys from its reply cache, want 1", got)
			}
			if sent, answered := p.PA.Numbers(); sent-sent0 != 1 || answered-answered0 != 1 {
				t.Fatalf("A used %d message numbers (%d answered) for one request sent twice, want 1", sent-sent0, answered-answered0)
			}
			if st := linktest.Stats(t, p.SB); st.KeysReady != 1 {
				t.Fatalf("B holds %d ready keys, want 1", st.KeysReady)
			}
			// Other bytes under the used number: rejected, nothing runs.
			other := bytes.Clone(first)
			other[len(other)-1] ^= 0x01
			if _, err := p.PA.To.Handle(ctx, kmsproto.DeleteKeys, other); !errors.Is(err, link.ErrUnauthenticated) {
				t.Fatalf("other bytes under a used number = %v, want link.ErrUnauthenticated", err)
			}

			// The peer restarts and forgets its replies.
			p.PA.DropReplies(kmsproto.DeleteKeys, 1)
			if _, err := p.A.DeleteAtPeer(ctx, ids[1:], "test"); !errors.Is(err, qkd.ErrPeerUnavailable) {
				t.Fatalf("delete_keys with its reply lost = %v, want qkd.ErrPeerUnavailable", err)
			}
			lost := bytes.Clone(p.PA.LastOf(kmsproto.DeleteKeys))
			p.Restart(t, "B")
			gone, err := p.PA.To.Handle(ctx, kmsproto.DeleteKeys, lost)
			if err != nil {
				t.Fatalf("a used number after the restart = %v, want a SeqGone notice", err)
			}
			if g, err := kmsproto.DecodeSeqGone(gone); err != nil || g.Seq != seqOf(t, lost) {
				t.Fatalf("answer to a used number after the restart: %+v, %v; want SeqGone for %d", g, err, seqOf(t, lost))
			}
			n, err = p.A.DeleteAtPeer(ctx, ids[1:], "test")
			if err != nil || n != 0 {
				t.Fatalf("delete_keys after the peer's restart = %d, %v; want 0 (deleted the first time), nil", n, err)
			}
			if again := p.PA.LastOf(kmsproto.DeleteKeys); seqOf(t, again) == seqOf(t, lost) {
				t.Fatalf("after SeqGone the request went again under the same number %d", seqOf(t, lost))
			}
			if st := linktest.Stats(t, p.SB); st.KeysReady != 0 {
				t.Fatalf("B holds %d ready keys, want 0", st.KeysReady)
			}
		})
	}
}
