package kms_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

// poolRelayer makes a remote pair's keys with a reservation over link A-B,
// as a relay leaves them at the source (Ready for the pair), and counts
// what it was asked for. With gate set, each call waits for a token.
type poolRelayer struct {
	l    *link.Link
	gate chan struct{} // guarded by mu

	mu      sync.Mutex
	calls   []int // keys asked per call; guarded by mu
	running int   // guarded by mu
	peak    int   // guarded by mu
}

func (r *poolRelayer) Relay(ctx context.Context, stream string, size, n int, ttl time.Duration) ([]qkd.KeyID, error) {
	r.mu.Lock()
	r.calls = append(r.calls, n)
	r.running++
	r.peak = max(r.peak, r.running)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running--
		r.mu.Unlock()
	}()
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return r.l.Reserve(ctx, "SAE_A1", []qkd.SAEID{"SAE_C1"}, size, n, ttl)
}

func (r *poolRelayer) RelayGroup(context.Context, []relay.Leg, qkd.SAEID, []qkd.SAEID, int, int, time.Duration) ([]qkd.KeyID, error) {
	panic("not used")
}

func (r *poolRelayer) asked() (calls, keys int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.calls {
		keys += n
	}
	return len(r.calls), keys
}

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type aheadNet struct {
	p     *linktest.Pair
	a     *kms.Service
	rel   *poolRelayer
	clk   *clock
	store keystore.Store
}

func newAheadNet(t *testing.T, horizon time.Duration, limit int) *aheadNet {
	t.Helper()
	p := linktest.NewPair(t, linktest.Options{SAEs: mcSAEs})
	lim := limits
	lim.Prereserve, lim.RelayAhead, lim.RelayAheadMax = 0, horizon, limit
	n := &aheadNet{p: p, rel: &poolRelayer{l: p.A}, clk: &clock{t: time.Now()}, store: p.SA}
	var err error
	if n.a, err = kms.New(kms.Options{Node: "A", Store: p.SA, Links: []kms.Link{p.A}, SAEs: mcSAEs, Limits: lim,
		Router: &fakeRouter{}, Relayer: n.rel, Now: n.clk.now}); err != nil {
		t.Fatal(err)
	}
	p.Push(t, 64, 1024, nil)
	linktest.WaitFor(t, "material confirmed", func() bool {
		return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Confirmed(t, p.SA) > 16*1024
	})
	return n
}

