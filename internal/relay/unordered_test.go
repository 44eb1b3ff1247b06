package relay_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

// installDir configures stream s from chain end src to chain end dst; at
// intermediate nodes the two hops are given in chain order (Prev the lower
// index) whatever the direction, or swapped when swap says so for that
// node, as QUICKS next_node_info names them: unordered.
func (c *chain) installDir(t *testing.T, s string, src, dst int, swap func(i int) bool) {
	t.Helper()
	lo, hi := min(src, dst), max(src, dst)
	for i := lo; i <= hi; i++ {
		en := relay.Entry{Stream: s, Source: c.ids[src], Dest: c.ids[dst], Master: sae(src), Slaves: []qkd.SAEID{sae(dst)}}
		switch {
		case i == src && src < dst, i == dst && dst < src:
			en.Next = c.ids[i+1]
		case i == src, i == dst:
			en.Next = c.ids[i-1]
		default:
			en.Prev, en.Next = c.ids[i-1], c.ids[i+1]
			if swap != nil && swap(i) {
				en.Prev, en.Next = en.Next, en.Prev
			}
		}
		if i == dst {
			en.Prev, en.Next = en.Next, ""
		}
		if err := c.engines[i].Install(en); err != nil {
			t.Fatalf("Install(%+v) at %s = %v", en, c.ids[i], err)
		}
	}
}

// takeBetween fetches keys at both ends of a relay from src to dst and
// compares them.
func (c *chain) takeBetween(t *testing.T, ids []qkd.KeyID, src, dst int) {
	t.Helper()
	ctx := context.Background()
	a, err := c.stores[src].TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: sae(src), Caller: sae(src), Now: time.Now()})
	if err != nil {
		t.Fatalf("source TakeByID = %v", err)
	}
	b, err := c.stores[dst].TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: sae(src), Caller: sae(dst), Now: time.Now()})
	if err != nil {
		t.Fatalf("destination TakeByID = %v", err)
	}
	for i := range ids {
		if !a[i].Data.Equal(b[i].Data) {
			t.Fatalf("key %d differs between source and destination", i)
		}
	}
}

// TestRelayUnorderedIntermediateHops: intermediate entries whose two hops
// are given in either order relay in both directions of the chain.
func TestRelayUnorderedIntermediateHops(t *testing.T) {
	c := newChain(t, 4)
	c.push(t, 16, 4096)
	c.waitMaterial(t)
	for i, tc := range []struct {
		name     string
		src, dst int
		swap     func(int) bool
	}{
		{"forward, ordered", 0, 4, nil},
		{"forward, all swapped", 0, 4, func(int) bool { return true }},
		{"forward, mixed", 0, 4, func(i int) bool { return i == 2 }},
		{"backward, chain order", 4, 0, nil},
		{"backward, swapped", 4, 0, func(int) bool { return true }},
		{"backward, mixed", 4, 0, func(i int) bool { return i != 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fmt.Sprintf("s%d", i)
			c.installDir(t, s, tc.src, tc.dst, tc.swap)
			ids, err := c.engines[tc.src].Relay(context.Background(), s, 256, 3, time.Hour)
			if err != nil {
				t.Fatalf("Relay = %v", err)
			}
			c.takeBetween(t, ids, tc.src, tc.dst)
		})
	}
}

