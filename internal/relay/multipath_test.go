package relay_test

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

// diamondEdges are N0—N1—N3 and N0—N2—N3: two node-disjoint routes from
// N0 (SAE_0) to N3 (SAE_3), N1 and N2 the only intermediate nodes.
var diamondEdges = [][2]int{{0, 1}, {1, 3}, {0, 2}, {2, 3}}

func newDiamond(t testing.TB) *chain {
	t.Helper()
	return newGraph(t, 4, diamondEdges)
}

// streamDiamond is the diamond (each engine's options changed by opt, if
// set) with material on every link and multipath stream "g" in mode over
// both routes (path rates as given, or none), N1 and N2 recording what
// they relay.
func streamDiamond(t *testing.T, mode string, rates []float64, opt func(int, *relay.Options)) (*chain, *spyLog) {
	t.Helper()
	c := newGraphWith(t, 4, diamondEdges, opt)
	spies := &spyLog{}
	spies.watch(c, 1, 2)
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	c.installPaths(t, "g", mode, rates, []int{0, 1, 3}, []int{0, 2, 3})
	return c, spies
}

// installPaths configures multipath stream group over the given routes
// (node indices, source first), path i as stream group-pi.
func (c *chain) installPaths(t testing.TB, group, mode string, rates []float64, routes ...[]int) {
	t.Helper()
	for p, r := range routes {
		src, dst := r[0], r[len(r)-1]
		for j, n := range r {
			en := relay.Entry{Stream: fmt.Sprintf("%s-p%d", group, p), Source: c.ids[src], Dest: c.ids[dst], Master: sae(src),
				Slaves: []qkd.SAEID{sae(dst)}, Group: group, Path: p, Paths: len(routes), Mode: mode}
			if rates != nil {
				en.Rate = rates[p]
			}
			if j > 0 {
				en.Prev = c.ids[r[j-1]]
			}
			if j < len(r)-1 {
				en.Next = c.ids[r[j+1]]
			}
			for _, n := range r {
				en.Route = append(en.Route, c.ids[n])
			}
			if err := c.engines[n].Install(en); err != nil {
				t.Fatalf("Install %s at %s: %v", en.Stream, c.ids[n], err)
			}
		}
	}
}

// recorder collects, per node, every key an honest-but-curious node saw
// in the clear while forwarding.
type spyLog struct {
	mu   sync.Mutex
	seen map[int]map[qkd.KeyID][][]byte // node → key → what it saw
}

func (s *spyLog) watch(c *chain, nodes ...int) {
	s.seen = map[int]map[qkd.KeyID][][]byte{}
	for _, i := range nodes {
		s.seen[i] = map[qkd.KeyID][][]byte{}
		relay.Spy(c.engines[i], func(ids []qkd.KeyID, plain []byte) {
			s.mu.Lock()
			defer s.mu.Unlock()
			size := len(plain) / len(ids)
			for j, id := range ids {
				s.seen[i][id] = append(s.seen[i][id], bytes.Clone(plain[j*size:(j+1)*size]))
			}
		}, nil)
	}
}

func (s *spyLog) at(node int, id qkd.KeyID) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[node][id]
}

func TestMultipathSpread(t *testing.T) {
	ctx := context.Background()
	c, spies := streamDiamond(t, relay.MultipathSpread, []float64{3000, 1000}, nil)

	if en, ok := c.engines[0].Lookup("g"); !ok || en.Group != "g" || en.Paths != 2 || en.Dest != c.ids[3] {
		t.Fatalf("Lookup(group) at the source = %+v, %v", en, ok)
	}
	if _, ok := c.engines[1].Lookup("g"); ok {
		t.Error("an intermediate node knows the group")
	}
	ids, err := c.engines[0].Relay(ctx, "g", 256, 16, time.Hour)
	if err != nil || len(ids) != 16 {
		t.Fatalf("Relay(spread) = %d keys, %v; want 16", len(ids), err)
	}
	c.take(t, ids)
	var via [2]int
	for _, id := range ids {
		n1, n2 := len(spies.at(1, id)), len(spies.at(2, id))
		if n1+n2 != 1 {
			t.Fatalf("key %s went over %d paths, want exactly one", id, n1+n2)
		}
		via[n2]++
	}
	if via != [2]int{12, 4} {
		t.Errorf("keys per path = %v, want [12 4] (rates 3:1)", via)
	}

	// The destination relays the pair's keys back over both paths too.
	stream, ok := c.engines[3].BackStream(sae(0), []qkd.SAEID{sae(3)})
	if !ok || stream != "g" {
		t.Fatalf("BackStream at the destination = %q, %v; want the group", stream, ok)
	}
	back, err := c.engines[3].RelayBack(ctx, "g", 256, 8, time.Hour)
	if err != nil || len(back) != 8 {
		t.Fatalf("RelayBack(spread) = %d keys, %v", len(back), err)
	}
	src, err := c.stores[0].TakeForPair(ctx, keystore.TakeRequest{Master: sae(0), Slaves: []qkd.SAEID{sae(3)},
		Caller: sae(0), SizeBits: 256, Number: 8, Now: time.Now()})
	if err != nil {
		t.Fatalf("TakeForPair at the source node = %v", err)
	}
	c.sameAtDest(t, back, src)
}

