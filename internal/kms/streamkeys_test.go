package kms_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// TestEncKeysLeavesStreamChunks: the chunks of an ETSI 004 key stream of
// the pair (link.ReserveIDs) are not the pair's ETSI 014 keys: enc_keys of
// the same size does not take them, enc_keys of another size does not
// split or merge them, and closing the pair does not delete them; the
// stream still delivers every chunk by ID at both ends.
func TestEncKeysLeavesStreamChunks(t *testing.T) {
	n := newNet(t, 0)
	ctx := context.Background()
	const ksid = "6b1f2e8a-470c-4f3d-9a52-11e07c3b905d"
	chunks := []qkd.KeyID{{1}, {2}, {3}, {4}}
	if err := n.p.A.ReserveIDs(ctx, ksid, "SAE_A1", pairAB, 256, chunks, time.Hour); err != nil {
		t.Fatal(err)
	}
	big := []qkd.KeyID{{5}}
	if err := n.p.A.ReserveIDs(ctx, ksid, "SAE_A1", pairAB, 1024, big, time.Hour); err != nil {
		t.Fatal(err)
	}
	var reserved atomic.Int32
	n.p.PA.SetTamper(func(tp kmsproto.Type, b []byte) []byte {
		if tp == kmsproto.MakeKeysExternal {
			reserved.Add(1)
		}
		return b
	})
	for _, req := range []kms.KeyRequest{{Number: 2, Size: 256}, {Number: 2, Size: 512}, {Number: 1, Size: 128}} {
		before := reserved.Load()
		keys, err := n.a.EncKeys(ctx, "SAE_A1", "SAE_B1", req)
		if err != nil || len(keys) != req.Number {
			t.Fatalf("EncKeys(%d×%d) = %d keys, %v", req.Number, req.Size, len(keys), err)
		}
		for _, k := range keys {
			if slices.Contains(chunks, k.ID) || slices.Contains(big, k.ID) {
				t.Errorf("EncKeys(%d×%d) handed out chunk %s of the key stream", req.Number, req.Size, k.ID)
			}
		}
		if reserved.Load() == before {
			t.Errorf("EncKeys(%d×%d) reserved nothing: it was served from the stream's chunks", req.Number, req.Size)
		}
		ids := make([]qkd.KeyID, len(keys))
		for i := range keys {
			ids[i] = keys[i].ID
		}
		if _, err := n.b.DecKeys(ctx, "SAE_B1", "SAE_A1", ids); err != nil {
			t.Fatalf("DecKeys(%d×%d) = %v", req.Number, req.Size, err)
		}
	}
	if _, _, err := n.a.ClosePair(ctx, "SAE_A1", "SAE_B1"); err != nil {
		t.Fatalf("ClosePair = %v", err)
	}
	all := append(slices.Clone(chunks), big...)
	for end, tr := range map[string]struct {
		s      keystore.Store
		caller qkd.SAEID
	}{"A": {n.p.SA, "SAE_A1"}, "B": {n.p.SB, "SAE_B1"}} {
		got, err := tr.s.TakeByID(ctx, keystore.TakeRequest{IDs: all, Master: "SAE_A1", Caller: tr.caller})
		if err != nil {
			t.Fatalf("TakeByID(chunks) at %s = %v", end, err)
		}
		for i, k := range got {
			if k.Stream != ksid || k.ID != all[i] {
				t.Errorf("chunk %d at %s: %s, Stream %q", i, end, k.ID, k.Stream)
			}
		}
	}
}
