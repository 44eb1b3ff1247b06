package storetest

import (
	"bytes"
	"context"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// ignoreData compares Blocks and Keys without their secret bytes (checked
// separately with bytes.Equal).
var ignoreData = cmpopts.IgnoreTypes(secret.Bytes{})

// getOne returns block idx of l with Data, or fails.
func getOne(t testing.TB, s keystore.Store, l qkd.LinkID, idx uint64) keystore.Block {
	t.Helper()
	got, err := s.GetBlocks(context.Background(), l, []uint64{idx})
	if err != nil || len(got) != 1 {
		t.Fatalf("GetBlocks(%s, [%d]) = %d blocks, %v; want 1", l, idx, len(got), err)
	}
	return got[0]
}

func testAddBlock(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	for _, idx := range []uint64{0, 7, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
		in := Pattern(linkAB, idx, 100)
		if err := s.AddBlock(ctx, keystore.Block{Link: linkAB, Index: idx, Data: secret.From(in), Arrived: t0}); err != nil {
			t.Fatalf("AddBlock(%d) = %v", idx, err)
		}
		got := getOne(t, s, linkAB, idx)
		want := keystore.Block{Link: linkAB, Index: idx, State: keystore.BlockUnconfirmed, Remaining: 100, Arrived: t0}
		if diff := cmp.Diff(want, got, ignoreData); diff != "" {
			t.Errorf("GetBlocks(%d) (-want +got):\n%s", idx, diff)
		}
		if !bytes.Equal(got.Data.Expose(), in) {
			t.Errorf("GetBlocks(%d).Data differs from the added bytes", idx)
		}
	}

	t.Run("input buffer not kept", func(t *testing.T) {
		in := Pattern(linkAB, 20, 64)
		buf := secret.From(in)
		if err := s.AddBlock(ctx, keystore.Block{Link: linkAB, Index: 20, Data: buf}); err != nil {
			t.Fatal(err)
		}
		buf.Wipe()
		out := getOne(t, s, linkAB, 20)
		if !bytes.Equal(out.Data.Expose(), in) {
			t.Fatal("stored block changed when the caller wiped its buffer")
		}
		clear(out.Data.Expose())
		if !bytes.Equal(getOne(t, s, linkAB, 20).Data.Expose(), in) {
			t.Fatal("stored block changed when the caller wiped a returned buffer")
		}
	})
	t.Run("present index is a no-op", func(t *testing.T) {
		if err := s.AddBlock(ctx, keystore.Block{Link: linkAB, Index: 7, Data: secret.From(make([]byte, 50))}); err != nil {
			t.Fatalf("AddBlock(7 again) = %v", err)
		}
		if got := getOne(t, s, linkAB, 7); !bytes.Equal(got.Data.Expose(), Pattern(linkAB, 7, 100)) {
			t.Error("AddBlock(7 again) replaced the stored bytes")
		}
	})
	t.Run("past index is a no-op", func(t *testing.T) {
		if n, err := s.DiscardBlocks(ctx, linkAB, []keystore.Range{{From: 7, To: 7}}); n != 1 || err != nil {
			t.Fatalf("DiscardBlocks(7) = %d, %v; want 1, nil", n, err)
		}
		if err := s.AddBlock(ctx, keystore.Block{Link: linkAB, Index: 7, Data: secret.From(Pattern(linkAB, 7, 100))}); err != nil {
			t.Fatalf("AddBlock(7 after discard) = %v", err)
		}
		if got, err := s.GetBlocks(ctx, linkAB, []uint64{7}); len(got) != 0 || err != nil {
			t.Errorf("GetBlocks(7) after re-adding a discarded index = %d blocks, %v; want 0", len(got), err)
		}
	})
	t.Run("links are separate", func(t *testing.T) {
		addBlock(t, s, linkAC, 7, 30)
		if got := getOne(t, s, linkAC, 7); got.Remaining != 30 {
			t.Errorf("block 7 of %s: Remaining = %d, want 30", linkAC, got.Remaining)
		}
	})
	t.Run("empty block", func(t *testing.T) {
		if err := s.AddBlock(ctx, keystore.Block{Link: linkAB, Index: 99}); err == nil {
			t.Error("AddBlock(no data) = nil, want an error")
		}
	})
}

func testListBlocks(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	for _, i := range []uint64{5, 1, 3, 2, 4} {
		addBlock(t, s, linkAB, i, 10*int(i))
	}
	if err := s.ConfirmBlocks(ctx, linkAB, []uint64{2, 4}, 3); err != nil {
		t.Fatal(err)
	}
	blk := func(i uint64, st keystore.BlockState, off int) keystore.Block {
		return keystore.Block{Link: linkAB, Index: i, State: st, Offset: off, Remaining: 10*int(i) - off, Arrived: t0}
	}
	tests := []struct {
		state keystore.BlockState
		limit int
		want  []keystore.Block
	}{
		{keystore.BlockUnconfirmed, 10, []keystore.Block{blk(1, 1, 0), blk(3, 1, 0), blk(5, 1, 0)}},
		{keystore.BlockUnconfirmed, 2, []keystore.Block{blk(1, 1, 0), blk(3, 1, 0)}},
		{keystore.BlockConfirmed, 10, []keystore.Block{blk(2, 2, 3), blk(4, 2, 0)}},
	}
	for _, tt := range tests {
		got, err := s.ListBlocks(ctx, linkAB, tt.state, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty(), ignoreData); diff != "" {
			t.Errorf("ListBlocks(state %d, limit %d) (-want +got):\n%s", tt.state, tt.limit, diff)
		}
		for _, b := range got {
			if b.Data.Len() != 0 {
				t.Errorf("ListBlocks returned Data for block %d", b.Index)
			}
		}
	}
	if got, err := s.ListBlocks(ctx, "nowhere", keystore.BlockUnconfirmed, 10); len(got) != 0 || err != nil {
		t.Errorf("ListBlocks(unknown link) = %v, %v; want none", got, err)
	}
}

func testGetBlocks(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	data := map[uint64][]byte{}
	for _, i := range []uint64{1, 2, 3} {
		data[i] = addBlock(t, s, linkAB, i, 40)
	}
	if err := s.ConfirmBlocks(ctx, linkAB, []uint64{2}, 15); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetBlocks(ctx, linkAB, []uint64{3, 9, 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []keystore.Block{
		{Link: linkAB, Index: 3, State: keystore.BlockUnconfirmed, Remaining: 40, Arrived: t0},
		{Link: linkAB, Index: 2, State: keystore.BlockConfirmed, Offset: 15, Remaining: 25, Arrived: t0},
	}
	if diff := cmp.Diff(want, got, ignoreData); diff != "" {
		t.Fatalf("GetBlocks([3 9 2]) (-want +got):\n%s", diff)
	}
	if !bytes.Equal(got[0].Data.Expose(), data[3]) || !bytes.Equal(got[1].Data.Expose(), data[2][15:]) {
		t.Error("GetBlocks: Data is not original[Offset:]")
	}
}

func testConfirmBlocks(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	data := map[uint64][]byte{}
	for _, i := range []uint64{1, 2, 3, 4} {
		data[i] = addBlock(t, s, linkAB, i, 64)
	}
	check := func(call string, idx uint64, st keystore.BlockState, off int) {
		t.Helper()
		b := getOne(t, s, linkAB, idx)
		if b.State != st || b.Offset != off || b.Remaining != 64-off || !bytes.Equal(b.Data.Expose(), data[idx][off:]) {
			t.Errorf("after %s: block %d = state %d offset %d remaining %d; want state %d offset %d", call, idx, b.State, b.Offset, b.Remaining, st, off)
		}
	}
	wantErr(t, "ConfirmBlocks([3 9])", s.ConfirmBlocks(ctx, linkAB, []uint64{3, 9}, 8), qkd.ErrNotFound)
	check("failed ConfirmBlocks", 3, keystore.BlockUnconfirmed, 0)

	if err := s.ConfirmBlocks(ctx, linkAB, []uint64{1, 2}, 16); err != nil {
		t.Fatalf("ConfirmBlocks([1 2], 16) = %v", err)
	}
	check("ConfirmBlocks", 1, keystore.BlockConfirmed, 16)
	check("ConfirmBlocks", 2, keystore.BlockConfirmed, 0)
	check("ConfirmBlocks", 3, keystore.BlockUnconfirmed, 0)

	if err := s.ConfirmBlocks(ctx, linkAB, []uint64{1, 2}, 16); err != nil {
		t.Fatalf("ConfirmBlocks([1 2], 16) again = %v", err)
	}
	check("second ConfirmBlocks", 1, keystore.BlockConfirmed, 16)

	if err := s.ConfirmBlocks(ctx, linkAB, []uint64{2, 3}, 4); err != nil {
		t.Fatalf("ConfirmBlocks([2 3], 4) = %v", err)
	}
	check("ConfirmBlocks with a confirmed first block", 2, keystore.BlockConfirmed, 0)
	check("ConfirmBlocks with a confirmed first block", 3, keystore.BlockConfirmed, 0)

	if err := s.ConfirmBlocks(ctx, linkAB, []uint64{4}, 64); err != nil {
		t.Fatalf("ConfirmBlocks([4], whole block) = %v", err)
	}
	if got, err := s.GetBlocks(ctx, linkAB, []uint64{4}); len(got) != 0 || err != nil {
		t.Errorf("GetBlocks(4) after skipping all of it = %d blocks, %v; want none", len(got), err)
	}
}

func testDiscardBlocks(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	for i := uint64(1); i <= 6; i++ {
		addBlock(t, s, linkAB, i, 8)
	}
	addBlock(t, s, linkAC, 2, 8)
	if err := s.ConfirmBlocks(ctx, linkAB, []uint64{2, 5}, 0); err != nil {
		t.Fatal(err)
	}
	n, err := s.DiscardBlocks(ctx, linkAB, []keystore.Range{{From: 1, To: 2}, {From: 4, To: 5}, {From: 40, To: 50}})
	if n != 2 || err != nil {
		t.Fatalf("DiscardBlocks = %d, %v; want 2 (blocks 1 and 4), nil", n, err)
	}
	var left []uint64
	for _, st := range []keystore.BlockState{keystore.BlockUnconfirmed, keystore.BlockConfirmed} {
		bs, err := s.ListBlocks(ctx, linkAB, st, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			left = append(left, b.Index)
		}
	}
	if diff := cmp.Diff([]uint64{3, 6, 2, 5}, left); diff != "" {
		t.Errorf("blocks left after DiscardBlocks (-want +got):\n%s", diff)
	}
	if got := getOne(t, s, linkAC, 2); got.Remaining != 8 {
		t.Error("DiscardBlocks touched another link")
	}
}

func testMaterial(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	for i := uint64(1); i <= 7; i++ {
		addBlock(t, s, linkAB, i, 100)
	}
	if err := s.ConfirmBlocks(ctx, linkAB, []uint64{2, 1, 3, 4, 5, 6}, 30); err != nil {
		t.Fatal(err)
	}
	p := func(i uint64, off int) keystore.Piece { return keystore.Piece{Index: i, Off: off, Len: 100 - off} }
	tests := []struct {
		parity, want int
		pieces       []keystore.Piece
	}{
		{0, 50, []keystore.Piece{p(2, 30)}},
		{0, 71, []keystore.Piece{p(2, 30), p(4, 0)}},
		{0, 1000, []keystore.Piece{p(2, 30), p(4, 0), p(6, 0)}},
		{1, 150, []keystore.Piece{p(1, 0), p(3, 0)}}, // 7 is unconfirmed
		{1, 1000, []keystore.Piece{p(1, 0), p(3, 0), p(5, 0)}},
	}
	for _, tt := range tests {
		got, err := s.Material(ctx, linkAB, tt.parity, tt.want)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.pieces, got); diff != "" {
			t.Errorf("Material(parity %d, want %d) (-want +got):\n%s", tt.parity, tt.want, diff)
		}
	}
}