// TestMultipathSplitSecrecy: with one node of each route recording
// everything it relays, no single node's records yield an application
// key; only the records of both routes together do.
func TestMultipathSplitSecrecy(t *testing.T) {
	ctx := context.Background()
	c, spies := streamDiamond(t, relay.MultipathSplit, nil, nil)

	for _, back := range []bool{false, true} {
		var ids []qkd.KeyID
		var src []keystore.Key
		var err error
		if back {
			if ids, err = c.engines[3].RelayBack(ctx, "g", 256, 8, time.Hour); err != nil {
				t.Fatalf("RelayBack(split) = %v", err)
			}
			src, err = c.stores[0].TakeForPair(ctx, keystore.TakeRequest{Master: sae(0), Slaves: []qkd.SAEID{sae(3)},
				Caller: sae(0), SizeBits: 256, Number: 8, Now: time.Now()})
		} else {
			if ids, err = c.engines[0].Relay(ctx, "g", 256, 8, time.Hour); err != nil {
				t.Fatalf("Relay(split) = %v", err)
			}
			src, err = c.stores[0].TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: sae(0), Caller: sae(0), Now: time.Now()})
		}
		if err != nil {
			t.Fatalf("keys at the source node: %v", err)
		}
		c.sameAtDest(t, ids, src) // both ends hold the same keys
		for _, k := range src {
			key := k.Data.Expose()
			r1, r2 := spies.at(1, k.ID), spies.at(2, k.ID)
			if len(r1) != 1 || len(r2) != 1 {
				t.Fatalf("key %s: N1 saw %d shares, N2 %d; want one each", k.ID, len(r1), len(r2))
			}
			for node, recs := range map[int][][]byte{1: r1, 2: r2} {
				if yields(recs, key) {
					t.Fatalf("N%d's records yield the key %s", node, k.ID)
				}
			}
			both := make([]byte, len(key))
			subtle.XORBytes(both, r1[0], r2[0])
			if !bytes.Equal(both, key) {
				t.Fatalf("key %s is not the XOR of the two shares the routes carried", k.ID)
			}
		}
	}
	// Every share row was combined: the destination holds nothing more.
	if n := keysHeld(t, c, 3); n != 0 {
		t.Errorf("destination holds %d keys or share rows after the keys were taken, want 0", n)
	}
}

// yields reports whether the key is one of recs or the XOR of two.
func yields(recs [][]byte, key []byte) bool {
	x := make([]byte, len(key))
	for i, a := range recs {
		if bytes.Equal(a, key) {
			return true
		}
		for _, b := range recs[i+1:] {
			subtle.XORBytes(x, a, b)
			if bytes.Equal(x, key) {
				return true
			}
		}
	}
	return false
}

// keysHeld counts the keys and share rows node i stores on its links.
func keysHeld(t *testing.T, c *chain, i int) int {
	t.Helper()
	n := 0
	for _, l := range c.links[i] {
		st, err := c.stores[i].Stats(context.Background(), l.ID())
		if err != nil {
			t.Fatal(err)
		}
		n += st.KeysPending + st.KeysReady
	}
	return n
}

