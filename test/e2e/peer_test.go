package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/sqlite"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/peer"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// tap is a link.Transport over a real peer.Client that records what it
// sends and may tamper with it.
type tap struct {
	c      *peer.Client
	mu     sync.Mutex
	last   []byte // the last request sent
	reply  []byte // and its reply
	tamper func([]byte) []byte
}

func (t *tap) Call(ctx context.Context, mt kmsproto.Type, p []byte) ([]byte, error) {
	t.mu.Lock()
	if t.tamper != nil {
		p = t.tamper(bytes.Clone(p))
		t.tamper = nil
	}
	t.last = bytes.Clone(p)
	t.mu.Unlock()
	out, err := t.c.Call(ctx, mt, p)
	t.mu.Lock()
	t.reply = bytes.Clone(out)
	t.mu.Unlock()
	return out, err
}

func (t *tap) Ping(ctx context.Context) error { return t.c.Ping(ctx) }

// macCounter counts MAC failures (the "report").
type macCounter struct{ n atomic.Int64 }

func (m *macCounter) MACFailure(qkd.LinkID, string)             { m.n.Add(1) }
func (m *macCounter) Message(qkd.LinkID, kmsproto.Type, string) {}
func (m *macCounter) Batch(qkd.LinkID, string, int)             {}
func (m *macCounter) InternalBytes(qkd.LinkID, int)             {}
func (m *macCounter) PSKTag(qkd.LinkID)                         {}

type coapEnds struct {
	a, b     *link.Link
	sa, sb   keystore.Store
	ta       *tap // A's transport to B
	bMACFail *macCounter
}

