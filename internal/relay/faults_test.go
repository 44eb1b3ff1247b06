package relay_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

// result of a relay started in the background.
type result struct {
	ids []qkd.KeyID
	err error
}

func relayAsync(e *relay.Engine, stream string, n int) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ids, err := e.Relay(context.Background(), stream, 256, n, time.Hour)
		ch <- result{ids, err}
	}()
	return ch
}

func wait[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

// held waits until a held message reached its pipe.
func held(t *testing.T, h *linktest.Held) {
	t.Helper()
	wait(t, "the held forward_keys", h.Arrived())
}

// keysOn counts the keys (Ready and Pending) a node holds on a link.
func (c *chain) keysOn(t *testing.T, node int, l qkd.LinkID) int {
	t.Helper()
	st, err := c.stores[node].Stats(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	return st.KeysReady + st.KeysPending
}

// checkEnds asserts that both ends hold exactly the relayed keys,
// identical, and that each is delivered once.
func (c *chain) checkEnds(t *testing.T, ids []qkd.KeyID, src, dst int, srcLink, dstLink qkd.LinkID) {
	t.Helper()
	if got := c.keysOn(t, src, srcLink); got != len(ids) {
		t.Fatalf("source %s holds %d keys, want %d", c.ids[src], got, len(ids))
	}
	if got := c.keysOn(t, dst, dstLink); got != len(ids) {
		t.Fatalf("destination %s holds %d keys, want %d", c.ids[dst], got, len(ids))
	}
	c.takeBetween(t, ids, src, dst)
	ctx := context.Background()
	for _, end := range []int{src, dst} {
		if _, err := c.stores[end].TakeByID(ctx, keystore.TakeRequest{IDs: ids[:1], Master: sae(src), Caller: sae(end), Now: time.Now()}); !errors.Is(err, qkd.ErrNotFound) {
			t.Fatalf("second TakeByID at %s = %v, want ErrNotFound", c.ids[end], err)
		}
	}
}

// TestRelayUnderMessageFaults: forward_keys lost on the way, with lost
// replies, or delivered twice, on every hop: the ends never diverge and
// every key exists exactly once at each end.
func TestRelayUnderMessageFaults(t *testing.T) {
	hops := []string{"0>1", "1>2", "2>3"}
	for _, tc := range []struct {
		name   string
		faults func(p *linktest.Pipe)
	}{
		{"lost requests", func(p *linktest.Pipe) { p.DropRequests(kmsproto.ForwardKeys, 2) }},
		{"lost replies", func(p *linktest.Pipe) { p.DropReplies(kmsproto.ForwardKeys, 2) }},
		{"duplicated", func(p *linktest.Pipe) { p.Duplicate(kmsproto.ForwardKeys, 2) }},
		{"all at once", func(p *linktest.Pipe) {
			p.DropRequests(kmsproto.ForwardKeys, 1)
			p.DropReplies(kmsproto.ForwardKeys, 1)
			p.Duplicate(kmsproto.ForwardKeys, 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChain(t, 3)
			c.push(t, 12, 2048)
			c.waitMaterial(t)
			c.install(t, "s")
			for _, h := range hops {
				tc.faults(c.pipes[h])
			}
			ids, err := c.engines[0].Relay(context.Background(), "s", 256, 4, time.Hour)
			if err != nil {
				t.Fatalf("Relay = %v", err)
			}
			for _, h := range hops {
				if c.pipes[h].Sent(kmsproto.ForwardKeys) < 2 && tc.name != "duplicated" {
					t.Fatalf("hop %s carried %d forward_keys: the fault was not exercised", h, c.pipes[h].Sent(kmsproto.ForwardKeys))
				}
			}
			if tc.name == "duplicated" {
				for _, h := range hops {
					if c.pipes[h].DuplicatesRefused() == 0 {
						t.Fatalf("hop %s: a duplicated forward_keys was accepted twice", h)
					}
				}
			}
			c.checkEnds(t, ids, 0, 3, "N0-N1", "N2-N3")
		})
	}
}

// TestRelayReordered: a forward_keys held back on N1→N2 is overtaken by a
// later one (a relay that starts at N1). The later one names material
// after the held one's, so N2 refuses it (Retry, consuming nothing) until
// the held one arrived; then both complete, intact.
func TestRelayReordered(t *testing.T) {
	c := newChain(t, 3)
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	c.install(t, "a")
	c.installDir(t, "b", 1, 3, nil)
	h := c.pipes["1>2"].HoldNext(kmsproto.ForwardKeys)
	ra := relayAsync(c.engines[0], "a", 3)
	held(t, h)
	rb := relayAsync(c.engines[1], "b", 2)
	linktest.WaitFor(t, "the later step to overtake the held one and be retried", func() bool {
		return c.pipes["1>2"].Sent(kmsproto.ForwardKeys) >= 3
	})
	h.Release()
	a, b := wait(t, "the held relay", ra), wait(t, "the overtaking relay", rb)
	if a.err != nil || b.err != nil {
		t.Fatalf("Relay of the held step = %v, of the overtaking one = %v", a.err, b.err)
	}
	if got := c.keysOn(t, 3, "N2-N3"); got != len(a.ids)+len(b.ids) {
		t.Fatalf("N3 holds %d keys, want %d", got, len(a.ids)+len(b.ids))
	}
	c.takeBetween(t, a.ids, 0, 3)
	c.takeBetween(t, b.ids, 1, 3)
	if n := c.keysOn(t, 3, "N2-N3"); n != 0 {
		t.Fatalf("N3 keeps %d keys after both relays were taken", n)
	}
}

// TestRelayTableChangeInFlight: the stream N0→N1→N2→N3→N4 is moved to
// N0→N1→N5→N3→N4 while a step recorded at N1, N2 and N3 waits at the next
// hop N4 (N2 loses its entry). The step finishes along its recorded route;
// its retry after a lost reply is the identical message, answered from
// N1's reply cache without travelling again; new steps take the new route;
// a step reaching a node without an entry is refused and the source drops
// its keys.
func TestRelayTableChangeInFlight(t *testing.T) {
	c := newGraph(t, 6, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {1, 5}, {3, 5}})
	c.push(t, 16, 2048)
	c.waitMaterial(t)
	base := relay.Entry{Stream: "s", Source: "N0", Dest: "N4", Master: sae(0), Slaves: []qkd.SAEID{sae(4)}}
	install := func(node int, prev, next qkd.NodeID) {
		t.Helper()
		en := base
		en.Prev, en.Next = prev, next
		if err := c.engines[node].Install(en); err != nil {
			t.Fatal(err)
		}
	}
	install(0, "", "N1")
	install(1, "N2", "N0")
	install(2, "N1", "N3")
	install(3, "N4", "N2")
	install(4, "N3", "")

	// The first reply to the source is lost: the source retries after
	// the table changed.
	c.pipes["0>1"].DropReplies(kmsproto.ForwardKeys, 1)
	h := c.pipes["3>4"].HoldNext(kmsproto.ForwardKeys)
	r1 := relayAsync(c.engines[0], "s", 3)
	held(t, h)
	install(1, "N0", "N5")
	install(5, "N3", "N1")
	install(3, "N5", "N4")
	c.engines[2].Remove("s")
	h.Release()
	first := wait(t, "the recorded step", r1)
	if first.err != nil {
		t.Fatalf("Relay recorded before the change = %v", first.err)
	}
	if got := c.pipes["0>1"].Sent(kmsproto.ForwardKeys); got != 2 {
		t.Fatalf("hop 0>1 carried %d forward_keys, want the step and its retry", got)
	}
	for hop, want := range map[string]int{"1>2": 1, "2>3": 1, "3>4": 1, "1>5": 0, "5>3": 0} {
		if got := c.pipes[hop].Sent(kmsproto.ForwardKeys); got != want {
			t.Fatalf("hop %s carried %d forward_keys of the recorded step (its retry answered at N1), want %d", hop, got, want)
		}
	}
	c.checkEnds(t, first.ids, 0, 4, "N0-N1", "N3-N4")

	second, err := c.engines[0].Relay(context.Background(), "s", 256, 2, time.Hour)
	if err != nil {
		t.Fatalf("Relay after the change = %v", err)
	}
	if c.pipes["1>5"].Sent(kmsproto.ForwardKeys) != 1 || c.pipes["5>3"].Sent(kmsproto.ForwardKeys) != 1 || c.pipes["1>2"].Sent(kmsproto.ForwardKeys) != 1 {
		t.Fatal("a new step did not follow the new route N1→N5→N3")
	}
	c.checkEnds(t, second, 0, 4, "N0-N1", "N3-N4")

	c.engines[5].Remove("s")
	if ids, err := c.engines[0].Relay(context.Background(), "s", 256, 2, time.Hour); err == nil {
		t.Fatalf("Relay through a node without an entry = %v, nil", ids)
	}
	if n := c.keysOn(t, 0, "N0-N1"); n != 0 {
		t.Fatalf("the source keeps %d keys of a refused relay", n)
	}
	if n := c.keysOn(t, 4, "N3-N4"); n != 0 {
		t.Fatalf("the destination holds %d keys of a refused relay", n)
	}
}

// TestRelayTamperedForward: forward_keys corrupted on N1→N2 fail N2's MAC
// check; N2 consumes nothing and stores nothing; once the corruption
// stops the relay completes with identical keys.
func TestRelayTamperedForward(t *testing.T) {
	c := newChain(t, 2)
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	linktest.WaitFor(t, "every block confirmed", func() bool {
		for i := range c.ids {
			for _, l := range c.links[i] {
				if st, err := c.stores[i].Stats(context.Background(), l.ID()); err != nil || st.UnconfirmedBlocks != 0 {
					return false
				}
			}
		}
		return true
	})
	c.install(t, "s")
	before, err := c.stores[2].Stats(context.Background(), "N1-N2")
	if err != nil {
		t.Fatal(err)
	}
	var tampered atomic.Int64
	c.pipes["1>2"].SetTamper(func(ty kmsproto.Type, p []byte) []byte {
		if ty != kmsproto.ForwardKeys {
			return p
		}
		tampered.Add(1)
		q := append([]byte(nil), p...)
		q[len(q)/2] ^= 0x01
		return q
	})
	r := relayAsync(c.engines[0], "s", 4)
	linktest.WaitFor(t, "three tampered forwards rejected at N2", func() bool { return c.macFail[2].n.Load() >= 3 })
	during, err := c.stores[2].Stats(context.Background(), "N1-N2")
	if err != nil {
		t.Fatal(err)
	}
	if during.KeysReady+during.KeysPending != 0 || during.ConfirmedBytes[0] != before.ConfirmedBytes[0] {
		t.Fatalf("N2 acted on a tampered forward: keys %d, free material of N1's parity %d → %d",
			during.KeysReady+during.KeysPending, before.ConfirmedBytes[0], during.ConfirmedBytes[0])
	}
	c.pipes["1>2"].SetTamper(nil)
	res := wait(t, "the relay after the tampering stopped", r)
	if res.err != nil {
		t.Fatalf("Relay = %v", res.err)
	}
	if tampered.Load() < 3 {
		t.Fatalf("%d forwards tampered with", tampered.Load())
	}
	c.checkEnds(t, res.ids, 0, 2, "N0-N1", "N1-N2")
}
