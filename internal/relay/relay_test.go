package relay_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
	"github.com/qkms/qkms/internal/secret"
)

// chain is nodes N0…Nk joined by links "Ni-Nj" (newChain: a chain
// N0—N1—…—Nk), each node with a memstore, its links and a relay engine;
// SAE_i sits at Ni.
type chain struct {
	ids     []qkd.NodeID
	edges   [][2]int
	stores  []keystore.Store
	engines []*relay.Engine
	links   [][]*link.Link            // per node
	pipes   map[string]*linktest.Pipe // "from>to"
	macFail []*macCounter             // per node
	index   uint64
}

func sae(i int) qkd.SAEID { return qkd.SAEID(fmt.Sprintf("SAE_%d", i)) }

func newChain(t testing.TB, k int) *chain {
	t.Helper()
	var edges [][2]int
	for i := 0; i < k; i++ {
		edges = append(edges, [2]int{i, i + 1})
	}
	return newGraph(t, k+1, edges)
}

// macCounter counts the MAC failures a node's links saw.
type macCounter struct {
	n atomic.Int64
}

func (m *macCounter) MACFailure(qkd.LinkID, string)             { m.n.Add(1) }
func (m *macCounter) Message(qkd.LinkID, kmsproto.Type, string) {}
func (m *macCounter) Batch(qkd.LinkID, string, int)             {}
func (m *macCounter) InternalBytes(qkd.LinkID, int)             {}
func (m *macCounter) PSKTag(qkd.LinkID)                         {}

// newGraph starts nodes N0…N(n-1) joined by the given links (i < j).
func newGraph(t testing.TB, n int, edges [][2]int) *chain {
	t.Helper()
	return newGraphWith(t, n, edges, nil)
}

// newGraphWith is newGraph with opt applied to each node's engine options.
func newGraphWith(t testing.TB, n int, edges [][2]int, opt func(i int, o *relay.Options)) *chain {
	t.Helper()
	c := &chain{pipes: map[string]*linktest.Pipe{}, edges: edges}
	for i := 0; i < n; i++ {
		c.ids = append(c.ids, qkd.NodeID(fmt.Sprintf("N%d", i)))
		c.stores = append(c.stores, memstore.New(memstore.Options{}))
		c.links = append(c.links, nil)
		c.macFail = append(c.macFail, &macCounter{})
	}
	home := map[qkd.SAEID]qkd.NodeID{}
	for i, id := range c.ids {
		home[sae(i)] = id
	}
	fwd := make([]*late, n)
	for i := range fwd {
		fwd[i] = &late{}
	}
	muxes := make([][]*link.Link, n)
	ctx, cancel := context.WithCancel(context.Background())
	var wgs []*sync.WaitGroup
	for _, ed := range edges {
		psk := make([]byte, 2*64*keystore.SlotSize)
		_, _ = rand.Read(psk)
		id := qkd.LinkID(fmt.Sprintf("%s-%s", c.ids[ed[0]], c.ids[ed[1]]))
		for _, end := range [][2]int{{ed[0], ed[1]}, {ed[1], ed[0]}} {
			self, peer := end[0], end[1]
			p := &linktest.Pipe{}
			c.pipes[fmt.Sprintf("%d>%d", self, peer)] = p
			l, err := link.New(link.Options{ID: id, Self: c.ids[self], Peer: c.ids[peer], Store: c.stores[self], Transport: p,
				PSK: secret.PSK{Bytes: secret.From(psk)}, BatchBlocks: 4, BatchDelay: 20 * time.Millisecond,
				SlotLowWater: 8, SlotRefill: 16, RetryDelay: 5 * time.Millisecond, StatusInterval: time.Hour,
				LocalSAE: func(s qkd.SAEID) bool { return home[s] == c.ids[self] }, Forwarder: fwd[self], Observer: c.macFail[self]})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Init(ctx); err != nil {
				t.Fatal(err)
			}
			c.links[self] = append(c.links[self], l)
			muxes[self] = append(muxes[self], l)
		}
	}
	for i := range c.ids {
		o := relay.Options{Node: c.ids[i], Store: c.stores[i], Links: c.links[i],
			LocalSAE: func(s qkd.SAEID) bool { return home[s] == c.ids[i] }}
		if opt != nil {
			opt(i, &o)
		}
		e := relay.New(o)
		c.engines = append(c.engines, e)
	}
	// Wire pipes to the peers' muxes and the late forwarders to the engines.
	for key, p := range c.pipes {
		var from, to int
		fmt.Sscanf(key, "%d>%d", &from, &to)
		p.To = link.NewMux(muxes[to])
	}
	for i := range fwd {
		fwd[i].set(c.engines[i])
	}
	for i := range c.ids {
		for _, l := range c.links[i] {
			wgs = append(wgs, l.Start(ctx))
		}
	}
	t.Cleanup(func() {
		cancel()
		for _, wg := range wgs {
			wg.Wait()
		}
	})
	return c
}

