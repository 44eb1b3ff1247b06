package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/hybrid"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
	"github.com/qkms/qkms/internal/secret"
)

// pqNet is a network's post-quantum PKI for a test: a CA and one ML-DSA
// identity per node.
type pqNet struct {
	verifier *hybrid.Verifier
	keys     map[qkd.NodeID]*hybrid.PrivateKey
	certs    map[qkd.NodeID][]byte
}

func newPQNet(t testing.TB, nodes []qkd.NodeID) *pqNet {
	t.Helper()
	s, err := hybrid.SignerByName(hybrid.DefaultSignature)
	if err != nil {
		t.Fatal(err)
	}
	caKey, caPub, err := s.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v, err := hybrid.NewVerifier(caPub, hybrid.DefaultSignature, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &pqNet{verifier: v, keys: map[qkd.NodeID]*hybrid.PrivateKey{}, certs: map[qkd.NodeID][]byte{}}
	now := time.Now()
	for i, n := range nodes {
		k, pub, err := s.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		c, err := hybrid.IssueCertificate(caKey, "qkms-ca", string(n), hybrid.DefaultSignature, pub, uint64(i+2), now.Add(-time.Hour), now.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		p.keys[n], p.certs[n] = k, enc
	}
	return p
}

// options gives node n its identity, with the hybrid policy require.
func (p *pqNet) options(n qkd.NodeID, require bool, onReject func(string, error)) *relay.HybridOptions {
	return &relay.HybridOptions{Key: p.keys[n], Cert: p.certs[n], Verifier: p.verifier,
		Require: func(relay.Entry) bool { return require }, OnReject: onReject}
}

// rejects records a node's OnReject calls.
type rejects struct {
	mu   sync.Mutex
	errs []error
}

func (r *rejects) add(_ string, err error) { r.mu.Lock(); r.errs = append(r.errs, err); r.mu.Unlock() }
func (r *rejects) all() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// installRoute is install with the configured route on every entry.
func (c *chain) installRoute(t testing.TB, s string) {
	t.Helper()
	k := len(c.ids) - 1
	for i, id := range c.ids {
		en := relay.Entry{Stream: s, Source: c.ids[0], Dest: c.ids[k], Master: sae(0), Slaves: []qkd.SAEID{sae(k)}, Route: c.ids}
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

// keysAt returns node i's copies of ids, taken as caller (the master at
// the source, the slave at the destination).
func (c *chain) keysAt(t *testing.T, i int, caller qkd.SAEID, ids []qkd.KeyID) []keystore.Key {
	t.Helper()
	ks, err := c.stores[i].TakeByID(context.Background(), keystore.TakeRequest{IDs: ids, Master: sae(0), Caller: caller, Now: time.Now()})
	if err != nil {
		t.Fatalf("TakeByID at %s = %v", c.ids[i], err)
	}
	return ks
}

// TestHybridRelay: with hybrid keys on, both ends of a 3-hop relay get
// the same application keys, for both combiners; the delivered keys are
// not the relayed QKD secrets; and an honest-but-curious intermediate
// node that records every secret it relays learns nothing that equals or
// yields an application key. With the hybrid secret R alone (as if the
// KEM were broken) but not the relayed key, no application key either.
func TestHybridRelay(t *testing.T) {
	for _, comb := range []string{hybrid.XORSHAKE256, hybrid.HKDFSHA3256} {
		t.Run(comb, func(t *testing.T) {
			const hops = 3
			var ids []qkd.NodeID
			for i := 0; i <= hops; i++ {
				ids = append(ids, qkd.NodeID([]string{"N0", "N1", "N2", "N3"}[i]))
			}
			pq := newPQNet(t, ids)
			c := newGraphWith(t, hops+1, [][2]int{{0, 1}, {1, 2}, {2, 3}}, func(i int, o *relay.Options) {
				o.Hybrid = pq.options(o.Node, true, nil)
				o.Hybrid.Combiner = comb
			})
			var mu sync.Mutex
			relayed := map[qkd.KeyID][][]byte{} // what the curious nodes N1 and N2 saw
			for i := 1; i < hops; i++ {
				relay.Spy(c.engines[i], func(kids []qkd.KeyID, plain []byte) {
					mu.Lock()
					defer mu.Unlock()
					size := len(plain) / len(kids)
					for j, id := range kids {
						relayed[id] = append(relayed[id], bytes.Clone(plain[j*size:(j+1)*size]))
					}
				}, nil)
			}
			var rs, ths [][]byte // the destination's hybrid secrets and transcript hashes
			relay.Spy(c.engines[hops], nil, func(r, th []byte) {
				mu.Lock()
				rs, ths = append(rs, bytes.Clone(r)), append(ths, bytes.Clone(th))
				mu.Unlock()
			})

			c.push(t, 12, 2048)
			c.waitMaterial(t)
			c.installRoute(t, "s1")
			kids, err := c.engines[0].Relay(context.Background(), "s1", 256, 8, time.Hour)
			if err != nil {
				t.Fatalf("hybrid Relay = %v", err)
			}
			src := c.keysAt(t, 0, sae(0), kids)
			dst := c.keysAt(t, hops, sae(hops), kids)
			mu.Lock()
			defer mu.Unlock()
			if len(rs) != 1 {
				t.Fatalf("destination opened %d hybrid headers, want 1", len(rs))
			}
			for i, id := range kids {
				if !src[i].Data.Equal(dst[i].Data) {
					t.Fatalf("key %d differs between the ends", i)
				}
				app := src[i].Data.Expose()
				seen := relayed[id]
				if len(seen) != hops-1 {
					t.Fatalf("key %d: the intermediate nodes saw it %d times, want %d", i, len(seen), hops-1)
				}
				combine := func(k, r []byte) []byte {
					t.Helper()
					got, err := hybrid.Combine(comb, secret.From(k), secret.From(r), ths[0], "s1", id)
					if err != nil {
						t.Fatal(err)
					}
					return got.Expose()
				}
				// Not vacuous: both secrets together give the key.
				if !bytes.Equal(combine(seen[0], rs[0]), app) {
					t.Fatalf("key %d is not combine(relayed key, R, transcript)", i)
				}
				for _, k := range seen {
					if !bytes.Equal(k, seen[0]) {
						t.Fatal("intermediate nodes saw different relayed keys")
					}
					if bytes.Equal(k, app) {
						t.Fatalf("key %d: the application key is the relayed QKD secret", i)
					}
					// The curious node holds the relayed key, not R: its
					// guesses for R (all zero, all ones, the R of no step)
					// give nothing.
					for _, guess := range [][]byte{make([]byte, 32), bytes.Repeat([]byte{0xff}, 32)} {
						if bytes.Equal(combine(k, guess), app) {
							t.Fatalf("key %d follows from the relayed secret and a guessed R", i)
						}
					}
				}
				// R alone (a broken KEM), without the relayed key: a zero
				// key or another key of the batch gives nothing.
				other := relayed[kids[(i+1)%len(kids)]][0]
				for _, wrong := range [][]byte{make([]byte, len(app)), other} {
					if bytes.Equal(combine(wrong, rs[0]), app) {
						t.Fatalf("key %d follows from R and a wrong relayed key", i)
					}
				}
			}
			if len(rs[0]) != 32 {
				t.Fatalf("R is %d bytes", len(rs[0]))
			}
		})
	}
}

// TestHybridRejectsDivertedPath: the controller configured N0→N1→N2, but
// the forwarding entries on the nodes send the stream N0→N3→N2. The
// destination finds N3's signature where N1's should be: it refuses the
// keys, reports it, and neither end keeps them.
func TestHybridRejectsDivertedPath(t *testing.T) {
	nodes := []qkd.NodeID{"N0", "N1", "N2", "N3"}
	pq := newPQNet(t, nodes)
	var rej rejects
	c := newGraphWith(t, 4, [][2]int{{0, 1}, {1, 2}, {0, 3}, {2, 3}}, func(i int, o *relay.Options) {
		o.Hybrid = pq.options(o.Node, true, rej.add)
	})
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	configured := []qkd.NodeID{"N0", "N1", "N2"}
	base := relay.Entry{Stream: "s", Source: "N0", Dest: "N2", Master: sae(0), Slaves: []qkd.SAEID{sae(2)}, Route: configured}
	for i, en := range []relay.Entry{
		{Next: "N3"},             // N0, diverted
		{Prev: "N0", Next: "N2"}, // N3, not on the route
		{Prev: "N3"},             // N2: the entry was changed, the route it was told was not
	} {
		at := []int{0, 3, 2}[i]
		e := base
		e.Prev, e.Next = en.Prev, en.Next
		if err := c.engines[at].Install(e); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.engines[0].Relay(context.Background(), "s", 256, 4, time.Hour)
	if err == nil {
		t.Fatal("Relay along a diverted path succeeded")
	}
	errs := rej.all()
	if len(errs) == 0 || !errors.Is(errs[0], hybrid.ErrPathMismatch) {
		t.Fatalf("destination reported %v, want a path mismatch", errs)
	}
	for _, at := range []int{0, 2} {
		n, err := c.stores[at].CountKeys(context.Background(), keystore.TakeRequest{Master: sae(0), Slaves: []qkd.SAEID{sae(2)},
			Caller: []qkd.SAEID{sae(0), "", sae(2)}[at], SizeBits: 256, Now: time.Now()})
		if err != nil || n != 0 {
			t.Fatalf("%s holds %d keys of the diverted relay (%v)", c.ids[at], n, err)
		}
	}
	// The route put right, keys flow again over the same links (the
	// refusing node burnt the pad of the refused step).
	for at, hops := range map[int][2]qkd.NodeID{0: {"", "N1"}, 1: {"N0", "N2"}, 2: {"N1", ""}} {
		e := base
		e.Prev, e.Next = hops[0], hops[1]
		if err := c.engines[at].Install(e); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := c.engines[0].Relay(context.Background(), "s", 256, 4, time.Hour)
	if err != nil {
		t.Fatalf("Relay along the configured route after the refusal: %v", err)
	}
	c.takeBetween(t, ids, 0, 2)
}

// TestHybridFailsClosed: a destination that requires hybrid keys refuses
// plain ones, and a source that requires them cannot relay to a node
// without a post-quantum identity; no keys are kept anywhere.
func TestHybridFailsClosed(t *testing.T) {
	nodes := []qkd.NodeID{"N0", "N1", "N2"}
	pq := newPQNet(t, nodes)
	for _, tt := range []struct {
		name string
		opt  func(i int, o *relay.Options)
	}{
		{"source plain, destination requires", func(i int, o *relay.Options) {
			o.Hybrid = pq.options(o.Node, i == 2, nil)
		}},
		{"source requires, destination has no identity", func(i int, o *relay.Options) {
			o.Hybrid = pq.options(o.Node, i == 0, nil)
			if i == 2 {
				o.Hybrid = nil
			}
		}},
		{"intermediate has no identity", func(i int, o *relay.Options) {
			o.Hybrid = pq.options(o.Node, true, nil)
			if i == 1 {
				o.Hybrid = nil
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newGraphWith(t, 3, [][2]int{{0, 1}, {1, 2}}, tt.opt)
			c.push(t, 8, 2048)
			c.waitMaterial(t)
			c.installRoute(t, "s")
			if ids, err := c.engines[0].Relay(context.Background(), "s", 256, 2, time.Hour); err == nil {
				t.Fatalf("Relay = %v, nil; want a refusal", ids)
			}
			for _, at := range []int{0, 2} {
				n, _ := c.stores[at].CountKeys(context.Background(), keystore.TakeRequest{Master: sae(0), Slaves: []qkd.SAEID{sae(2)},
					Caller: []qkd.SAEID{sae(0), "", sae(2)}[at], SizeBits: 256, Now: time.Now()})
				if n != 0 {
					t.Fatalf("%s holds %d keys", c.ids[at], n)
				}
			}
		})
	}
}

// BenchmarkRelayHybrid measures one relay batch (8 keys of 256 bits)
// along chains of 1, 3 and 6 hops with plain and with hybrid keys, in
// memory (no network: the cost of the keys, the pads, the store steps and
// the post-quantum part). It reports the hybrid part's bytes on the wire:
// the header (with the source's certificate), and the signed path as the
// destination receives it (one step and certificate per sending node).
func BenchmarkRelayHybrid(b *testing.B) {
	for _, hops := range []int{1, 3, 6} {
		for _, hyb := range []bool{false, true} {
			name := fmt.Sprintf("hops=%d/plain", hops)
			if hyb {
				name = fmt.Sprintf("hops=%d/hybrid", hops)
			}
			b.Run(name, func(b *testing.B) {
				var ids []qkd.NodeID
				var edges [][2]int
				for i := 0; i <= hops; i++ {
					ids = append(ids, qkd.NodeID(fmt.Sprintf("N%d", i)))
					if i > 0 {
						edges = append(edges, [2]int{i - 1, i})
					}
				}
				pq := newPQNet(b, ids)
				c := newGraphWith(b, hops+1, edges, func(i int, o *relay.Options) {
					if hyb {
						o.Hybrid = pq.options(o.Node, true, nil)
					}
				})
				var wire atomic.Int64
				relay.Spy(c.engines[hops], nil, nil)
				relay.WireHook(c.engines[hops], func(header, path int) { wire.Store(int64(header)<<32 | int64(path)) })
				c.push(b, 64, 64<<10)
				c.waitMaterial(b)
				c.installRoute(b, "s")
				ctx := context.Background()
				// The first batch fetches the destination's KEM offer.
				if _, err := relayRetrying(ctx, c.engines[0], "s", 8); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					if _, err := relayRetrying(ctx, c.engines[0], "s", 8); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				w := wire.Load()
				b.ReportMetric(float64(w>>32), "header-bytes")
				b.ReportMetric(float64(w&0xffffffff), "path-bytes")
			})
		}
	}
}

// TestHybridDestinationForgetsOffers: a destination that lost its KEM
// keys (zeroised, or restarted: they live in memory only) refuses the
// next batch sealed to its old offer; the source drops that offer, and
// the batch after gets a new one and goes through.
func TestHybridDestinationForgetsOffers(t *testing.T) {
	nodes := []qkd.NodeID{"N0", "N1", "N2"}
	pq := newPQNet(t, nodes)
	var rej rejects
	c := newGraphWith(t, 3, [][2]int{{0, 1}, {1, 2}}, func(i int, o *relay.Options) {
		o.Hybrid = pq.options(o.Node, true, rej.add)
	})
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	c.installRoute(t, "s")
	ctx := context.Background()
	if _, err := c.engines[0].Relay(ctx, "s", 256, 2, time.Hour); err != nil {
		t.Fatal(err)
	}
	c.engines[2].WipeHybrid()
	// The first step is sealed to the forgotten offer and refused
	// (hybrid_stale); the source asks for a new offer and sends the batch
	// again, within the same call. No alarm: nothing was tampered with.
	ids, err := c.engines[0].Relay(ctx, "s", 256, 2, time.Hour)
	if err != nil {
		t.Fatalf("batch after the destination forgot its offers: %v", err)
	}
	c.take(t, ids)
	if errs := rej.all(); len(errs) != 0 {
		t.Errorf("destination reported %v, want no rejection", errs)
	}
}

// TestHybridRouteChangeLearnsCertificates: path steps travel without
// certificates (the destination learnt them with the offer request). When
// the route changes to a node whose certificate the destination does not
// have, the first batch is refused without an alarm, the source asks for
// a new offer (collecting the new route's certificates), and the batch
// after goes through.
func TestHybridRouteChangeLearnsCertificates(t *testing.T) {
	nodes := []qkd.NodeID{"N0", "N1", "N2", "N3"}
	pq := newPQNet(t, nodes)
	var rej rejects
	c := newGraphWith(t, 4, [][2]int{{0, 1}, {1, 2}, {0, 3}, {2, 3}}, func(i int, o *relay.Options) {
		o.Hybrid = pq.options(o.Node, true, rej.add)
	})
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	install := func(route []qkd.NodeID) {
		t.Helper()
		for i, node := range route {
			en := relay.Entry{Stream: "s", Source: "N0", Dest: "N2", Master: sae(0), Slaves: []qkd.SAEID{sae(2)}, Route: route}
			if i > 0 {
				en.Prev = route[i-1]
			}
			if i < len(route)-1 {
				en.Next = route[i+1]
			}
			if err := c.engines[slices.Index(nodes, node)].Install(en); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	install([]qkd.NodeID{"N0", "N1", "N2"})
	ids, err := c.engines[0].Relay(ctx, "s", 256, 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.takeBetween(t, ids, 0, 2)
	install([]qkd.NodeID{"N0", "N3", "N2"}) // rerouted: N3's certificate is new to N2
	rejectedBefore := c.macFail[2].n.Load()
	ids, err = c.engines[0].Relay(ctx, "s", 256, 2, time.Hour)
	if err != nil {
		t.Fatalf("batch after the reroute: %v", err)
	}
	c.takeBetween(t, ids, 0, 2)
	if errs := rej.all(); len(errs) != 0 {
		t.Errorf("route change reported as rejected keys: %v", errs)
	}
	if n := c.macFail[2].n.Load(); n != rejectedBefore {
		t.Errorf("%d MAC failures at N2", n-rejectedBefore)
	}
}
