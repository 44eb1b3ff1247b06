package streams_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/streams"
)

var saes = map[qkd.SAEID]qkd.NodeID{"SAE_A1": "A", "SAE_A2": "A", "SAE_B1": "B", "SAE_B2": "B", "SAE_C1": "C"}

// clock is a fake clock whose After moves time on at once.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.t = c.t.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.t
	c.mu.Unlock()
	return ch
}

func (c *clock) Advance(d time.Duration) { c.After(d) }

type env struct {
	p          *linktest.Pair
	a, b       *streams.Service
	dirA, dirB string
	clk        *clock // nil: real time
}

func newEnv(t *testing.T, fake bool) *env {
	t.Helper()
	p := linktest.NewPair(t, linktest.Options{SAEs: saes})
	p.Push(t, 32, 4096, nil)
	linktest.WaitFor(t, "confirmed material", func() bool {
		sa, sb := linktest.Stats(t, p.SA), linktest.Stats(t, p.SB)
		return sa.UnconfirmedBlocks == 0 && sb.UnconfirmedBlocks == 0 && sa.ConfirmedBytes[0] > 32<<10 && sb.ConfirmedBytes[1] > 32<<10
	})
	e := &env{p: p, dirA: t.TempDir(), dirB: t.TempDir()}
	if fake {
		e.clk = &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	e.a, e.b = e.service(t, "A"), e.service(t, "B")
	return e
}

func (e *env) service(t *testing.T, node qkd.NodeID) *streams.Service {
	t.Helper()
	o := streams.Options{Node: node, SAEs: saes, Logger: slog.New(slog.DiscardHandler)}
	if node == "A" {
		o.Links, o.Store, o.DataDir = []streams.Link{e.p.A}, e.p.SA, e.dirA
	} else {
		o.Links, o.Store, o.DataDir = []streams.Link{e.p.B}, e.p.SB, e.dirB
	}
	if e.clk != nil {
		o.Now, o.After = e.clk.Now, e.clk.After
	}
	s, err := streams.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

var ctx = context.Background()

func open(t *testing.T, s *streams.Service, src, dst qkd.SAEID, q etsi004.QoS, k etsi004.KSID) etsi004.OpenResponse {
	t.Helper()
	res, err := s.OpenConnect(ctx, src, etsi004.OpenRequest{Source: "sae://" + string(src), Destination: string(dst), QoS: q, KeyStreamID: k})
	if err != nil {
		t.Fatalf("OpenConnect(%s→%s) error %v", src, dst, err)
	}
	return res
}

// connected opens a stream SAE_A1 → SAE_B1 with q at both ends.
func (e *env) connected(t *testing.T, q etsi004.QoS) etsi004.KSID {
	t.Helper()
	r := open(t, e.a, "SAE_A1", "SAE_B1", q, etsi004.KSID{})
	if r.Status != etsi004.StatusPeerNotConnected {
		t.Fatalf("OpenConnect(NULL) status = %v, want 1", r.Status)
	}
	if j := open(t, e.b, "SAE_B1", "SAE_A1", etsi004.QoS{}, r.KeyStreamID); j.Status != etsi004.StatusSuccessful {
		t.Fatalf("OpenConnect(peer's KSID) status = %v, want 0", j.Status)
	}
	return r.KeyStreamID
}

func get(t *testing.T, s *streams.Service, caller qkd.SAEID, k etsi004.KSID, i, meta uint32) etsi004.GetKeyResponse {
	t.Helper()
	res, err := s.GetKey(ctx, caller, etsi004.GetKeyRequest{KeyStreamID: k, Index: i, MetadataSize: meta})
	if err != nil {
		t.Fatalf("GetKey(%d) error %v", i, err)
	}
	return res
}

// OPEN_CONNECT with a NULL key stream ID, then the same ID
// by other applications and by the peer.
func TestOpenConnect(t *testing.T) {
	e := newEnv(t, false)
	q := etsi004.QoS{KeyChunkSize: 64, MaxBps: 1 << 20, MetadataMimetype: etsi004.MimeJSON}
	r := open(t, e.a, "SAE_A1", "SAE_B1", q, etsi004.KSID{})
	k := r.KeyStreamID
	if r.Status != etsi004.StatusPeerNotConnected || k.IsNull() || k[6]>>4 != 4 || k[8]>>6 != 2 {
		t.Fatalf("OpenConnect(NULL) = status %v, KSID %v; want 1 and a UUIDv4", r.Status, k)
	}
	want := q
	want.Timeout, want.TTL = streams.DefaultTimeout, streams.DefaultTTL
	if r.QoS != want {
		t.Errorf("OpenConnect(NULL) QoS = %+v, want %+v", r.QoS, want)
	}
	tests := []struct {
		name     string
		s        *streams.Service
		src, dst qkd.SAEID
		want     etsi004.Status
	}{
		{"another application at the peer's node", e.b, "SAE_B2", "SAE_A1", etsi004.StatusKSIDInUse},
		{"another application at the source's node", e.a, "SAE_A2", "SAE_B1", etsi004.StatusKSIDInUse},
		{"the source again", e.a, "SAE_A1", "SAE_B1", etsi004.StatusKSIDInUse},
		{"the peer", e.b, "SAE_B1", "SAE_A1", etsi004.StatusSuccessful},
		{"the peer again", e.b, "SAE_B1", "SAE_A1", etsi004.StatusKSIDInUse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := open(t, tt.s, tt.src, tt.dst, etsi004.QoS{KeyChunkSize: 16}, k)
			if got.Status != tt.want {
				t.Fatalf("OpenConnect = status %v, want %v", got.Status, tt.want)
			}
			if got.Status == etsi004.StatusSuccessful && got.QoS != want {
				t.Errorf("OpenConnect QoS = %+v, want the stored %+v", got.QoS, want)
			}
		})
	}
}

func TestOpenConnectRefusals(t *testing.T) {
	e := newEnv(t, false)
	if _, err := e.a.OpenConnect(ctx, "SAE_A2", etsi004.OpenRequest{Source: "SAE_A1", Destination: "SAE_B1"}); !errors.Is(err, streams.ErrNotSource) || !errors.Is(err, etsi004.ErrBadRequest) {
		t.Errorf("OpenConnect(source not the caller) error = %v, want ErrNotSource", err)
	}
	for _, dst := range []qkd.SAEID{"SAE_C1", "SAE_A2", "SAE_X"} {
		if r := open(t, e.a, "SAE_A1", dst, etsi004.QoS{}, etsi004.KSID{}); r.Status != etsi004.StatusNoQKDConnection {
			t.Errorf("OpenConnect(→%s) status = %v, want 4", dst, r.Status)
		}
	}
}

// Checklist 3, and the other QoS checks.
func TestQoS(t *testing.T) {
	e := newEnv(t, false)
	tests := []struct {
		name    string
		q       etsi004.QoS
		ok      bool
		counter etsi004.QoS // the fields checked of the counter-proposal
	}{
		{"no metadata", etsi004.QoS{}, true, etsi004.QoS{}},
		{"json", etsi004.QoS{MetadataMimetype: "application/json"}, true, etsi004.QoS{}},
		{"json with parameters", etsi004.QoS{MetadataMimetype: "Application/JSON; charset=utf-8"}, true, etsi004.QoS{}},
		{"unsupported mimetype", etsi004.QoS{MetadataMimetype: "text/plain"}, false, etsi004.QoS{MetadataMimetype: etsi004.MimeJSON}},
		{"chunk too large", etsi004.QoS{KeyChunkSize: 4096}, false, etsi004.QoS{KeyChunkSize: 1024}},
		{"min above max", etsi004.QoS{MaxBps: 100, MinBps: 200}, false, etsi004.QoS{MinBps: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := open(t, e.a, "SAE_A1", "SAE_B1", tt.q, etsi004.KSID{})
			if got := r.Status != etsi004.StatusQoSNotMet; got != tt.ok {
				t.Fatalf("OpenConnect(%+v) status = %v, want ok %v", tt.q, r.Status, tt.ok)
			}
			if tt.ok {
				return
			}
			if c := tt.counter; c.MetadataMimetype != "" && r.QoS.MetadataMimetype != c.MetadataMimetype ||
				c.KeyChunkSize != 0 && r.QoS.KeyChunkSize != c.KeyChunkSize || c.MinBps != 0 && r.QoS.MinBps != c.MinBps {
				t.Errorf("OpenConnect(%+v) counter-proposal = %+v, want %+v", tt.q, r.QoS, c)
			}
		})
	}
}

// Checklist 4: the same index gives the same bytes at both ends, once.
func TestSameIndexBothEnds(t *testing.T) {
	e := newEnv(t, false)
	k := e.connected(t, etsi004.QoS{KeyChunkSize: 48})
	for _, tt := range []struct {
		name      string
		index     uint32
		destFirst bool
	}{{"first", 0, false}, {"in the window", 5, false}, {"destination first", 7, true}, {"beyond the window", 200, true}, {"far beyond", 100000, false}} {
		t.Run(tt.name, func(t *testing.T) {
			var ra, rb etsi004.GetKeyResponse
			if tt.destFirst {
				rb, ra = get(t, e.b, "SAE_B1", k, tt.index, 0), get(t, e.a, "SAE_A1", k, tt.index, 0)
			} else {
				ra, rb = get(t, e.a, "SAE_A1", k, tt.index, 0), get(t, e.b, "SAE_B1", k, tt.index, 0)
			}
			if ra.Status != 0 || rb.Status != 0 || len(ra.Key) != 48 || !bytes.Equal(ra.Key, rb.Key) || ra.Index != tt.index {
				t.Fatalf("GetKey(%d) = %v %d bytes at A, %v %d bytes at B; want 0 and the same 48 bytes", tt.index, ra.Status, len(ra.Key), rb.Status, len(rb.Key))
			}
			if again := get(t, e.a, "SAE_A1", k, tt.index, 0); again.Status != etsi004.StatusInsufficientKey {
				t.Errorf("GetKey(%d) again = %v, want 2", tt.index, again.Status)
			}
		})
	}
	if r := get(t, e.a, "SAE_A2", k, 1, 0); r.Status != etsi004.StatusPeerNotConnectedGK {
		t.Errorf("GetKey by another application = %v, want 3", r.Status)
	}
}

// Checklist 5.
func TestMetadataTooSmall(t *testing.T) {
	e := newEnv(t, false)
	k := e.connected(t, etsi004.QoS{MetadataMimetype: etsi004.MimeJSON})
	r := get(t, e.a, "SAE_A1", k, 3, 4)
	if r.Status != etsi004.StatusMetadataTooSmall || r.MetadataSize < 20 || len(r.Key) != 0 {
		t.Fatalf("GetKey(metadata 4) = %v, size %d, %d key bytes; want 8, the size needed, no key", r.Status, r.MetadataSize, len(r.Key))
	}
	ok := get(t, e.a, "SAE_A1", k, 3, r.MetadataSize)
	if ok.Status != 0 || len(ok.Key) != DefaultChunk {
		t.Fatalf("GetKey(metadata %d) = %v, %d bytes; want 0", r.MetadataSize, ok.Status, len(ok.Key))
	}
	var md struct {
		Age  *uint32 `json:"age"`
		Hops *uint32 `json:"hops"`
	}
	if err := json.Unmarshal(ok.Metadata, &md); err != nil || md.Age == nil || md.Hops == nil || *md.Hops != 0 || uint32(len(ok.Metadata)) > r.MetadataSize {
		t.Errorf("metadata %q: want {age, hops: 0} within %d bytes (%v)", ok.Metadata, r.MetadataSize, err)
	}
	if b := get(t, e.b, "SAE_B1", k, 3, 0); b.Status != 0 || !bytes.Equal(b.Key, ok.Key) || b.Metadata != nil {
		t.Errorf("GetKey(3) at B = %v; want the same key, no metadata", b.Status)
	}
}

const DefaultChunk = streams.DefaultChunkSize

// Checklist 6: a predefined KSID the peer never opens.
func TestPeerNeverConnects(t *testing.T) {
	e := newEnv(t, true)
	k, _ := etsi004.NewKSID()
	start := e.clk.Now()
	r := open(t, e.a, "SAE_A1", "SAE_B1", etsi004.QoS{Timeout: 1500}, k)
	if r.Status != etsi004.StatusTimeout {
		t.Fatalf("OpenConnect(predefined, no peer) = %v, want 6", r.Status)
	}
	if el := e.clk.Now().Sub(start); el != 1500*time.Millisecond {
		t.Errorf("OpenConnect returned after %v, want the timeout 1.5s", el)
	}
	if g := get(t, e.a, "SAE_A1", k, 0, 0); g.Status != etsi004.StatusPeerNotConnectedGK {
		t.Errorf("GetKey after the timeout = %v, want 3", g.Status)
	}
}

// A predefined KSID opened at both ends, in turn and at the same time.
func TestPredefinedKSID(t *testing.T) {
	for _, name := range []string{"in turn", "at once"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, false)
			k, _ := etsi004.NewKSID()
			var ra, rb etsi004.OpenResponse
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				ra, _ = e.a.OpenConnect(ctx, "SAE_A1", etsi004.OpenRequest{Source: "SAE_A1", Destination: "SAE_B1", KeyStreamID: k})
			}()
			if name == "in turn" {
				linktest.WaitFor(t, "the announcement", func() bool { return len(e.b.Streams()) == 1 })
			}
			rb = open(t, e.b, "SAE_B1", "SAE_A1", etsi004.QoS{}, k)
			wg.Wait()
			if ra.Status != 0 || rb.Status != 0 {
				t.Fatalf("OpenConnect at A = %v, at B = %v; want 0 and 0", ra.Status, rb.Status)
			}
			ga, gb := get(t, e.a, "SAE_A1", k, 2, 0), get(t, e.b, "SAE_B1", k, 2, 0)
			if ga.Status != 0 || !bytes.Equal(ga.Key, gb.Key) {
				t.Fatalf("GetKey(2) = %v at A, %v at B; want the same key", ga.Status, gb.Status)
			}
		})
	}
}

