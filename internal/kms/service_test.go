package kms_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
)

var saes = map[qkd.SAEID]qkd.NodeID{"SAE_A1": "A", "SAE_A2": "A", "SAE_B1": "B", "SAE_C1": "C"}

var limits = kms.Limits{KeySize: 256, MinKeySize: 64, MaxKeySize: 1024, MaxKeyPerRequest: 16,
	MaxKeyCount: 100000, TTL: time.Hour, Prereserve: 8}

type net2 struct {
	p    *linktest.Pair
	a, b *kms.Service
}

func newNet(t *testing.T, prereserve int) *net2 {
	t.Helper()
	p := linktest.NewPair(t, linktest.Options{SAEs: saes})
	lim := limits
	lim.Prereserve = prereserve
	mk := func(node qkd.NodeID, st keystore.Store, l kms.Link) *kms.Service {
		s, err := kms.New(kms.Options{Node: node, Store: st, Links: []kms.Link{l}, SAEs: saes, Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	n := &net2{p: p, a: mk("A", p.SA, p.A), b: mk("B", p.SB, p.B)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range []*kms.Service{n.a, n.b} {
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	p.Push(t, 24, 1024, nil)
	linktest.WaitFor(t, "material confirmed", func() bool {
		return linktest.Stats(t, p.SA).UnconfirmedBlocks == 0 && linktest.Confirmed(t, p.SB) > 16*1024
	})
	return n
}

func TestEncDecNeighbours(t *testing.T) {
	n := newNet(t, 0)
	ctx := context.Background()
	for _, tc := range []struct {
		name          string
		enc, dec      *kms.Service
		master, slave qkd.SAEID
		req           kms.KeyRequest
		wantN, wantB  int
	}{
		{"defaults A→B", n.a, n.b, "SAE_A1", "SAE_B1", kms.KeyRequest{}, 1, 32},
		{"3×512 A→B", n.a, n.b, "SAE_A1", "SAE_B1", kms.KeyRequest{Number: 3, Size: 512}, 3, 64},
		{"second SAE at A", n.a, n.b, "SAE_A2", "SAE_B1", kms.KeyRequest{Number: 2}, 2, 32},
		{"B→A", n.b, n.a, "SAE_B1", "SAE_A1", kms.KeyRequest{Number: 4, Size: 128}, 4, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := tc.enc.EncKeys(ctx, tc.master, tc.slave, tc.req)
			if err != nil {
				t.Fatalf("EncKeys = %v", err)
			}
			if len(keys) != tc.wantN {
				t.Fatalf("EncKeys gave %d keys, want %d", len(keys), tc.wantN)
			}
			ids := make([]qkd.KeyID, len(keys))
			for i, k := range keys {
				ids[i] = k.ID
				if k.Bytes.Len() != tc.wantB {
					t.Fatalf("key %d has %d bytes, want %d", i, k.Bytes.Len(), tc.wantB)
				}
			}
			// Another SAE of the slave's node is not a slave: 401.
			if _, err := tc.dec.DecKeys(ctx, "SAE_A2", tc.master, ids); tc.dec == n.a && !errors.Is(err, qkd.ErrUnauthorized) {
				t.Fatalf("DecKeys by a non-slave = %v, want ErrUnauthorized", err)
			}
			// Wrong master in the path: not found.
			if _, err := tc.dec.DecKeys(ctx, tc.slave, "SAE_C1", ids); !errors.Is(err, qkd.ErrNotFound) {
				t.Fatalf("DecKeys with the wrong master = %v, want ErrNotFound", err)
			}
			got, err := tc.dec.DecKeys(ctx, tc.slave, tc.master, ids)
			if err != nil {
				t.Fatalf("DecKeys = %v", err)
			}
			for i := range keys {
				if got[i].ID != keys[i].ID || !got[i].Bytes.Equal(keys[i].Bytes) {
					t.Fatalf("key %d differs between master and slave", i)
				}
			}
			if _, err := tc.dec.DecKeys(ctx, tc.slave, tc.master, ids); !errors.Is(err, qkd.ErrNotFound) {
				t.Fatalf("second DecKeys = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestRequestLimits(t *testing.T) {
	n := newNet(t, 0)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		caller qkd.SAEID
		slave  qkd.SAEID
		req    kms.KeyRequest
		want   error
		msg    string
	}{
		{"number too big", "SAE_A1", "SAE_B1", kms.KeyRequest{Number: 17}, nil, "number shall be between 1 and max_key_per_request (16)"},
		{"negative", "SAE_A1", "SAE_B1", kms.KeyRequest{Number: -1}, nil, "number shall be between 1 and max_key_per_request (16)"},
		{"size not /8", "SAE_A1", "SAE_B1", kms.KeyRequest{Size: 257}, nil, "size shall be a multiple of 8"},
		{"size too small", "SAE_A1", "SAE_B1", kms.KeyRequest{Size: 32}, nil, "size shall be between min_key_size (64) and max_key_size (1024)"},
		{"multicast", "SAE_A1", "SAE_B1", kms.KeyRequest{AdditionalSlaves: []qkd.SAEID{"SAE_A2"}}, nil, "additional_slave_SAE_IDs exceeds max_SAE_ID_count (0): multicast is not supported"},
		{"unknown slave", "SAE_A1", "SAE_X", kms.KeyRequest{}, nil, "slave SAE ID is not known to this KME"},
		{"unknown caller", "SAE_B1", "SAE_A1", kms.KeyRequest{}, qkd.ErrUnknownSAE, ""},
		{"no route", "SAE_A1", "SAE_C1", kms.KeyRequest{}, qkd.ErrNoRoute, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.a.EncKeys(ctx, tc.caller, tc.slave, tc.req)
			var re *qkd.RequestError
			switch {
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("EncKeys = %v, want %v", err, tc.want)
			case tc.want == nil && (!errors.As(err, &re) || re.Msg != tc.msg):
				t.Fatalf("EncKeys = %v, want 400 %q", err, tc.msg)
			}
		})
	}
}

func TestStatusCountsAndPrereserve(t *testing.T) {
	n := newNet(t, 8)
	ctx := context.Background()
	linktest.WaitFor(t, "prereserved pool", func() bool {
		c, err := n.p.SA.CountKeys(ctx, keystore.TakeRequest{Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}, Caller: "SAE_A1", SizeBits: 256, Now: time.Now()})
		return err == nil && c >= 4
	})
	st, err := n.a.Status(ctx, "SAE_A1", "SAE_B1")
	if err != nil {
		t.Fatal(err)
	}
	if st.SourceKME != "KME_A" || st.TargetKME != "KME_B" || st.KeySize != 256 || st.StoredKeyCount < 4 || st.MaxSAEIDCount != 0 {
		t.Fatalf("Status = %+v", st)
	}
	if _, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_B1", kms.KeyRequest{Number: 3}); err != nil {
		t.Fatal(err)
	}
	after, err := n.a.Status(ctx, "SAE_A1", "SAE_B1")
	if err != nil {
		t.Fatal(err)
	}
	if after.StoredKeyCount > st.StoredKeyCount-3+8 { // a restock may add up to Prereserve
		t.Fatalf("stored_key_count %d → %d after taking 3", st.StoredKeyCount, after.StoredKeyCount)
	}
}

func TestZeroize(t *testing.T) {
	n := newNet(t, 0)
	ctx := context.Background()
	if err := n.a.Zeroize(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_B1", kms.KeyRequest{}); !errors.Is(err, qkd.ErrInactive) {
		t.Fatalf("EncKeys after zeroize = %v, want ErrInactive", err)
	}
	if _, err := n.a.Status(ctx, "SAE_A1", "SAE_B1"); !errors.Is(err, qkd.ErrInactive) {
		t.Fatalf("Status after zeroize = %v", err)
	}
	if st, err := n.p.SA.Stats(ctx, "A-B"); err == nil && st.ConfirmedBytes[0]+st.ConfirmedBytes[1] > 0 {
		t.Fatalf("store still holds material after zeroize: %+v", st)
	}
}

// reservations records the make_keys_external requests one end sends.
type reservations struct {
	mu   sync.Mutex
	reqs []kmsproto.MakeKeysExternalReq // guarded by mu
}

func (r *reservations) tamper(tp kmsproto.Type, payload []byte) []byte {
	if tp != kmsproto.MakeKeysExternal {
		return payload
	}
	h, ok := linktest.RequestHeader(payload)
	var req kmsproto.MakeKeysExternalReq
	if ok && kmsproto.Unmarshal(h.Body, &req) == nil {
		r.mu.Lock()
		r.reqs = append(r.reqs, req)
		r.mu.Unlock()
	}
	return payload
}

// ids returns the key IDs reserved for (master, slave).
func (r *reservations) ids(master, slave qkd.SAEID) map[qkd.KeyID]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[qkd.KeyID]bool{}
	for _, q := range r.reqs {
		if q.Master == master && len(q.Slaves) == 1 && q.Slaves[0] == slave {
			for _, id := range q.IDs {
				out[id] = true
			}
		}
	}
	return out
}

// TestBothEndsStockAPairUsedOneWay: the slave's node stocks a pair from
// its own block parity once the master's node announced it, so that keys
// it reserved reach the master through enc_keys; before the announcement
// it reserves nothing for the pair. Every key is the same at both ends.
func TestBothEndsStockAPairUsedOneWay(t *testing.T) {
	n := newNet(t, 8)
	ctx := context.Background()
	fromB := &reservations{}
	n.p.PB.SetTamper(fromB.tamper)
	linktest.WaitFor(t, "A's pool for SAE_A1→SAE_B1", func() bool {
		c, err := n.p.SA.CountKeys(ctx, keystore.TakeRequest{Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}, Caller: "SAE_A1", SizeBits: 256, Now: time.Now()})
		return err == nil && c >= 4
	})
	if got := fromB.ids("SAE_A1", "SAE_B1"); len(got) != 0 {
		t.Fatalf("B reserved %d keys for a pair not yet announced", len(got))
	}
	served := 0
	linktest.WaitFor(t, "a key B reserved delivered to SAE_A1", func() bool {
		keys, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_B1", kms.KeyRequest{Number: 3})
		if err != nil {
			return false // the pool may be empty for a moment
		}
		ids := make([]qkd.KeyID, len(keys))
		for i, k := range keys {
			ids[i] = k.ID
		}
		got, err := n.b.DecKeys(ctx, "SAE_B1", "SAE_A1", ids)
		if err != nil {
			t.Fatalf("DecKeys = %v", err)
		}
		byB := fromB.ids("SAE_A1", "SAE_B1")
		found := false
		for i := range keys {
			if got[i].ID != keys[i].ID || !got[i].Bytes.Equal(keys[i].Bytes) {
				t.Fatalf("key %s differs between master and slave", keys[i].ID)
			}
			found = found || byB[keys[i].ID]
		}
		served += len(keys)
		return found
	})
	t.Logf("%d keys served before one of B's", served)
}