// coapLinks runs the two ends of link A-B over real CoAP (network "tcp" or
// "udp") on loopback, each with its own SQLite store.
func coapLinks(t *testing.T, network string) *coapEnds {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	psk := make([]byte, 2*64*keystore.SlotSize)
	_, _ = rand.Read(psk)
	e := &coapEnds{bMACFail: &macCounter{}}
	var err error
	if e.sa, err = sqlite.Open(ctx, sqlite.Options{Path: dir + "/a.db"}); err != nil {
		t.Fatal(err)
	}
	if e.sb, err = sqlite.Open(ctx, sqlite.Options{Path: dir + "/b.db"}); err != nil {
		t.Fatal(err)
	}
	serve := func(m *link.Mux) string {
		r := coapx.NewRouter(nil)
		h := func(ctx context.Context, mt kmsproto.Type, p []byte) ([]byte, error) {
			out, err := m.Handle(ctx, mt, p)
			switch {
			case errors.Is(err, link.ErrUnauthenticated):
				return nil, peer.ErrUnauthenticated
			case errors.Is(err, link.ErrBadRequest):
				return nil, peer.ErrBadRequest
			}
			return out, err
		}
		if err := peer.Register(r, h, nil); err != nil {
			t.Fatal(err)
		}
		s := coapx.NewServer(r.Mux(), nil)
		t.Cleanup(s.Shutdown)
		if network == "udp" {
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = s.ServeUDP(pc) }()
			return pc.LocalAddr().String()
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.ServeTCP(l) }()
		return l.Addr().String()
	}
	muxA, muxB := &lateMux{}, &lateMux{}
	addrA, addrB := serve(&muxA.m), serve(&muxB.m)
	dial := func(addr string) *peer.Client {
		c, err := peer.Dial(ctx, network, addr, peer.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	e.ta = &tap{c: dial(addrB)}
	tb := &tap{c: dial(addrA)}
	mk := func(self, peerID qkd.NodeID, st keystore.Store, tr link.Transport, obs link.Observer) *link.Link {
		l, err := link.New(link.Options{ID: "A-B", Self: self, Peer: peerID, Store: st, Transport: tr,
			PSK: secret.PSK{Bytes: secret.From(psk)}, BatchBlocks: 4, BatchDelay: 50 * time.Millisecond,
			StatusInterval: time.Hour, Observer: obs,
			LocalSAE: func(s qkd.SAEID) bool { return string(s) == "SAE_"+string(self)+"1" }})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Init(ctx); err != nil {
			t.Fatal(err)
		}
		return l
	}
	e.a = mk("A", "B", e.sa, e.ta, nil)
	e.b = mk("B", "A", e.sb, tb, e.bMACFail)
	*muxA = lateMux{m: *link.NewMux([]*link.Link{e.a})}
	*muxB = lateMux{m: *link.NewMux([]*link.Link{e.b})}
	lctx, cancel := context.WithCancel(ctx)
	wa, wb := e.a.Start(lctx), e.b.Start(lctx)
	t.Cleanup(func() { cancel(); wa.Wait(); wb.Wait(); e.sa.Close(); e.sb.Close() })
	return e
}

// lateMux lets a server start before its links exist.
type lateMux struct{ m link.Mux }

func (e *coapEnds) stats(t *testing.T, s keystore.Store) keystore.LinkStats {
	t.Helper()
	st, err := s.Stats(context.Background(), "A-B")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// push gives both ends n blocks; mutateB may change B's copy.
func (e *coapEnds) push(t *testing.T, from, n int, mutateB func(i int, b []byte)) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; i++ {
		blk := make([]byte, 2048)
		_, _ = rand.Read(blk)
		bb := bytes.Clone(blk)
		if mutateB != nil {
			mutateB(i, bb)
		}
		if err := e.a.Ingest(ctx, uint64(i), secret.From(blk)); err != nil {
			t.Fatal(err)
		}
		if err := e.b.Ingest(ctx, uint64(i), secret.From(bb)); err != nil {
			t.Fatal(err)
		}
	}
}

func confirmedBytes(st keystore.LinkStats) int64 { return st.ConfirmedBytes[0] + st.ConfirmedBytes[1] }

// TestPeerMessagesOverCoAP: over real CoAP (TCP and UDP) a flipped bit is
// rejected and reported with no change to keys or blocks, a replayed
// message is rejected, and a block mismatch discards that batch at both ends.
func TestPeerMessagesOverCoAP(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test skipped under -short")
	}
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			e := coapLinks(t, network)
			ctx := context.Background()
			e.push(t, 0, 8, nil)
			waitFor(t, 10*time.Second, "first batches confirmed", func() bool {
				return e.stats(t, e.sa).UnconfirmedBlocks == 0 && confirmedBytes(e.stats(t, e.sb)) > 0
			})
			ids, err := e.a.Reserve(ctx, "SAE_A1", []qkd.SAEID{"SAE_B1"}, 256, 4, time.Hour)
			if err != nil {
				t.Fatalf("Reserve = %v", err)
			}

			// 1. A flipped bit in a peer message: rejected, reported, no state change.
			before := e.stats(t, e.sb)
			e.ta.mu.Lock()
			e.ta.tamper = func(p []byte) []byte { p[len(p)-20] ^= 0x10; return p }
			e.ta.mu.Unlock()
			_, err = e.a.DeleteAtPeer(ctx, ids, "tampered")
			if !errors.Is(err, qkd.ErrPeerUnavailable) && !errors.Is(err, link.ErrUnauthenticated) {
				t.Fatalf("tampered delete_keys = %v, want a rejection", err)
			}
			if got := e.bMACFail.n.Load(); got < 1 {
				t.Fatalf("MAC failures reported at B = %d, want ≥ 1", got)
			}
			after := e.stats(t, e.sb)
			if after.KeysReady != before.KeysReady || confirmedBytes(after) != confirmedBytes(before) {
				t.Fatalf("a tampered message changed B: %+v → %+v", before, after)
			}
			keys, err := e.sb.TakeByID(ctx, keystore.TakeRequest{IDs: ids[:1], Master: "SAE_A1", Caller: "SAE_B1", Now: time.Now()})
			if err != nil || len(keys) != 1 {
				t.Fatalf("B lost a reserved key to a tampered delete_keys: %v", err)
			}

			// 2. A replayed (authentic) message: detected and harmless. It
			// is answered from B's reply cache with the very bytes of the
			// first reply (what a sender that lost that reply needs), and
			// changes nothing; other bytes under the used number are
			// rejected.
			if _, err := e.a.DeleteAtPeer(ctx, ids[1:2], "honest"); err != nil {
				t.Fatalf("honest delete_keys = %v", err)
			}
			e.ta.mu.Lock()
			replay, first := e.ta.last, e.ta.reply
			e.ta.mu.Unlock()
			before = e.stats(t, e.sb)
			again, err := e.ta.c.Call(ctx, kmsproto.DeleteKeys, replay)
			if err != nil || !bytes.Equal(again, first) {
				t.Fatalf("replayed delete_keys = %x, %v; want the first reply %x", again, err, first)
			}
			if after := e.stats(t, e.sb); after.KeysReady != before.KeysReady || confirmedBytes(after) != confirmedBytes(before) {
				t.Fatalf("a replayed message changed B: %+v → %+v", before, after)
			}
			altered := bytes.Clone(replay)
			altered[len(altered)-20] ^= 0x10
			if _, err := e.ta.c.Call(ctx, kmsproto.DeleteKeys, altered); !errors.Is(err, peer.ErrUnauthenticated) {
				t.Fatalf("other bytes under a used number = %v, want 4.01 Unauthorized", err)
			}

			// 3. A block mismatch: that batch is discarded at both ends.
			confA, confB := confirmedBytes(e.stats(t, e.sa)), confirmedBytes(e.stats(t, e.sb))
			e.push(t, 8, 4, func(i int, b []byte) {
				if i == 9 {
					b[1000] ^= 0x01
				}
			})
			waitFor(t, 10*time.Second, "mismatched batch handled", func() bool {
				return e.stats(t, e.sa).UnconfirmedBlocks == 0 && e.stats(t, e.sb).UnconfirmedBlocks == 0
			})
			// The batch holding block 9 is discarded at both ends. On a
			// loaded machine the four blocks may go in more than one batch
			// (a batch waits at most BatchDelay), so the others may be
			// confirmed, but never block 9's batch: at most three of the
			// four blocks (all four: 4 × 2048 bytes less a check key).
			if a, b := confirmedBytes(e.stats(t, e.sa)), confirmedBytes(e.stats(t, e.sb)); a-confA >= 3*2048 || b-confB >= 3*2048 {
				t.Fatalf("mismatched batch was confirmed: A %d→%d, B %d→%d", confA, a, confB, b)
			}
			// The link goes on: the next batch is confirmed at both ends.
			e.push(t, 12, 4, nil)
			waitFor(t, 10*time.Second, "next batch confirmed", func() bool {
				return confirmedBytes(e.stats(t, e.sa)) > confA && confirmedBytes(e.stats(t, e.sb)) > confB
			})
		})
	}
}