// pairKeys counts the keys a store holds on the link: the stream's chunks
// (tagged with the stream, ListKeys does not list them).
func pairKeys(t *testing.T, s keystore.Store) int {
	t.Helper()
	st := linktest.Stats(t, s)
	return st.KeysReady + st.KeysPending
}

// Checklist 7: CLOSE at both ends.
func TestCloseBothEnds(t *testing.T) {
	e := newEnv(t, false)
	k := e.connected(t, etsi004.QoS{})
	get(t, e.a, "SAE_A1", k, 0, 0)
	if r, err := e.a.Close(ctx, "SAE_A1", etsi004.CloseRequest{KeyStreamID: k}); err != nil || r.Status != 0 {
		t.Fatalf("Close at A = %v, %v", r.Status, err)
	}
	if g := get(t, e.a, "SAE_A1", k, 1, 0); g.Status != etsi004.StatusPeerNotConnectedGK {
		t.Errorf("GetKey at A after CLOSE = %v, want 3", g.Status)
	}
	if g := get(t, e.b, "SAE_B1", k, 0, 0); g.Status != 0 {
		t.Errorf("GetKey at B after A's CLOSE = %v, want 0 (keys kept until the peer closes)", g.Status)
	}
	if pairKeys(t, e.p.SB) == 0 {
		t.Fatal("B holds no keys of the stream before it closes")
	}
	if r, _ := e.b.Close(ctx, "SAE_B1", etsi004.CloseRequest{KeyStreamID: k}); r.Status != 0 {
		t.Fatalf("Close at B = %v", r.Status)
	}
	if g := get(t, e.b, "SAE_B1", k, 1, 0); g.Status == 0 {
		t.Errorf("GetKey at B after both CLOSEs = %v, want an error status", g.Status)
	}
	linktest.WaitFor(t, "deletion of the unused keys", func() bool { return pairKeys(t, e.p.SA) == 0 && pairKeys(t, e.p.SB) == 0 })
	if r, _ := e.b.Close(ctx, "SAE_B1", etsi004.CloseRequest{KeyStreamID: k}); r.Status == 0 {
		t.Error("Close of a closed stream succeeded")
	}
}

