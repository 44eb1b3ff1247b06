package kms_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

var mcSAEs = map[qkd.SAEID]qkd.NodeID{"SAE_A1": "A", "SAE_A2": "A", "SAE_B1": "B", "SAE_B2": "B",
	"SAE_C1": "C", "SAE_C2": "C", "SAE_D1": "D"}

// fakeRouter names a stream after its pair; C and D are remote nodes.
type fakeRouter struct {
	mu    sync.Mutex
	asked [][]qkd.SAEID // guarded by mu
	err   error
	count int
}

func (r *fakeRouter) Stream(_ context.Context, master qkd.SAEID, slaves []qkd.SAEID) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, slices.Clone(slaves))
	if r.err != nil {
		return "", r.err
	}
	return streamOf(master, slaves), nil
}

func (r *fakeRouter) Known(master qkd.SAEID, slaves []qkd.SAEID) (string, bool) {
	return streamOf(master, slaves), true
}

func (r *fakeRouter) StoredKeys(context.Context, qkd.SAEID, qkd.SAEID) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	return r.count, nil
}

func streamOf(master qkd.SAEID, slaves []qkd.SAEID) string {
	s := make([]string, len(slaves))
	for i, v := range slaves {
		s[i] = string(v)
	}
	return string(master) + ">" + strings.Join(s, ",")
}

// fakeRelayer records the legs of every multicast; it makes the keys with
// a reservation over link A-B (so that they exist at A for (master, all
// slaves), as RelayGroup leaves them) unless err is set.
type fakeRelayer struct {
	l *link.Link

	mu   sync.Mutex
	legs [][]relay.Leg // guarded by mu
	all  [][]qkd.SAEID // guarded by mu
	err  error
}

func (f *fakeRelayer) Relay(context.Context, string, int, int, time.Duration) ([]qkd.KeyID, error) {
	return nil, errors.New("fake: single relays not expected")
}

func (f *fakeRelayer) RelayGroup(ctx context.Context, legs []relay.Leg, master qkd.SAEID, all []qkd.SAEID, size, n int, ttl time.Duration) ([]qkd.KeyID, error) {
	f.mu.Lock()
	f.legs = append(f.legs, slices.Clone(legs))
	f.all = append(f.all, slices.Clone(all))
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.l.Reserve(ctx, master, all, size, n, ttl)
}

type mcNet struct {
	p      *linktest.Pair
	a, b   *kms.Service
	router *fakeRouter
	relay  *fakeRelayer
}

func newMulticastNet(t *testing.T, maxSAEs int) *mcNet {
	t.Helper()
	p := linktest.NewPair(t, linktest.Options{SAEs: mcSAEs})
	lim := limits
	lim.Prereserve, lim.MaxSAEIDCount = 0, maxSAEs
	n := &mcNet{p: p, router: &fakeRouter{}, relay: &fakeRelayer{l: p.A}}
	var err error
	if n.a, err = kms.New(kms.Options{Node: "A", Store: p.SA, Links: []kms.Link{p.A}, SAEs: mcSAEs, Limits: lim,
		Router: n.router, Relayer: n.relay}); err != nil {
		t.Fatal(err)
	}
	if n.b, err = kms.New(kms.Options{Node: "B", Store: p.SB, Links: []kms.Link{p.B}, SAEs: mcSAEs, Limits: lim}); err != nil {
		t.Fatal(err)
	}
	p.Push(t, 24, 1024, nil)
	linktest.WaitFor(t, "material confirmed", func() bool {
		return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Confirmed(t, p.SB) > 16*1024
	})
	return n
}

