package relay_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

// multicastChain is N0—N1—N2—N3 with the master SAE_1 at N1 and slaves
// SAE_0 (neighbour N0), SAE_2 (neighbour N2) and SAE_3 (two hops, via N2).
func multicastChain(t *testing.T) *chain {
	t.Helper()
	c := newChain(t, 3)
	c.push(t, 16, 4096)
	c.waitMaterial(t)
	return c
}

var allSlaves = []qkd.SAEID{sae(0), sae(2), sae(3)}

// installN1toN3 configures the stream of (SAE_1, SAE_3) from N1 to N3; the
// entry at N2 is skipped if mid is false.
func (c *chain) installN1toN3(t *testing.T, s string, mid bool) {
	t.Helper()
	base := relay.Entry{Stream: s, Source: "N1", Dest: "N3", Master: sae(1), Slaves: []qkd.SAEID{sae(3)}}
	ens := map[int]relay.Entry{1: base, 3: base}
	e1, e3 := base, base
	e1.Next, e3.Prev = "N2", "N2"
	ens[1], ens[3] = e1, e3
	if mid {
		e2 := base
		e2.Prev, e2.Next = "N3", "N1" // unordered, as QUICKS gives them
		ens[2] = e2
	}
	for i, en := range ens {
		if err := c.engines[i].Install(en); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRelayGroup(t *testing.T) {
	c := multicastChain(t)
	c.installN1toN3(t, "m", true)
	ctx := context.Background()
	legs := []relay.Leg{{Dest: "N0", Slaves: []qkd.SAEID{sae(0)}}, {Dest: "N2", Slaves: []qkd.SAEID{sae(2)}},
		{Dest: "N3", Slaves: []qkd.SAEID{sae(3)}, Stream: "m"}}
	ids, err := c.engines[1].RelayGroup(ctx, legs, sae(1), allSlaves, 256, 4, time.Hour)
	if err != nil {
		t.Fatalf("RelayGroup = %v", err)
	}
	// The master takes them as a pair (M, all slaves) at N1.
	src, err := c.stores[1].TakeForPair(ctx, keystore.TakeRequest{Master: sae(1), Slaves: allSlaves, Caller: sae(1),
		SizeBits: 256, Number: 4, Now: time.Now()})
	if err != nil {
		t.Fatalf("master TakeForPair = %v", err)
	}
	for i := range src {
		if src[i].ID != ids[i] {
			t.Fatalf("master key %d is %s, want %s", i, src[i].ID, ids[i])
		}
	}
	for _, d := range []int{0, 2, 3} {
		got, err := c.stores[d].TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: sae(1), Caller: sae(d), Now: time.Now()})
		if err != nil {
			t.Fatalf("slave %s TakeByID at %s = %v", sae(d), c.ids[d], err)
		}
		for i := range ids {
			if !got[i].Data.Equal(src[i].Data) {
				t.Fatalf("key %d differs between the master and %s", i, sae(d))
			}
		}
		if _, err := c.stores[d].TakeByID(ctx, keystore.TakeRequest{IDs: ids[:1], Master: sae(1), Caller: sae(d), Now: time.Now()}); !errors.Is(err, qkd.ErrNotFound) {
			t.Fatalf("second TakeByID by %s = %v, want ErrNotFound", sae(d), err)
		}
	}
	// Nothing is left anywhere: every recipient had its copy.
	for i := range c.ids {
		for _, l := range c.links[i] {
			if st, err := c.stores[i].Stats(ctx, l.ID()); err != nil || st.KeysReady != 0 || st.KeysPending != 0 {
				t.Fatalf("%s still holds keys on %s: %+v (%v)", c.ids[i], l.ID(), st, err)
			}
		}
	}
}

// TestRelayGroupLegFails: without the entry at N2 the leg to N3 is refused;
// the master's node withdraws its copy, so the keys are never served.
func TestRelayGroupLegFails(t *testing.T) {
	c := multicastChain(t)
	c.installN1toN3(t, "m", false)
	ctx := context.Background()
	legs := []relay.Leg{{Dest: "N0", Slaves: []qkd.SAEID{sae(0)}}, {Dest: "N3", Slaves: []qkd.SAEID{sae(3)}, Stream: "m"}}
	slaves := []qkd.SAEID{sae(0), sae(3)}
	ids, err := c.engines[1].RelayGroup(ctx, legs, sae(1), slaves, 256, 2, time.Hour)
	if !errors.Is(err, relay.ErrLeg) {
		t.Fatalf("RelayGroup with a refused leg = %v, %v; want ErrLeg", ids, err)
	}
	n, err := c.stores[1].CountKeys(ctx, keystore.TakeRequest{Master: sae(1), Slaves: slaves, Caller: sae(1), SizeBits: 256, Now: time.Now()})
	if err != nil || n != 0 {
		t.Fatalf("master's node holds %d keys of a failed multicast (%v)", n, err)
	}
	for _, l := range c.links[1] {
		if st, err := c.stores[1].Stats(ctx, l.ID()); err != nil || st.KeysPending+st.KeysReady != 0 {
			t.Fatalf("master's node keeps keys on %s: %+v (%v)", l.ID(), st, err)
		}
	}
	// The direct leg to N0 delivered; the master's node deleted that copy too.
	if n, _ := c.stores[0].CountKeys(ctx, keystore.TakeRequest{Master: sae(1), Slaves: []qkd.SAEID{sae(0)}, Caller: sae(0), SizeBits: 256, Now: time.Now()}); n != 0 {
		t.Fatalf("N0 holds %d keys of a failed multicast", n)
	}
	if n, _ := c.stores[3].CountKeys(ctx, keystore.TakeRequest{Master: sae(1), Slaves: []qkd.SAEID{sae(3)}, Caller: sae(3), SizeBits: 256, Now: time.Now()}); n != 0 {
		t.Fatalf("N3 holds %d keys of a refused leg", n)
	}
}

func TestRelayGroupBadLegs(t *testing.T) {
	c := multicastChain(t)
	c.installN1toN3(t, "m", true)
	for _, tc := range []struct {
		name string
		legs []relay.Leg
		want error
	}{
		{"remote node without a stream", []relay.Leg{{Dest: "N3", Slaves: []qkd.SAEID{sae(3)}}}, qkd.ErrNoRoute},
		{"unknown stream", []relay.Leg{{Dest: "N3", Slaves: []qkd.SAEID{sae(3)}, Stream: "x"}}, relay.ErrUnknownStream},
		{"stream to another node", []relay.Leg{{Dest: "N2", Slaves: []qkd.SAEID{sae(3)}, Stream: "m"}}, relay.ErrUnknownStream},
		{"direct step for SAEs not at the neighbour", []relay.Leg{{Dest: "N2", Slaves: []qkd.SAEID{sae(3)}}}, relay.ErrLeg},
		{"stream of other slaves", []relay.Leg{{Dest: "N3", Slaves: []qkd.SAEID{sae(0)}, Stream: "m"}}, relay.ErrUnknownStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.engines[1].RelayGroup(context.Background(), tc.legs, sae(1), allSlaves, 256, 1, time.Hour); !errors.Is(err, tc.want) {
				t.Fatalf("RelayGroup = %v, want %v", err, tc.want)
			}
		})
	}
}