// Checklist 7: the peer never closes: the keys go after TTL.
func TestTTL(t *testing.T) {
	e := newEnv(t, true)
	k := e.connected(t, etsi004.QoS{TTL: 60})
	get(t, e.a, "SAE_A1", k, 0, 0)
	e.a.Close(ctx, "SAE_A1", etsi004.CloseRequest{KeyStreamID: k})
	e.a.Sweep(ctx)
	if pairKeys(t, e.p.SA) == 0 {
		t.Fatal("keys deleted before TTL")
	}
	e.clk.Advance(61 * time.Second)
	e.a.Sweep(ctx)
	if n, m := pairKeys(t, e.p.SA), pairKeys(t, e.p.SB); n != 0 || m != 0 {
		t.Errorf("after TTL: %d keys at A, %d at B; want 0", n, m)
	}
}

// max_bps is never exceeded, on the injected clock.
func TestMaxBps(t *testing.T) {
	e := newEnv(t, true)
	const chunk, maxBps = 32, 1000 // 256 bits per chunk: one per 256 ms
	k := e.connected(t, etsi004.QoS{KeyChunkSize: chunk, MaxBps: maxBps})
	for _, end := range []struct {
		s      *streams.Service
		caller qkd.SAEID
	}{{e.a, "SAE_A1"}, {e.b, "SAE_B1"}} {
		var times []time.Time
		for i := range uint32(30) {
			if r := get(t, end.s, end.caller, k, i, 0); r.Status != 0 {
				t.Fatalf("GetKey(%d) at %s = %v", i, end.caller, r.Status)
			}
			times = append(times, e.clk.Now())
		}
		for i := range times {
			for j := i + 1; j < len(times); j++ {
				w := times[j].Sub(times[i])
				bits := float64((j - i + 1) * chunk * 8)
				if w >= time.Second && bits > maxBps*w.Seconds()+chunk*8 {
					t.Fatalf("%s: %v bits in %v: above max_bps %d", end.caller, bits, w, maxBps)
				}
			}
		}
		if el := times[len(times)-1].Sub(times[0]); el < 29*256*time.Millisecond {
			t.Errorf("%s: 30 chunks in %v, want at least %v", end.caller, el, 29*256*time.Millisecond)
		}
	}
}