func TestMultipathSplitNeedsEveryPath(t *testing.T) {
	c := newDiamond(t)
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	// Only one of the two paths is configured at the source.
	en := relay.Entry{Stream: "g-p0", Source: c.ids[0], Dest: c.ids[3], Master: sae(0), Slaves: []qkd.SAEID{sae(3)},
		Next: c.ids[1], Group: "g", Path: 0, Paths: 2, Mode: relay.MultipathSplit}
	if err := c.engines[0].Install(en); err != nil {
		t.Fatal(err)
	}
	if _, err := c.engines[0].Relay(context.Background(), "g", 256, 4, time.Hour); !errors.Is(err, qkd.ErrNoRoute) {
		t.Errorf("Relay over half a split stream = %v, want ErrNoRoute", err)
	}
}

func TestMultipathInstallChecks(t *testing.T) {
	c := newDiamond(t)
	base := relay.Entry{Stream: "g-p0", Source: c.ids[0], Dest: c.ids[3], Master: sae(0), Slaves: []qkd.SAEID{sae(3)},
		Next: c.ids[1], Group: "g", Path: 0, Paths: 2, Mode: relay.MultipathSpread}
	for _, tt := range []struct {
		name string
		edit func(*relay.Entry)
	}{
		{"group is the stream", func(e *relay.Entry) { e.Group = e.Stream }},
		{"one path", func(e *relay.Entry) { e.Paths = 1 }},
		{"path out of range", func(e *relay.Entry) { e.Path = 2 }},
		{"unknown mode", func(e *relay.Entry) { e.Mode = "both" }},
		{"negative rate", func(e *relay.Entry) { e.Rate = -1 }},
		{"multipath fields without a group", func(e *relay.Entry) { e.Group = "" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			en := base
			tt.edit(&en)
			if err := c.engines[0].Install(en); !errors.Is(err, relay.ErrBadEntry) {
				t.Errorf("Install = %v, want ErrBadEntry", err)
			}
		})
	}
}

// TestMultipathHybrid: hybrid keys over both modes. The first batch asks
// the destination for its KEM offers (relayRetrying); both ends then hold
// the same application keys, which are not what any intermediate node
// relayed (spread) nor the XOR of what the two routes relayed (split: the
// hybrid secret travels with the last share's step).
func TestMultipathHybrid(t *testing.T) {
	for _, mode := range []string{relay.MultipathSpread, relay.MultipathSplit} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			pq := newPQNet(t, []qkd.NodeID{"N0", "N1", "N2", "N3"})
			c, spies := streamDiamond(t, mode, nil, func(i int, o *relay.Options) {
				o.Hybrid = pq.options(o.Node, true, nil)
			})
			ids, err := relayRetrying(ctx, c.engines[0], "g", 8)
			if err != nil {
				t.Fatalf("hybrid Relay(%s) = %v", mode, err)
			}
			src := c.keysAt(t, 0, sae(0), ids)
			dst := c.keysAt(t, 3, sae(3), ids)
			for i := range ids {
				if !src[i].Data.Equal(dst[i].Data) {
					t.Fatalf("key %d differs between the ends", i)
				}
				key := src[i].Data.Expose()
				r1, r2 := spies.at(1, ids[i]), spies.at(2, ids[i])
				all := append(append([][]byte{}, r1...), r2...)
				if yields(all, key) {
					t.Fatalf("key %d: the intermediate nodes' records together yield the hybrid key", i)
				}
			}
		})
	}
}

// TestMultipathMulticastLeg: a multicast leg over a spread stream takes
// one of its paths; over a split stream it is refused (the keys of a
// multicast are not split).
func TestMultipathMulticastLeg(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{relay.MultipathSpread, relay.MultipathSplit} {
		t.Run(mode, func(t *testing.T) {
			c, _ := streamDiamond(t, mode, nil, nil)
			legs := []relay.Leg{{Dest: c.ids[3], Slaves: []qkd.SAEID{sae(3)}, Stream: "g"}}
			ids, err := c.engines[0].RelayGroup(ctx, legs, sae(0), []qkd.SAEID{sae(3)}, 256, 4, time.Hour)
			if mode == relay.MultipathSplit {
				if !errors.Is(err, relay.ErrUnknownStream) {
					t.Fatalf("multicast leg over a split stream = %v, want ErrUnknownStream", err)
				}
				return
			}
			if err != nil || len(ids) != 4 {
				t.Fatalf("multicast leg over a spread stream = %d keys, %v", len(ids), err)
			}
			c.take(t, ids)
		})
	}
}
