package streams_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
	"github.com/qkms/qkms/internal/secret"
	"github.com/qkms/qkms/internal/streams"
)

// line3 is nodes A—B—C back to back (links A-B and B-C, memstores, relay
// engines), with key stream services at A and C.
type line3 struct {
	ids     []qkd.NodeID
	stores  []keystore.Store
	links   [][]*link.Link
	engines []*relay.Engine
	a, c    *streams.Service
	router  *fakeRouter
}

// fakeRouter plays the SDN controller: it installs the route A→B→C of
// the pair on every engine.
type fakeRouter struct {
	l     *line3
	mu    sync.Mutex
	calls int
}

func (r *fakeRouter) Stream(_ context.Context, master qkd.SAEID, slaves []qkd.SAEID) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	s := fmt.Sprintf("ks-%s-%s", master, slaves[0])
	ids := slices.Clone(r.l.ids) // A—B—C, or C—B—A for a master at C
	if master == "SAE_C1" {
		slices.Reverse(ids)
	}
	for j := range ids {
		e := r.l.engines[slices.Index(r.l.ids, ids[j])]
		en := relay.Entry{Stream: s, Source: ids[0], Dest: ids[2], Master: master, Slaves: slaves}
		if j > 0 {
			en.Prev = ids[j-1]
		}
		if j < 2 {
			en.Next = ids[j+1]
		}
		if err := e.Install(en); err != nil {
			return "", err
		}
	}
	return s, nil
}

type lateFwd struct {
	mu sync.Mutex
	e  *relay.Engine
}

func (l *lateFwd) HandleForward(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	l.mu.Lock()
	e := l.e
	l.mu.Unlock()
	if e == nil {
		return kmsproto.ForwardKeysResp{}, kmsproto.Retry, "not ready"
	}
	return e.HandleForward(ctx, in, req)
}

func newLine3(t *testing.T) *line3 {
	t.Helper()
	return newLine3With(t, nil)
}

// joinGrace, if set, is the services' JoinGrace in newLine3With.
var joinGrace time.Duration