func ids(keys []kms.Key) []qkd.KeyID {
	out := make([]qkd.KeyID, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

// decAll fetches keys at svc for every slave and compares them with the
// master's; a second fetch by the same slave is refused.
func decAll(t *testing.T, svc *kms.Service, master qkd.SAEID, slaves []qkd.SAEID, keys []kms.Key) {
	t.Helper()
	ctx := context.Background()
	for _, sl := range slaves {
		got, err := svc.DecKeys(ctx, sl, master, ids(keys))
		if err != nil {
			t.Fatalf("DecKeys by %s = %v", sl, err)
		}
		for i := range keys {
			if got[i].ID != keys[i].ID || !got[i].Bytes.Equal(keys[i].Bytes) {
				t.Fatalf("key %d differs between the master and %s", i, sl)
			}
		}
		if _, err := svc.DecKeys(ctx, sl, master, ids(keys)); !errors.Is(err, qkd.ErrNotFound) {
			t.Fatalf("second DecKeys by %s = %v, want ErrNotFound", sl, err)
		}
	}
}

// TestMulticastOneNeighbour: all slaves on neighbour B: one reservation;
// both slaves fetch the same keys at B, whatever the order in the request.
func TestMulticastOneNeighbour(t *testing.T) {
	n := newMulticastNet(t, kms.DefaultMaxSAEIDCount)
	ctx := context.Background()
	for _, tc := range []struct {
		slave qkd.SAEID
		more  []qkd.SAEID
	}{{"SAE_B1", []qkd.SAEID{"SAE_B2"}}, {"SAE_B2", []qkd.SAEID{"SAE_B1"}}} {
		keys, err := n.a.EncKeys(ctx, "SAE_A1", tc.slave, kms.KeyRequest{Number: 3, AdditionalSlaves: tc.more})
		if err != nil {
			t.Fatalf("EncKeys(%s + %v) = %v", tc.slave, tc.more, err)
		}
		if len(keys) != 3 {
			t.Fatalf("EncKeys gave %d keys, want 3", len(keys))
		}
		decAll(t, n.b, "SAE_A1", []qkd.SAEID{"SAE_B2", "SAE_B1"}, keys)
	}
	if len(n.relay.legs) != 0 {
		t.Fatalf("one neighbour node was served by relaying: %v", n.relay.legs)
	}
	if st := linktest.Stats(t, n.p.SB); st.KeysReady+st.KeysPending != 0 {
		t.Fatalf("B keeps %d keys after every slave had them", st.KeysReady+st.KeysPending)
	}
}

// TestMulticastPlan: slaves on several nodes are relayed in one group:
// neighbours directly, remote nodes along the stream of their slaves.
func TestMulticastPlan(t *testing.T) {
	n := newMulticastNet(t, kms.DefaultMaxSAEIDCount)
	ctx := context.Background()
	keys, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_D1", kms.KeyRequest{Number: 2, AdditionalSlaves: []qkd.SAEID{"SAE_C2", "SAE_B1", "SAE_C1"}})
	if err != nil {
		t.Fatalf("EncKeys = %v", err)
	}
	all := []qkd.SAEID{"SAE_B1", "SAE_C1", "SAE_C2", "SAE_D1"}
	wantLegs := [][]relay.Leg{{
		{Dest: "B", Slaves: []qkd.SAEID{"SAE_B1"}},
		{Dest: "C", Slaves: []qkd.SAEID{"SAE_C1", "SAE_C2"}, Stream: "SAE_A1>SAE_C1,SAE_C2"},
		{Dest: "D", Slaves: []qkd.SAEID{"SAE_D1"}, Stream: "SAE_A1>SAE_D1"},
	}}
	if diff := cmp.Diff(wantLegs, n.relay.legs); diff != "" {
		t.Fatalf("RelayGroup legs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]qkd.SAEID{all}, n.relay.all); diff != "" {
		t.Fatalf("RelayGroup slaves (-want +got):\n%s", diff)
	}
	decAll(t, n.b, "SAE_A1", []qkd.SAEID{"SAE_B1"}, keys)
}

func TestMulticastRelayFails(t *testing.T) {
	n := newMulticastNet(t, kms.DefaultMaxSAEIDCount)
	n.relay.err = relay.ErrLeg
	_, err := n.a.EncKeys(context.Background(), "SAE_A1", "SAE_B1", kms.KeyRequest{AdditionalSlaves: []qkd.SAEID{"SAE_C1"}})
	if !errors.Is(err, qkd.ErrPeerUnavailable) {
		t.Fatalf("EncKeys with a failing leg = %v, want ErrPeerUnavailable", err)
	}
	n.relay.err, n.router.err = nil, errors.New("controller says no")
	_, err = n.a.EncKeys(context.Background(), "SAE_A1", "SAE_B1", kms.KeyRequest{AdditionalSlaves: []qkd.SAEID{"SAE_C1"}})
	if !errors.Is(err, qkd.ErrNoRoute) {
		t.Fatalf("EncKeys without a stream = %v, want ErrNoRoute", err)
	}
}

func TestMulticastRequestChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int
		more []qkd.SAEID
		want error
		msg  string
	}{
		{"not supported", 0, []qkd.SAEID{"SAE_B2"}, nil, "additional_slave_SAE_IDs exceeds max_SAE_ID_count (0): multicast is not supported"},
		{"too many", 2, []qkd.SAEID{"SAE_B2", "SAE_C1", "SAE_C2"}, nil, "additional_slave_SAE_IDs exceeds max_SAE_ID_count (2)"},
		{"repeats the slave", 8, []qkd.SAEID{"SAE_B1"}, nil, "additional_slave_SAE_IDs shall name distinct SAEs other than the slave SAE"},
		{"repeated", 8, []qkd.SAEID{"SAE_C1", "SAE_C1"}, nil, "additional_slave_SAE_IDs shall name distinct SAEs other than the slave SAE"},
		{"unknown", 8, []qkd.SAEID{"SAE_X"}, nil, "slave SAE ID is not known to this KME"},
		{"the master", 8, []qkd.SAEID{"SAE_A1"}, nil, "slave SAE ID must differ from the master SAE ID"},
		{"on the master's node", 8, []qkd.SAEID{"SAE_A2"}, qkd.ErrNoRoute, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newMulticastNet(t, tc.max)
			_, err := n.a.EncKeys(context.Background(), "SAE_A1", "SAE_B1", kms.KeyRequest{AdditionalSlaves: tc.more})
			var re *qkd.RequestError
			switch {
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("EncKeys = %v, want %v", err, tc.want)
			case tc.want == nil && (!errors.As(err, &re) || re.Msg != tc.msg):
				t.Fatalf("EncKeys = %v, want 400 %q", err, tc.msg)
			}
			if st, err := n.a.Status(context.Background(), "SAE_A1", "SAE_B1"); err != nil || st.MaxSAEIDCount != tc.max {
				t.Fatalf("Status = %+v, %v; want max_SAE_ID_count %d", st, err, tc.max)
			}
		})
	}
}

// TestStatusRemoteStoredKeys: stored_key_count of a pair on a non-neighbour
// node is the router's path-wide figure; without it, the keys relayed so
// far (none here).
func TestStatusRemoteStoredKeys(t *testing.T) {
	n := newMulticastNet(t, kms.DefaultMaxSAEIDCount)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		count int
		err   error
		want  int
	}{
		{"path-wide", 42, nil, 42},
		{"capped at max_key_count", limits.MaxKeyCount + 5, nil, limits.MaxKeyCount},
		{"router fails", 42, errors.New("agent unreachable"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.router.count, n.router.err = tc.count, tc.err
			st, err := n.a.Status(ctx, "SAE_A1", "SAE_C1")
			if err != nil {
				t.Fatalf("Status = %v", err)
			}
			if st.StoredKeyCount != tc.want || st.TargetKME != "KME_C" || st.MaxSAEIDCount != kms.DefaultMaxSAEIDCount {
				t.Fatalf("Status = %+v, want stored_key_count %d", st, tc.want)
			}
		})
	}
}