// A node restart keeps the stream.
func TestRestart(t *testing.T) {
	e := newEnv(t, false)
	k := e.connected(t, etsi004.QoS{KeyChunkSize: 16})
	a0, b0 := get(t, e.a, "SAE_A1", k, 0, 0), get(t, e.b, "SAE_B1", k, 0, 0)
	if !bytes.Equal(a0.Key, b0.Key) {
		t.Fatal("chunk 0 differs")
	}
	e.a.Shutdown()
	e.b.Shutdown()
	e.a, e.b = e.service(t, "A"), e.service(t, "B")
	if n := len(e.a.Streams()); n != 1 || e.a.OpenStreams() != 1 {
		t.Fatalf("after restart A knows %d streams, %d open; want 1", n, e.a.OpenStreams())
	}
	for _, i := range []uint32{1, 100} {
		a, b := get(t, e.a, "SAE_A1", k, i, 0), get(t, e.b, "SAE_B1", k, i, 0)
		if a.Status != 0 || b.Status != 0 || !bytes.Equal(a.Key, b.Key) {
			t.Fatalf("after restart GetKey(%d) = %v at A, %v at B; want the same key", i, a.Status, b.Status)
		}
	}
	if r := get(t, e.a, "SAE_A1", k, 0, 0); r.Status != etsi004.StatusInsufficientKey {
		t.Errorf("after restart GetKey(0) again = %v, want 2", r.Status)
	}
}