// newLine3With: wrap, if set, makes the services' router of the fake one.
func newLine3With(t *testing.T, wrap func(*fakeRouter) streams.Router) *line3 {
	t.Helper()
	l3 := &line3{ids: []qkd.NodeID{"A", "B", "C"}, links: make([][]*link.Link, 3)}
	home := map[qkd.SAEID]qkd.NodeID{"SAE_A1": "A", "SAE_B1": "B", "SAE_C1": "C"}
	fwd := []*lateFwd{{}, {}, {}}
	for range 3 {
		l3.stores = append(l3.stores, memstore.New(memstore.Options{}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	pipes := map[[2]int]*linktest.Pipe{}
	for _, ed := range [][2]int{{0, 1}, {1, 2}} {
		psk := make([]byte, 2*64*keystore.SlotSize)
		_, _ = rand.Read(psk)
		id := qkd.LinkID(fmt.Sprintf("%s-%s", l3.ids[ed[0]], l3.ids[ed[1]]))
		for _, end := range [][2]int{{ed[0], ed[1]}, {ed[1], ed[0]}} {
			self, peer := end[0], end[1]
			p := &linktest.Pipe{}
			pipes[end] = p
			l, err := link.New(link.Options{ID: id, Self: l3.ids[self], Peer: l3.ids[peer], Store: l3.stores[self], Transport: p,
				PSK: secret.PSK{Bytes: secret.From(psk)}, BatchBlocks: 4, BatchDelay: 20 * time.Millisecond,
				SlotLowWater: 8, SlotRefill: 16, RetryDelay: 5 * time.Millisecond, StatusInterval: time.Hour,
				LocalSAE: func(s qkd.SAEID) bool { return home[s] == l3.ids[self] }, Forwarder: fwd[self]})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Init(ctx); err != nil {
				t.Fatal(err)
			}
			l3.links[self] = append(l3.links[self], l)
		}
	}
	for end, p := range pipes {
		p.To = link.NewMux(l3.links[end[1]])
	}
	for i := range l3.ids {
		e := relay.New(relay.Options{Node: l3.ids[i], Store: l3.stores[i], Links: l3.links[i],
			LocalSAE: func(s qkd.SAEID) bool { return home[s] == l3.ids[i] }})
		l3.engines = append(l3.engines, e)
		fwd[i].mu.Lock()
		fwd[i].e = e
		fwd[i].mu.Unlock()
	}
	var wgs []*sync.WaitGroup
	for i := range l3.ids {
		for _, l := range l3.links[i] {
			wgs = append(wgs, l.Start(ctx))
		}
	}
	t.Cleanup(func() {
		cancel()
		for _, wg := range wgs {
			wg.Wait()
		}
	})
	// Material on both links.
	for b := uint64(0); b < 16; b++ {
		for _, ed := range [][2]int{{0, 1}, {1, 2}} {
			blk := make([]byte, 4096)
			_, _ = rand.Read(blk)
			for _, end := range [][2]int{{ed[0], ed[1]}, {ed[1], ed[0]}} {
				for _, l := range l3.links[end[0]] {
					if l.Peer() == l3.ids[end[1]] {
						if err := l.Ingest(ctx, b, secret.From(bytes.Clone(blk))); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
	}
	linktest.WaitFor(t, "material confirmed on both links", func() bool {
		for i := range l3.ids {
			for _, l := range l3.links[i] {
				st, err := l3.stores[i].Stats(ctx, l.ID())
				if err != nil || st.ConfirmedBytes[0] < 16<<10 || st.ConfirmedBytes[1] < 16<<10 {
					return false
				}
			}
		}
		return true
	})
	l3.router = &fakeRouter{l: l3}
	var router streams.Router = l3.router
	if wrap != nil {
		router = wrap(l3.router)
	}
	svc := func(i int) *streams.Service {
		ls := make([]streams.Link, len(l3.links[i]))
		for j, l := range l3.links[i] {
			ls[j] = l
		}
		s, err := streams.New(streams.Options{Node: l3.ids[i], SAEs: home, Links: ls, Store: l3.stores[i],
			Router: router, Relay: l3.engines[i], Logger: slog.New(slog.DiscardHandler), JoinGrace: joinGrace})
		if err != nil {
			t.Fatal(err)
		}
		l3.engines[i].SetOnStream(s.Relayed)
		t.Cleanup(s.Shutdown)
		return s
	}
	l3.a, l3.c = svc(0), svc(2)
	return l3
}

// The acceptance on three nodes: SAE_A1 opens a NULL stream to
// SAE_C1, two hops away; SAE_C1 opens the KSID at C; the same indices
// give the same chunks at both ends, in either order, also beyond the
// first window.
func TestRemoteStreamTwoHops(t *testing.T) {
	l3 := newLine3(t)
	q := etsi004.QoS{KeyChunkSize: 32, MetadataMimetype: etsi004.MimeJSON}
	r := open(t, l3.a, "SAE_A1", "SAE_C1", q, etsi004.KSID{})
	if r.Status != etsi004.StatusPeerNotConnected || r.KeyStreamID.IsNull() {
		t.Fatalf("OpenConnect(NULL) to a remote application = %v, %v; want 1 and a KSID", r.Status, r.KeyStreamID)
	}
	k := r.KeyStreamID
	linktest.WaitFor(t, "C learns the stream", func() bool { return len(l3.c.Streams()) == 1 })
	if g := get(t, l3.a, "SAE_A1", k, 0, 0); g.Status != etsi004.StatusPeerNotConnectedGK {
		t.Errorf("GetKey before the peer opened = %v, want 3", g.Status)
	}
	if j := open(t, l3.c, "SAE_C1", "SAE_A1", etsi004.QoS{}, k); j.Status != etsi004.StatusSuccessful || j.QoS.KeyChunkSize != 32 {
		t.Fatalf("OpenConnect(KSID) at C = %v, QoS %+v; want 0 and the source's QoS", j.Status, j.QoS)
	}
	if j := open(t, l3.c, "SAE_C1", "SAE_A1", etsi004.QoS{}, k); j.Status != etsi004.StatusKSIDInUse {
		t.Errorf("OpenConnect(KSID) at C again = %v, want 5", j.Status)
	}
	for _, tt := range []struct {
		index     uint32
		destFirst bool
	}{{0, false}, {1, true}, {2, false}, {150, true}, {151, false}} {
		var ra, rc etsi004.GetKeyResponse
		if tt.destFirst {
			rc, ra = get(t, l3.c, "SAE_C1", k, tt.index, 0), get(t, l3.a, "SAE_A1", k, tt.index, 0)
		} else {
			ra, rc = get(t, l3.a, "SAE_A1", k, tt.index, 0), get(t, l3.c, "SAE_C1", k, tt.index, 0)
		}
		if ra.Status != 0 || rc.Status != 0 || len(ra.Key) != 32 || !bytes.Equal(ra.Key, rc.Key) {
			t.Fatalf("GetKey(%d) = %v (%d bytes) at A, %v (%d bytes) at C; want 0 and the same 32 bytes", tt.index, ra.Status, len(ra.Key), rc.Status, len(rc.Key))
		}
		if again := get(t, l3.c, "SAE_C1", k, tt.index, 0); again.Status != etsi004.StatusInsufficientKey {
			t.Errorf("GetKey(%d) again at C = %v, want 2", tt.index, again.Status)
		}
	}
	for _, end := range []struct {
		s      *streams.Service
		caller qkd.SAEID
	}{{l3.a, "SAE_A1"}, {l3.c, "SAE_C1"}} {
		if r, err := end.s.Close(ctx, end.caller, etsi004.CloseRequest{KeyStreamID: k}); err != nil || r.Status != 0 {
			t.Fatalf("Close at %s = %v, %v", end.caller, r.Status, err)
		}
	}
	linktest.WaitFor(t, "A forgets the stream closed at both ends", func() bool { return len(l3.a.Streams()) == 0 })
	if n := l3.router.calls; n != 1 {
		t.Errorf("router asked %d times, want 1", n)
	}
}

// A predefined KSID on a remote pair: the lower SAE ID's node relays,
// the other end waits for the stream; both orders.
func TestRemotePredefinedKSID(t *testing.T) {
	l3 := newLine3(t)
	k, _ := etsi004.NewKSID()
	var ra etsi004.OpenResponse
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ra, _ = l3.c.OpenConnect(ctx, "SAE_C1", etsi004.OpenRequest{Source: "SAE_C1", Destination: "SAE_A1", KeyStreamID: k})
	}()
	rc := open(t, l3.a, "SAE_A1", "SAE_C1", etsi004.QoS{KeyChunkSize: 16}, k)
	wg.Wait()
	if ra.Status != 0 || rc.Status != 0 {
		t.Fatalf("OpenConnect(predefined) = %v at C, %v at A; want 0 and 0", ra.Status, rc.Status)
	}
	ga, gc := get(t, l3.a, "SAE_A1", k, 3, 0), get(t, l3.c, "SAE_C1", k, 3, 0)
	if ga.Status != 0 || gc.Status != 0 || len(ga.Key) != 16 || !bytes.Equal(ga.Key, gc.Key) {
		t.Fatalf("GetKey(3) = %v at A, %v at C; want the same 16 bytes", ga.Status, gc.Status)
	}
}

// Without the grace, A claims the source role at once, before C's first
// chunk can arrive: the two claims collide (A's chunk is refused at C,
// its key IDs being C's), and A yields when C's chunk comes through. The
// same chunks at both ends.
func TestRemoteClaimYields(t *testing.T) {
	joinGrace = -1
	t.Cleanup(func() { joinGrace = 0 })
	l3 := newLine3(t)
	r := open(t, l3.c, "SAE_C1", "SAE_A1", etsi004.QoS{KeyChunkSize: 32, Timeout: 20000}, etsi004.KSID{})
	if r.Status != etsi004.StatusPeerNotConnected {
		t.Fatalf("OpenConnect(NULL) at C = %v", r.Status)
	}
	k := r.KeyStreamID
	if j := open(t, l3.a, "SAE_A1", "SAE_C1", etsi004.QoS{Timeout: 20000}, k); j.Status != etsi004.StatusSuccessful {
		t.Fatalf("OpenConnect(KSID) at A = %v, want 0", j.Status)
	}
	for idx := range uint32(3) {
		ga, gc := get(t, l3.a, "SAE_A1", k, idx, 0), get(t, l3.c, "SAE_C1", k, idx, 0)
		if ga.Status != 0 || gc.Status != 0 || len(ga.Key) != 32 || !bytes.Equal(ga.Key, gc.Key) {
			t.Fatalf("GetKey(%d) = %v at A, %v at C; want 0 and the same chunk", idx, ga.Status, gc.Status)
		}
	}
	if src := l3.a.Streams()[0]; src.Source != "SAE_C1" {
		t.Errorf("stream at A has source %s, want SAE_C1 (A yielded)", src.Source)
	}
}

// A NULL stream opened by the application with the higher SAE ID (C1 at
// C), joined at once by the lower one (A1 at A), possibly before the first
// chunk reached A: A would then take the ID for a predefined one and claim
// the source role (the lower ID relays); when C's first chunk arrives it
// yields and joins C's stream. In every order both ends get the same
// chunks.
func TestRemoteJoinBeforeFirstChunk(t *testing.T) {
	l3 := newLine3(t)
	for i := range 5 {
		r := open(t, l3.c, "SAE_C1", "SAE_A1", etsi004.QoS{KeyChunkSize: 32, Timeout: 10000}, etsi004.KSID{})
		if r.Status != etsi004.StatusPeerNotConnected {
			t.Fatalf("stream %d: OpenConnect(NULL) at C = %v", i, r.Status)
		}
		k := r.KeyStreamID
		if j := open(t, l3.a, "SAE_A1", "SAE_C1", etsi004.QoS{}, k); j.Status != etsi004.StatusSuccessful {
			t.Fatalf("stream %d: OpenConnect(KSID) at A = %v, want 0", i, j.Status)
		}
		for idx := range uint32(3) {
			ga, gc := get(t, l3.a, "SAE_A1", k, idx, 0), get(t, l3.c, "SAE_C1", k, idx, 0)
			if ga.Status != 0 || gc.Status != 0 || len(ga.Key) != 32 || !bytes.Equal(ga.Key, gc.Key) {
				t.Fatalf("stream %d, GetKey(%d) = %v at A, %v at C; want 0 and the same chunk", i, idx, ga.Status, gc.Status)
			}
		}
	}
}
