package qkdsim

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/device/pushproto"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNewLinkRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Rate: -1},
		{BlockSize: -1},
		{BlockSize: MaxBlockSize + 1},
		{Buffer: -3},
		{Heartbeat: -time.Second},
	} {
		if _, err := NewLink(o); err == nil {
			t.Errorf("NewLink(%+v) = nil error", o)
		}
	}
}

func TestProduceKeepsNewestBlocks(t *testing.T) {
	l, err := NewLink(Options{BlockSize: 16, Buffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown()
	if err := l.Produce(10); err != nil {
		t.Fatal(err)
	}
	want := EndStats{Overflow: 6, Buffered: 4}
	if got := l.End("a").Stats(); got != want {
		t.Errorf("End(a).Stats() = %+v, want %+v", got, want)
	}
	a, b := l.End("a"), l.End("b")
	for i := range 4 {
		x, y := a.buf.b[(a.buf.head+i)%4], b.buf.b[(b.buf.head+i)%4]
		if x.index != uint64(6+i) || string(x.data) != string(y.data) {
			t.Errorf("buffered block %d: index %d (want %d), ends equal %v", i, x.index, 6+i, string(x.data) == string(y.data))
		}
	}
	l.Shutdown()
	if err := l.Produce(1); err != ErrClosed {
		t.Errorf("Produce after Shutdown = %v, want ErrClosed", err)
	}
	if got := a.Stats().Buffered; got != 0 {
		t.Errorf("buffered after Shutdown = %d, want 0", got)
	}
}

func TestRunKeepsTheRate(t *testing.T) {
	clock := newFakeClock()
	// 1000-bit blocks at 100 kbit/s: one block per 10 ms.
	l, err := NewLink(Options{Rate: 100_000, BlockSize: 125, Buffer: 8, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	step := func(d time.Duration) {
		waitFor(t, "Run to wait for its tick", func() bool { return clock.pending() > 0 })
		clock.Advance(d)
	}
	produced := func(want uint64) {
		t.Helper()
		waitFor(t, "Run to wait again", func() bool { return clock.pending() > 0 })
		if got := l.Stats().Produced; got != want {
			t.Fatalf("produced %d blocks, want %d", got, want)
		}
	}
	for range 5 {
		step(10 * time.Millisecond)
	}
	produced(5)
	l.Pause(true)
	for range 3 {
		step(10 * time.Millisecond)
	}
	produced(5)
	l.Pause(false) // production counts again from the last paused tick
	step(10 * time.Millisecond)
	step(10 * time.Millisecond)
	produced(7)
	step(time.Second) // 100 blocks due; only a buffer's worth is made
	produced(15)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestMIDWindow(t *testing.T) {
	var w midWindow
	t0 := time.Unix(1_800_000_000, 0)
	for i := range MaxUDPBurst {
		if d := w.reserve(t0.Add(time.Duration(i) * time.Millisecond)); d != 0 {
			t.Fatalf("reserve #%d = %v, want 0", i, d)
		}
	}
	now := t0.Add(100 * time.Second)
	d := w.reserve(now)
	if d <= 0 || d > exchangeLifetime {
		t.Fatalf("reserve over budget = %v, want a wait up to %v", d, exchangeLifetime)
	}
	if got := now.Add(d).Sub(t0); got < exchangeLifetime {
		t.Errorf("budget frees after %v, want at least EXCHANGE_LIFETIME %v", got, exchangeLifetime)
	}
	if d := w.reserve(now.Add(d)); d != 0 {
		t.Errorf("reserve after the wait = %v, want 0", d)
	}
}

func TestObserveSequenceIncreases(t *testing.T) {
	clock := newFakeClock()
	l, err := NewLink(Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	e := l.End("a")
	const window = 1 << 23
	newer := func(a, b uint32) bool { d := (a - b) & (1<<24 - 1); return d != 0 && d < window }
	last := e.nextSeqLocked()
	for i := range 5000 {
		switch i % 3 {
		case 0:
			clock.Advance(time.Millisecond)
		case 1:
			clock.Advance(time.Hour) // a jump
		}
		s := e.nextSeqLocked()
		if !newer(s, last) {
			t.Fatalf("sequence %d after %d is not newer (RFC 7641 §4.4)", s, last)
		}
		last = s
	}
}

func TestOfferQoS(t *testing.T) {
	l, err := NewLink(Options{Rate: 1e6, BlockSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  pushproto.QoS
		ok   bool
	}{
		{"empty", pushproto.QoS{}, true},
		{"exact chunk", pushproto.QoS{KeyChunkSize: 256, MinBps: 1e6}, true},
		{"json metadata", pushproto.QoS{MetadataMimetype: "application/json"}, true},
		{"other chunk", pushproto.QoS{KeyChunkSize: 32}, false},
		{"too fast", pushproto.QoS{MinBps: 2e6}, false},
		{"xml metadata", pushproto.QoS{MetadataMimetype: "application/xml"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, ok := l.offer(tt.req)
			if ok != tt.ok || q.KeyChunkSize != 256 || q.MaxBps != 1e6 {
				t.Errorf("offer(%+v) = %+v, %v; want ok=%v, chunk 256, max_bps 1e6", tt.req, q, ok, tt.ok)
			}
			if !ok && tt.req.MetadataMimetype != "" && q.MetadataMimetype != MetadataMimetype {
				t.Errorf("offer(%+v) mimetype = %q, want the preferred %q", tt.req, q.MetadataMimetype, MetadataMimetype)
			}
		})
	}
}