// late lets links exist before the engine that handles their relays.
type late struct {
	mu sync.Mutex
	e  *relay.Engine
}

func (l *late) set(e *relay.Engine) { l.mu.Lock(); l.e = e; l.mu.Unlock() }

func (l *late) HandleForward(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	l.mu.Lock()
	e := l.e
	l.mu.Unlock()
	if e == nil {
		return kmsproto.ForwardKeysResp{}, kmsproto.Retry, "not ready"
	}
	return e.HandleForward(ctx, in, req)
}

// push gives both ends of every link the same n blocks.
func (c *chain) push(t testing.TB, n, size int) {
	t.Helper()
	ctx := context.Background()
	for b := 0; b < n; b++ {
		for _, ed := range c.edges {
			blk := make([]byte, size)
			_, _ = rand.Read(blk)
			for _, end := range [][2]int{{ed[0], ed[1]}, {ed[1], ed[0]}} {
				for _, l := range c.links[end[0]] {
					if l.Peer() == c.ids[end[1]] {
						if err := l.Ingest(ctx, c.index, secret.From(blk)); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
		c.index++
	}
}

// install configures stream s along the whole chain.
func (c *chain) install(t testing.TB, s string) {
	t.Helper()
	k := len(c.ids) - 1
	for i, id := range c.ids {
		en := relay.Entry{Stream: s, Source: c.ids[0], Dest: c.ids[k], Master: sae(0), Slaves: []qkd.SAEID{sae(k)}}
		if i > 0 {
			en.Prev = c.ids[i-1]
		}
		if i < k {
			en.Next = c.ids[i+1]
		}
		if err := c.engines[i].Install(en); err != nil {
			t.Fatalf("Install at %s: %v", id, err)
		}
	}
}

func (c *chain) waitMaterial(t testing.TB) {
	t.Helper()
	linktest.WaitFor(t, "material confirmed on every link", func() bool {
		for i := range c.ids {
			for _, l := range c.links[i] {
				st, err := c.stores[i].Stats(context.Background(), l.ID())
				if err != nil || st.ConfirmedBytes[0] < 4096 || st.ConfirmedBytes[1] < 4096 {
					return false
				}
			}
		}
		return true
	})
}

// take fetches keys at both ends and compares them.
func (c *chain) take(t *testing.T, ids []qkd.KeyID) {
	t.Helper()
	src, err := c.stores[0].TakeByID(context.Background(), keystore.TakeRequest{IDs: ids, Master: sae(0), Caller: sae(0), Now: time.Now()})
	if err != nil {
		t.Fatalf("source TakeByID = %v", err)
	}
	c.sameAtDest(t, ids, src)
}

// sameAtDest fetches keys ids at the destination (the last node) and checks
// that src, the keys the source node gave its master, are exactly they,
// with the same bytes.
func (c *chain) sameAtDest(t *testing.T, ids []qkd.KeyID, src []keystore.Key) {
	t.Helper()
	k := len(c.ids) - 1
	dst, err := c.stores[k].TakeByID(context.Background(), keystore.TakeRequest{IDs: ids, Master: sae(0), Caller: sae(k), Now: time.Now()})
	if err != nil {
		t.Fatalf("destination TakeByID = %v", err)
	}
	byID := map[qkd.KeyID]keystore.Key{}
	for _, d := range dst {
		byID[d.ID] = d
	}
	if len(src) != len(ids) {
		t.Fatalf("source gave %d keys, want %d", len(src), len(ids))
	}
	for i, sk := range src {
		if d, ok := byID[sk.ID]; !ok || !sk.Data.Equal(d.Data) {
			t.Fatalf("key %d (%s) differs between source and destination", i, sk.ID)
		}
	}
}

func TestRelayAlongChains(t *testing.T) {
	for _, hops := range []int{2, 3, 6} {
		t.Run(fmt.Sprintf("%d hops", hops), func(t *testing.T) {
			c := newChain(t, hops)
			c.push(t, 12, 2048)
			c.waitMaterial(t)
			c.install(t, "s1")
			ids, err := c.engines[0].Relay(context.Background(), "s1", 256, 8, time.Hour)
			if err != nil {
				t.Fatalf("Relay = %v", err)
			}
			c.take(t, ids)
			// No intermediate node holds the keys.
			for i := 1; i < hops; i++ {
				if _, err := c.stores[i].TakeByID(context.Background(), keystore.TakeRequest{IDs: ids[:1], Master: sae(0), Caller: sae(hops), Now: time.Now()}); !errors.Is(err, qkd.ErrNotFound) {
					t.Fatalf("intermediate %s holds a relayed key: %v", c.ids[i], err)
				}
			}
		})
	}
}

func TestRelayIdempotentUnderLostReplies(t *testing.T) {
	c := newChain(t, 3)
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	c.install(t, "s1")
	// The first forward_keys on each hop reaches the next node but its reply
	// is lost: the sender retries the same step, which every node answers
	// from its record without consuming anything twice.
	for key, p := range c.pipes {
		if key == "0>1" || key == "1>2" || key == "2>3" {
			p.DropReplies(kmsproto.ForwardKeys, 1)
		}
	}
	ids, err := c.engines[0].Relay(context.Background(), "s1", 256, 4, time.Hour)
	if err != nil {
		t.Fatalf("Relay with lost replies = %v", err)
	}
	c.take(t, ids)
}

func TestRelayRefusesUnconfiguredRoute(t *testing.T) {
	c := newChain(t, 2)
	c.push(t, 8, 2048)
	c.waitMaterial(t)
	// Only the source knows the stream: N1 refuses with no_route, the keys
	// are never Ready at the source.
	if err := c.engines[0].Install(relay.Entry{Stream: "s", Source: c.ids[0], Dest: c.ids[2], Master: sae(0),
		Slaves: []qkd.SAEID{sae(2)}, Next: c.ids[1]}); err != nil {
		t.Fatal(err)
	}
	ids, err := c.engines[0].Relay(context.Background(), "s", 256, 2, time.Hour)
	if err == nil {
		t.Fatalf("Relay over an unconfigured hop = %v, nil", ids)
	}
	if n, _ := c.stores[0].CountKeys(context.Background(), keystore.TakeRequest{Master: sae(0), Slaves: []qkd.SAEID{sae(2)}, Caller: sae(0), SizeBits: 256, Now: time.Now()}); n != 0 {
		t.Fatalf("source holds %d keys of a refused relay", n)
	}
}

// relayRetrying is Relay, asked again while the link answers "not now"
// (ErrInsufficientKey: its MAC slots are being refilled), as an
// application asks again after a 503.
func relayRetrying(ctx context.Context, e *relay.Engine, stream string, n int) ([]qkd.KeyID, error) {
	for {
		ids, err := e.Relay(ctx, stream, 256, n, time.Hour)
		if !errors.Is(err, qkd.ErrInsufficientKey) || ctx.Err() != nil {
			return ids, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond): // the refill's round trip, not test synchronisation
		}
	}
}

// TestRelayBackToBackRefillsMACSlots: a source that relays batch after
// batch spends a MAC slot per batch, far more than the link started with
// (64 from the PSK; refills of 16 below 8 + the reserve). Every batch
// arrives: refills are never stuck behind entries that wait for a slot
// (the deadlock this test caught: a queued forward_keys could not get a
// slot below the reserve, and the refill queued after it could not pass
// it), and a full outbox answers "not now" instead of hanging.
func TestRelayBackToBackRefillsMACSlots(t *testing.T) {
	c := newChain(t, 1)
	c.push(t, 64, 64<<10)
	c.waitMaterial(t)
	c.install(t, "s")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 1000 {
		if _, err := relayRetrying(ctx, c.engines[0], "s", 8); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
}

// TestRelayLinkUsableAfterRefusal: a step refused for good (here: no
// forwarding entry at N1) has used the sender's pad; the refusing node
// burns its copy, so the link's two ends stay in step and the next relay
// over the same links works. (Before, every later step over the link
// conflicted: the sender's material was one pad further.) A retry of the
// refused step gets the same refusal.
func TestRelayLinkUsableAfterRefusal(t *testing.T) {
	c := newChain(t, 2)
	c.push(t, 8, 2048)
	c.waitMaterial(t)
	if err := c.engines[0].Install(relay.Entry{Stream: "s", Source: c.ids[0], Dest: c.ids[2], Master: sae(0),
		Slaves: []qkd.SAEID{sae(2)}, Next: c.ids[1]}); err != nil {
		t.Fatal(err)
	}
	c.pipes["0>1"].DropReplies(kmsproto.ForwardKeys, 1) // the refusal is lost once: the retry is answered from the record
	if ids, err := c.engines[0].Relay(context.Background(), "s", 256, 2, time.Hour); err == nil {
		t.Fatalf("Relay over an unconfigured hop = %v, nil", ids)
	}
	c.install(t, "s")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ids, err := c.engines[0].Relay(ctx, "s", 256, 2, time.Hour)
	if err != nil {
		t.Fatalf("Relay after a refused step: %v", err)
	}
	c.take(t, ids)
}

// TestRelayBack: the destination of a stream relays keys of the stream's
// pair back along the route. The source node holds them Ready for the
// master, the destination for the slave, with the same bytes; each hop's
// pad came from the half of the link of the node that sends back (the
// upstream end's half is untouched); no intermediate node holds them.
func TestRelayBack(t *testing.T) {
	for _, hops := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("%d hops", hops), func(t *testing.T) {
			ctx := context.Background()
			c := newChain(t, hops)
			c.push(t, 12, 2048)
			c.waitMaterial(t)
			c.install(t, "s1")
			// Link Ni—Ni+1 as Ni sees it, and its free bytes per parity.
			down := func(i int) *link.Link {
				for _, l := range c.links[i] {
					if l.Peer() == c.ids[i+1] {
						return l
					}
				}
				t.Fatalf("no link %s—%s", c.ids[i], c.ids[i+1])
				return nil
			}
			free := func(i int) [2]int64 {
				st, err := c.stores[i].Stats(ctx, down(i).ID())
				if err != nil {
					t.Fatal(err)
				}
				return st.ConfirmedBytes
			}
			linktest.WaitFor(t, "every block confirmed", func() bool {
				for i := range c.ids {
					for _, l := range c.links[i] {
						if st, err := c.stores[i].Stats(ctx, l.ID()); err != nil || st.UnconfirmedBlocks > 0 {
							return false
						}
					}
				}
				return true
			})
			before := make([][2]int64, hops)
			for i := range hops {
				before[i] = free(i)
			}
			stream, ok := c.engines[hops].BackStream(sae(0), []qkd.SAEID{sae(hops)})
			if !ok || stream != "s1" {
				t.Fatalf("BackStream at the destination = %q, %v; want s1", stream, ok)
			}
			if _, ok := c.engines[0].BackStream(sae(0), []qkd.SAEID{sae(hops)}); ok {
				t.Error("the source node offers a stream to relay back")
			}
			if _, err := c.engines[0].RelayBack(ctx, "s1", 256, 8, time.Hour); !errors.Is(err, relay.ErrUnknownStream) {
				t.Errorf("RelayBack at the source = %v, want ErrUnknownStream", err)
			}
			ids, err := c.engines[hops].RelayBack(ctx, "s1", 256, 8, time.Hour)
			if err != nil {
				t.Fatalf("RelayBack = %v", err)
			}
			// The master takes them at the source node as any pool key.
			src, err := c.stores[0].TakeForPair(ctx, keystore.TakeRequest{Master: sae(0), Slaves: []qkd.SAEID{sae(hops)},
				Caller: sae(0), SizeBits: 256, Number: 8, Now: time.Now()})
			if err != nil {
				t.Fatalf("TakeForPair at the source node = %v", err)
			}
			c.sameAtDest(t, ids, src)
			for i := 1; i < hops; i++ {
				if _, err := c.stores[i].TakeByID(ctx, keystore.TakeRequest{IDs: ids[:1], Master: sae(0), Caller: sae(hops), Now: time.Now()}); !errors.Is(err, qkd.ErrNotFound) {
					t.Fatalf("intermediate %s holds a relayed key: %v", c.ids[i], err)
				}
			}
			// Link Ni—Ni+1: the step came from Ni+1, with a pad of the
			// keys' size from Ni+1's half (its blocks' parity).
			for i := range hops {
				after, l := free(i), down(i)
				theirs := l.PeerParity()
				if used := before[i][theirs] - after[theirs]; used < 8*32 {
					t.Errorf("link %s at %s: %d bytes of %s's half used, want at least the pad (%d)", l.ID(), c.ids[i], used, l.Peer(), 8*32)
				}
			}
		})
	}
}

// TestRelayBackRefused: keys relayed back are Ready at their sender at
// once; when the route refuses the step (here the source node forgot the
// stream) they go, and the link carries steps on as before.
func TestRelayBackRefused(t *testing.T) {
	ctx := context.Background()
	c := newChain(t, 2)
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	c.install(t, "s1")
	c.engines[0].Remove("s1")
	if _, err := c.engines[2].RelayBack(ctx, "s1", 256, 8, time.Hour); err == nil {
		t.Fatal("RelayBack to a source that forgot the stream succeeded")
	}
	count := func(node int, caller qkd.SAEID) int {
		n, err := c.stores[node].CountKeys(ctx, keystore.TakeRequest{Master: sae(0), Slaves: []qkd.SAEID{sae(2)},
			Caller: caller, SizeBits: 256, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	linktest.WaitFor(t, "refused keys deleted at the sender", func() bool { return count(2, sae(2)) == 0 })
	if n := count(0, sae(0)); n != 0 {
		t.Fatalf("the source node holds %d keys of a refused step", n)
	}
	c.install(t, "s1")
	ids, err := c.engines[2].RelayBack(ctx, "s1", 256, 8, time.Hour)
	if err != nil {
		t.Fatalf("RelayBack after the refusal = %v", err)
	}
	if n := count(0, sae(0)); n != len(ids) {
		t.Fatalf("source node holds %d keys, want %d", n, len(ids))
	}
}