func (n *aheadNet) pool(t *testing.T) int {
	t.Helper()
	c, err := n.store.CountKeys(context.Background(), keystore.TakeRequest{Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_C1"},
		Caller: "SAE_A1", SizeBits: 256, Now: n.clk.now()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRelayAheadFollowsDemand(t *testing.T) {
	ctx := context.Background()
	n := newAheadNet(t, 2*time.Second, 200)

	// 10 requests of 8 keys within one second: the first relays on demand.
	for range 10 {
		if _, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_C1", kms.KeyRequest{Number: 8}); err != nil {
			t.Fatalf("EncKeys = %v", err)
		}
		n.clk.add(100 * time.Millisecond)
	}
	onDemand, _ := n.rel.asked()
	if onDemand != 10 {
		t.Fatalf("on-demand relays before any pool = %d, want 10", onDemand)
	}
	// One round: 80 keys/s weighted 0.3 → 24 keys/s × 2 s = 48 keys.
	n.a.RelayAheadOnce(ctx)
	if got := n.pool(t); got != 48 {
		t.Fatalf("pool after one round = %d keys, want 48 (2 s of the measured demand)", got)
	}
	// Requests are now served from the pool: no relay on their path.
	calls, _ := n.rel.asked()
	for range 6 {
		if _, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_C1", kms.KeyRequest{Number: 8}); err != nil {
			t.Fatalf("EncKeys from the pool = %v", err)
		}
	}
	if after, _ := n.rel.asked(); after != calls {
		t.Fatalf("relays while the pool lasted = %d, want 0", after-calls)
	}
	if got := n.pool(t); got != 0 {
		t.Fatalf("pool after 48 keys taken = %d, want 0", got)
	}
	// Heavy demand is capped by RelayAheadMax.
	for range 16 {
		n.a.EncKeys(ctx, "SAE_A1", "SAE_C1", kms.KeyRequest{Number: 16})
	}
	n.clk.add(100 * time.Millisecond)
	n.a.RelayAheadOnce(ctx)
	if got := n.pool(t); got != 200 {
		t.Fatalf("pool under heavy demand = %d, want the cap 200", got)
	}
	// An idle pair is forgotten: no more relays for it.
	n.clk.add(2 * time.Minute)
	calls, _ = n.rel.asked()
	n.a.RelayAheadOnce(ctx)
	if after, _ := n.rel.asked(); after != calls {
		t.Fatalf("relays for a pair idle for 2 min = %d, want 0", after-calls)
	}
}

func TestRelayAheadBoundsBatchesInFlight(t *testing.T) {
	ctx := context.Background()
	n := newAheadNet(t, time.Minute, 8000)
	for range 20 {
		n.a.EncKeys(ctx, "SAE_A1", "SAE_C1", kms.KeyRequest{Number: 16})
	}
	onDemand, _ := n.rel.asked()
	n.clk.add(time.Second)
	// The demand asks for 8 batches; the relays now hang at the gate.
	gate := make(chan struct{})
	n.rel.mu.Lock()
	n.rel.gate = gate
	n.rel.mu.Unlock()
	n.a.RelayAheadStart(ctx)
	linktest.WaitFor(t, "batches on the route", func() bool {
		n.rel.mu.Lock()
		defer n.rel.mu.Unlock()
		return n.rel.running == 4
	})
	// A second round while they hang starts nothing more.
	n.clk.add(200 * time.Millisecond)
	n.a.RelayAheadStart(ctx)
	if calls, _ := n.rel.asked(); calls-onDemand != 4 {
		t.Fatalf("relay batches started for one pair = %d, want 4 (maxAheadInFlight)", calls-onDemand)
	}
	close(gate)
	n.a.RelayAheadWait()
	// The link holds less than 4 batches of 1024 keys: the batches that
	// failed for want of material make the next ones smaller, until some
	// fit.
	for round := 0; n.pool(t) == 0; round++ {
		if round == 10 {
			t.Fatalf("pool still empty after %d rounds: batch sizes do not adapt to the material", round)
		}
		n.clk.add(200 * time.Millisecond)
		n.a.RelayAheadOnce(ctx)
	}
}

// backRelayer is poolRelayer that also relays back: the slave's node (A,
// SAE_A1) of the remote pair SAE_C1→SAE_A1 relays keys of the pair along
// its stream back to C. Here that leaves the keys as a reservation over
// A-B does: Ready at A for SAE_A1.
type backRelayer struct {
	poolRelayer
	back []int // keys asked per RelayBack call; guarded by poolRelayer.mu
}

func (r *backRelayer) BackStream(master qkd.SAEID, slaves []qkd.SAEID) (string, bool) {
	if master == "SAE_C1" && len(slaves) == 1 && slaves[0] == "SAE_A1" {
		return "C1-A1", true
	}
	return "", false
}

func (r *backRelayer) RelayBack(ctx context.Context, stream string, size, n int, ttl time.Duration) ([]qkd.KeyID, error) {
	r.mu.Lock()
	r.back = append(r.back, n)
	r.mu.Unlock()
	if stream != "C1-A1" {
		return nil, qkd.ErrNoRoute
	}
	return r.l.Reserve(ctx, "SAE_C1", []qkd.SAEID{"SAE_A1"}, size, n, ttl)
}

// TestRelayAheadBack: the slave's node of a remote pair relays ahead too,
// back along the pair's stream, sized by its slave's fetches (dec_keys)
// and counting the keys its slave has not fetched yet; a node whose
// slaves fetch nothing relays nothing back.
func TestRelayAheadBack(t *testing.T) {
	ctx := context.Background()
	n := newAheadNet(t, 2*time.Second, 200)
	rel := &backRelayer{poolRelayer: poolRelayer{l: n.p.A}}
	lim := limits
	lim.Prereserve, lim.RelayAhead, lim.RelayAheadMax = 0, 2*time.Second, 200
	a, err := kms.New(kms.Options{Node: "A", Store: n.p.SA, Links: []kms.Link{n.p.A}, SAEs: mcSAEs, Limits: lim,
		Router: &fakeRouter{}, Relayer: rel, Now: n.clk.now})
	if err != nil {
		t.Fatal(err)
	}
	backs := func() (calls, keys int) {
		rel.mu.Lock()
		defer rel.mu.Unlock()
		for _, k := range rel.back {
			keys += k
		}
		return len(rel.back), keys
	}
	a.RelayAheadOnce(ctx)
	if calls, _ := backs(); calls != 0 {
		t.Fatalf("relays back with no fetch = %d, want 0", calls)
	}
	// The master's node sent 80 keys of the pair; SAE_A1 fetches them,
	// 8 per request over one second.
	ids, err := n.p.A.Reserve(ctx, "SAE_C1", []qkd.SAEID{"SAE_A1"}, 256, 80, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 80; i += 8 {
		got, err := a.DecKeys(ctx, "SAE_A1", "SAE_C1", ids[i:i+8])
		if err != nil || len(got) != 8 {
			t.Fatalf("DecKeys = %d keys, %v", len(got), err)
		}
		n.clk.add(100 * time.Millisecond)
	}
	// 80 keys/s weighted 0.3 → 24 keys/s × 2 s = 48 keys, none left.
	a.RelayAheadOnce(ctx)
	calls, keys := backs()
	if calls != 1 || keys != 48 {
		t.Fatalf("relayed back %d keys in %d batches, want 48 in 1", keys, calls)
	}
	if relays, _ := rel.asked(); relays != 0 {
		t.Errorf("relays from this end as the master's = %d, want 0 (it has no master of the pair)", relays)
	}
	have, err := n.p.SA.CountKeys(ctx, keystore.TakeRequest{Master: "SAE_C1", Slaves: []qkd.SAEID{"SAE_A1"},
		Caller: "SAE_A1", SizeBits: 256, Now: n.clk.now()})
	if err != nil || have != 48 {
		t.Fatalf("keys of the pair not fetched yet = %d, %v; want 48", have, err)
	}
	// The pool is counted: a round with it full relays nothing more.
	n.clk.add(100 * time.Millisecond)
	a.RelayAheadOnce(ctx)
	if calls, _ := backs(); calls != 1 {
		t.Fatalf("relays back with the pool full = %d, want 1", calls)
	}
}