func TestInstallChecks(t *testing.T) {
	c := newChain(t, 2)
	base := relay.Entry{Stream: "s", Source: "N0", Dest: "N2", Master: sae(0), Slaves: []qkd.SAEID{sae(2)}}
	with := func(f func(*relay.Entry)) relay.Entry { en := base; f(&en); return en }
	for _, tc := range []struct {
		name string
		node int
		en   relay.Entry
		ok   bool
	}{
		{"intermediate ordered", 1, with(func(e *relay.Entry) { e.Prev, e.Next = "N0", "N2" }), true},
		{"intermediate unordered", 1, with(func(e *relay.Entry) { e.Prev, e.Next = "N2", "N0" }), true},
		{"intermediate one hop only", 1, with(func(e *relay.Entry) { e.Next = "N2" }), false},
		{"intermediate same hop twice", 1, with(func(e *relay.Entry) { e.Prev, e.Next = "N2", "N2" }), false},
		{"source", 0, with(func(e *relay.Entry) { e.Next = "N1" }), true},
		{"source with a previous hop", 0, with(func(e *relay.Entry) { e.Prev, e.Next = "N1", "N1" }), false},
		{"destination", 2, with(func(e *relay.Entry) { e.Prev = "N1" }), true},
		{"destination with a next hop", 2, with(func(e *relay.Entry) { e.Prev, e.Next = "N1", "N1" }), false},
		{"hop not a neighbour", 0, with(func(e *relay.Entry) { e.Next = "N2" }), false},
		{"source is destination", 0, with(func(e *relay.Entry) { e.Dest, e.Next = "N0", "N1" }), false},
		{"no slaves", 0, with(func(e *relay.Entry) { e.Slaves, e.Next = nil, "N1" }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.engines[tc.node].Install(tc.en)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, relay.ErrBadEntry)) {
				t.Fatalf("Install(%+v) at N%d = %v, want ok %v", tc.en, tc.node, err, tc.ok)
			}
		})
	}
}

// TestHandleForwardChecksEntry: a step is refused (no keys anywhere) when
// the intermediate's entry does not match it, whatever the hop order.
func TestHandleForwardChecksEntry(t *testing.T) {
	c := newChain(t, 2)
	c.push(t, 16, 4096)
	c.waitMaterial(t)
	ok := relay.Entry{Source: "N0", Dest: "N2", Master: sae(0), Slaves: []qkd.SAEID{sae(2)}, Prev: "N2", Next: "N0"}
	for i, tc := range []struct {
		name string
		mid  func(*relay.Entry) // nil: no entry at N1
		want bool
	}{
		{"unordered hops", func(*relay.Entry) {}, true},
		{"no entry", nil, false},
		{"other master", func(e *relay.Entry) { e.Master = sae(7) }, false},
		{"other slaves", func(e *relay.Entry) { e.Slaves = []qkd.SAEID{sae(2), sae(7)} }, false},
		{"other source", func(e *relay.Entry) { e.Source, e.Dest = "N2", "N0" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fmt.Sprintf("h%d", i)
			c.installEnds(t, s)
			if tc.mid != nil {
				en := ok
				en.Stream = s
				tc.mid(&en)
				if err := c.engines[1].Install(en); err != nil {
					t.Fatal(err)
				}
			}
			ids, err := c.engines[0].Relay(context.Background(), s, 256, 2, time.Hour)
			if (err == nil) != tc.want {
				t.Fatalf("Relay = %v, want success %v", err, tc.want)
			}
			if tc.want {
				c.take(t, ids)
				return
			}
			c.noKeys(t, 0, 2)
		})
	}
}

// installEnds configures stream s at the two ends of a 2-hop chain only.
func (c *chain) installEnds(t *testing.T, s string) {
	t.Helper()
	if err := c.engines[0].Install(relay.Entry{Stream: s, Source: "N0", Dest: "N2", Master: sae(0), Slaves: []qkd.SAEID{sae(2)}, Next: "N1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.engines[2].Install(relay.Entry{Stream: s, Source: "N0", Dest: "N2", Master: sae(0), Slaves: []qkd.SAEID{sae(2)}, Prev: "N1"}); err != nil {
		t.Fatal(err)
	}
}

// noKeys fails if any node holds a deliverable key of (sae(src), sae(dst)).
func (c *chain) noKeys(t *testing.T, src, dst int) {
	t.Helper()
	for i := range c.ids {
		for _, caller := range []qkd.SAEID{sae(src), sae(dst)} {
			n, err := c.stores[i].CountKeys(context.Background(), keystore.TakeRequest{Master: sae(src), Slaves: []qkd.SAEID{sae(dst)},
				Caller: caller, SizeBits: 256, Now: time.Now()})
			if err != nil || n != 0 {
				t.Fatalf("%s holds %d keys for %s (err %v), want 0", c.ids[i], n, caller, err)
			}
		}
	}
}
