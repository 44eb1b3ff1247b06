package kms_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

var pairAB = []qkd.SAEID{"SAE_B1"}

// sizes returns the sizes of a store's Ready keys of SAE_A1 → SAE_B1.
func sizes(t *testing.T, s keystore.Store) map[int]int {
	t.Helper()
	keys, err := s.ListKeys(context.Background(), keystore.KeyFilter{Master: "SAE_A1", Slaves: pairAB})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, k := range keys {
		out[k.SizeBits]++
	}
	return out
}

func TestEncKeysSplitsAndMerges(t *testing.T) {
	tests := []struct {
		name      string
		bits, n   int // keys reserved first
		req       kms.KeyRequest
		wantLeft  map[int]int // Ready keys of the pair left at both ends
		wantBytes int
	}{
		{"split 2×512 for 3×256", 512, 2, kms.KeyRequest{Number: 3, Size: 256}, map[int]int{256: 1}, 32},
		{"split 1024 for 2×128", 1024, 1, kms.KeyRequest{Number: 2, Size: 128}, map[int]int{128: 6}, 16},
		{"merge 4×128 for 512", 128, 4, kms.KeyRequest{Number: 1, Size: 512}, map[int]int{}, 64},
		{"merge 5×128 for 2×256", 128, 5, kms.KeyRequest{Number: 2, Size: 256}, map[int]int{128: 1}, 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, 0)
			ctx := context.Background()
			if _, err := n.p.A.Reserve(ctx, "SAE_A1", pairAB, tt.bits, tt.n, time.Hour); err != nil {
				t.Fatal(err)
			}
			var reserved atomic.Int32
			n.p.PA.SetTamper(func(tp kmsproto.Type, b []byte) []byte {
				if tp == kmsproto.MakeKeysExternal {
					reserved.Add(1)
				}
				return b
			})
			keys, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_B1", tt.req)
			if err != nil {
				t.Fatalf("EncKeys = %v", err)
			}
			if r := reserved.Load(); r != 0 {
				t.Errorf("EncKeys reserved fresh keys %d times, want none (split/merge)", r)
			}
			ids := make([]qkd.KeyID, len(keys))
			for i, k := range keys {
				ids[i] = k.ID
				if k.Bytes.Len() != tt.wantBytes {
					t.Fatalf("key %d has %d bytes, want %d", i, k.Bytes.Len(), tt.wantBytes)
				}
			}
			got, err := n.b.DecKeys(ctx, "SAE_B1", "SAE_A1", ids)
			if err != nil {
				t.Fatalf("DecKeys = %v", err)
			}
			for i := range keys {
				if !got[i].Bytes.Equal(keys[i].Bytes) {
					t.Fatalf("key %d differs between master and slave", i)
				}
			}
			for name, st := range map[string]keystore.Store{"A": n.p.SA, "B": n.p.SB} {
				if left := sizes(t, st); len(left) != len(tt.wantLeft) || !equalCounts(left, tt.wantLeft) {
					t.Errorf("%s holds %v keys of the pair by size, want %v", name, left, tt.wantLeft)
				}
			}
		})
	}
}

func equalCounts(a, b map[int]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// TestEncKeysWithoutResizableKeysReserves: nothing to split or merge, so a
// reservation serves the request as before.
func TestEncKeysWithoutResizableKeysReserves(t *testing.T) {
	n := newNet(t, 0)
	ctx := context.Background()
	if _, err := n.p.A.Reserve(ctx, "SAE_A1", pairAB, 384, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	keys, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_B1", kms.KeyRequest{Number: 1, Size: 256})
	if err != nil || len(keys) != 1 {
		t.Fatalf("EncKeys = %d keys, %v", len(keys), err)
	}
	if left := sizes(t, n.p.SA); left[384] != 1 {
		t.Errorf("the 384-bit key was touched: %v", left)
	}
}

func TestNewAppOncePerPair(t *testing.T) {
	n := newNet(t, 0)
	ctx := context.Background()
	var sent atomic.Int32
	n.p.PA.SetTamper(func(tp kmsproto.Type, b []byte) []byte {
		if tp == kmsproto.NewApp {
			sent.Add(1)
		}
		return b
	})
	for range 3 {
		if _, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_B1", kms.KeyRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.a.EncKeys(ctx, "SAE_A2", "SAE_B1", kms.KeyRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := sent.Load(); got != 2 {
		t.Errorf("new_app sent %d times for 2 pairs, want 2", got)
	}
	apps := n.p.B.Apps()
	if len(apps) != 2 || apps[0].App != "SAE_A1>SAE_B1" || apps[0].SizeBits != 256 || apps[1].Master != "SAE_A2" {
		t.Errorf("B knows the applications %+v", apps)
	}

	// The pair closed: its keys go at both ends, the peer forgets it, and
	// a later request announces it again.
	if _, err := n.p.A.Reserve(ctx, "SAE_A1", pairAB, 256, 3, time.Hour); err != nil {
		t.Fatal(err)
	}
	here, there, err := n.a.ClosePair(ctx, "SAE_A1", "SAE_B1")
	// B also held the 3 keys SAE_A1 received above and SAE_B1 never asked for.
	if err != nil || here != 3 || there != 6 {
		t.Fatalf("ClosePair = %d, %d, %v; want 3, 6, nil", here, there, err)
	}
	if len(sizes(t, n.p.SA))+len(sizes(t, n.p.SB)) != 0 {
		t.Error("keys of the closed pair left")
	}
	if apps := n.p.B.Apps(); len(apps) != 1 {
		t.Errorf("B knows %d applications after the close, want 1", len(apps))
	}
	if _, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_B1", kms.KeyRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := sent.Load(); got != 3 {
		t.Errorf("new_app sent %d times after the close, want 3", got)
	}
}

// TestNewAppUnknownSlave: the neighbour says the slave is not attached to
// it, so keys for it could never be fetched: 400.
func TestNewAppUnknownSlave(t *testing.T) {
	n := newNet(t, 0)
	wrong := map[qkd.SAEID]qkd.NodeID{"SAE_A1": "A", "SAE_B9": "B"}
	s, err := kms.New(kms.Options{Node: "A", Store: n.p.SA, Links: []kms.Link{n.p.A}, SAEs: wrong, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.EncKeys(context.Background(), "SAE_A1", "SAE_B9", kms.KeyRequest{})
	var re *qkd.RequestError
	if !errors.As(err, &re) {
		t.Fatalf("EncKeys for a slave the neighbour lacks = %v, want a 400", err)
	}
}
