package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// snapshot is everything observable about a link, to check that a failed
// operation changed nothing.
type snapshot struct {
	Stats  keystore.LinkStats
	Blocks []keystore.Block
	Data   [][]byte
	Outbox []keystore.Outbox
}

func snap(t testing.TB, s keystore.Store, l qkd.LinkID) snapshot {
	t.Helper()
	ctx := context.Background()
	var sn snapshot
	var err error
	if sn.Stats, err = s.Stats(ctx, l); err != nil {
		t.Fatal(err)
	}
	for _, st := range []keystore.BlockState{keystore.BlockUnconfirmed, keystore.BlockConfirmed} {
		bs, err := s.ListBlocks(ctx, l, st, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			full := getOne(t, s, l, b.Index)
			sn.Blocks = append(sn.Blocks, b)
			sn.Data = append(sn.Data, bytes.Clone(full.Data.Expose()))
		}
	}
	if sn.Outbox, err = s.PendingOutbox(ctx, l); err != nil {
		t.Fatal(err)
	}
	return sn
}

func sameSnapshot(t testing.TB, what string, before, after snapshot) {
	t.Helper()
	if diff := cmp.Diff(before, after, ignoreData); diff != "" {
		t.Errorf("%s changed the store (-before +after):\n%s", what, diff)
	}
}

// takeSlots takes slots first..first+n-1 of sender and returns their bytes.
func takeSlots(t testing.TB, s keystore.Store, l qkd.LinkID, sender qkd.NodeID, first uint64, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		m, err := s.TakeSlot(context.Background(), l, sender, first+uint64(i))
		if err != nil {
			t.Fatalf("TakeSlot(%s, %d) = %v", sender, first+uint64(i), err)
		}
		out[i] = bytes.Clone(m.Expose())
		m.Wipe()
	}
	return out
}

func testAllocateCut(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	data := addConfirmed(t, s, linkAB, 100, 2, 4)
	k1, k2 := newID(t), newID(t)
	a := keystore.Allocation{
		Link:   linkAB,
		Pieces: []keystore.Piece{{Index: 2, Off: 0, Len: 100}, {Index: 4, Off: 0, Len: 92}},
		Keys: []keystore.Key{
			{ID: k1, Master: master, Slaves: []qkd.SAEID{slave}, Pending: []qkd.SAEID{slave}, SizeBits: 256, Created: t0},
			{ID: k2, Master: master, Slaves: []qkd.SAEID{slave}, Pending: []qkd.SAEID{slave}, SizeBits: 256, Created: t0},
		},
		Slots: &keystore.SlotRange{Sender: nodeA, First: 0, Count: 2},
	}
	if err := s.Allocate(ctx, a); err != nil {
		t.Fatalf("Allocate = %v", err)
	}
	all := append(bytes.Clone(data[2]), data[4][:92]...)

	if n, err := s.CountKeys(ctx, keystore.TakeRequest{Master: master, Caller: slave, Slaves: []qkd.SAEID{slave}, SizeBits: 256, Now: t0}); n != 0 || err != nil {
		t.Errorf("CountKeys before SetKeysReady = %d, %v; want 0 (keys are Pending)", n, err)
	}
	if err := s.SetKeysReady(ctx, []qkd.KeyID{k1, k2}, ""); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{k1, k2}, Now: t0})
	if err != nil {
		t.Fatalf("TakeByID = %v", err)
	}
	if !bytes.Equal(got[0].Data.Expose(), all[0:32]) || !bytes.Equal(got[1].Data.Expose(), all[32:64]) {
		t.Error("keys are not the first bytes of the pieces, in order")
	}
	slots := takeSlots(t, s, linkAB, nodeA, 0, 2)
	if !bytes.Equal(slots[0], all[64:128]) || !bytes.Equal(slots[1], all[128:192]) {
		t.Error("slots are not the bytes after the keys, in order")
	}
	if bs, err := s.GetBlocks(ctx, linkAB, []uint64{2}); len(bs) != 0 || err != nil {
		t.Errorf("GetBlocks(2) after consuming all of it = %d blocks, %v; want none", len(bs), err)
	}
	b4 := getOne(t, s, linkAB, 4)
	if b4.Offset != 92 || b4.Remaining != 8 || !bytes.Equal(b4.Data.Expose(), data[4][92:]) {
		t.Errorf("block 4 after allocation: offset %d remaining %d; want 92, 8 and the last 8 bytes", b4.Offset, b4.Remaining)
	}
}

// oneKeyAlloc returns an allocation of one 128-bit key from block idx at off.
func oneKeyAlloc(t testing.TB, idx uint64, off int) keystore.Allocation {
	return keystore.Allocation{
		Link:   linkAB,
		Pieces: []keystore.Piece{{Index: idx, Off: off, Len: 16}},
		Keys:   []keystore.Key{{ID: newID(t), Master: master, Slaves: []qkd.SAEID{slave}, Pending: []qkd.SAEID{slave}, SizeBits: 128}},
		Outbox: &keystore.Outbox{ID: "out-" + newID(t).String(), Link: linkAB, Payload: []byte("batch"), Created: t0},
	}
}

func testAllocateIdempotent(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	addConfirmed(t, s, linkAB, 64, 2)
	a := oneKeyAlloc(t, 2, 0)
	if err := s.Allocate(ctx, a); err != nil {
		t.Fatalf("Allocate = %v", err)
	}
	before := snap(t, s, linkAB)
	if err := s.Allocate(ctx, a); err != nil {
		t.Fatalf("Allocate again = %v, want nil", err)
	}
	sameSnapshot(t, "Allocate again", before, snap(t, s, linkAB))

	t.Run("slots only, after the slots were used", func(t *testing.T) {
		addConfirmed(t, s, linkAB, 200, 4)
		slotAlloc := keystore.Allocation{
			Link:   linkAB,
			Pieces: []keystore.Piece{{Index: 4, Len: 2 * keystore.SlotSize}},
			Slots:  &keystore.SlotRange{Sender: nodeB, First: 5, Count: 2},
		}
		if err := s.Allocate(ctx, slotAlloc); err != nil {
			t.Fatalf("Allocate(slots) = %v", err)
		}
		takeSlots(t, s, linkAB, nodeB, 5, 2)
		before := snap(t, s, linkAB)
		if err := s.Allocate(ctx, slotAlloc); err != nil {
			t.Fatalf("Allocate(slots) again = %v, want nil", err)
		}
		sameSnapshot(t, "Allocate(slots) again", before, snap(t, s, linkAB))
	})
}

func testAllocateConflict(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	addConfirmed(t, s, linkAB, 64, 2, 4)
	addBlock(t, s, linkAB, 6, 64)
	if err := s.Allocate(ctx, oneKeyAlloc(t, 2, 0)); err != nil {
		t.Fatal(err)
	}
	twoPieces := oneKeyAlloc(t, 4, 0)
	twoPieces.Pieces = []keystore.Piece{{Index: 4, Off: 0, Len: 8}, {Index: 2, Off: 0, Len: 8}}
	tests := []struct {
		name string
		a    keystore.Allocation
	}{
		{"consumed material", oneKeyAlloc(t, 2, 0)},
		{"piece behind the offset", oneKeyAlloc(t, 2, 8)},
		{"piece ahead of the offset", oneKeyAlloc(t, 4, 8)},
		{"past the end", oneKeyAlloc(t, 2, 56)},
		{"unconfirmed block", oneKeyAlloc(t, 6, 0)},
		{"absent block", oneKeyAlloc(t, 8, 0)},
		{"second piece conflicts", twoPieces},
		{"unknown link", func() keystore.Allocation { a := oneKeyAlloc(t, 2, 16); a.Link = "nowhere"; return a }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snap(t, s, linkAB)
			wantErr(t, "Allocate", s.Allocate(ctx, tt.a), keystore.ErrConflict)
			sameSnapshot(t, "a conflicting Allocate", before, snap(t, s, linkAB))
		})
	}
	t.Run("second key exists", func(t *testing.T) {
		first := oneKeyAlloc(t, 4, 0)
		if err := s.Allocate(ctx, first); err != nil {
			t.Fatal(err)
		}
		a := oneKeyAlloc(t, 4, 16)
		a.Keys = append(a.Keys, first.Keys[0])
		a.Pieces[0].Len = 32
		before := snap(t, s, linkAB)
		wantErr(t, "Allocate", s.Allocate(ctx, a), keystore.ErrKeyExists)
		sameSnapshot(t, "a conflicting Allocate", before, snap(t, s, linkAB))
	})
	t.Run("slots stored before", func(t *testing.T) {
		addConfirmed(t, s, linkAB, 200, 10)
		a := keystore.Allocation{
			Link:   linkAB,
			Pieces: []keystore.Piece{{Index: 10, Len: keystore.SlotSize}},
			Slots:  &keystore.SlotRange{Sender: nodeA, First: 3, Count: 1},
		}
		if err := s.Allocate(ctx, a); err != nil {
			t.Fatal(err)
		}
		a.Pieces[0].Off = keystore.SlotSize
		a.Pieces[0].Len = 2 * keystore.SlotSize
		a.Slots = &keystore.SlotRange{Sender: nodeA, First: 2, Count: 2}
		before := snap(t, s, linkAB)
		wantErr(t, "Allocate(overlapping slots)", s.Allocate(ctx, a), keystore.ErrConflict)
		sameSnapshot(t, "a conflicting Allocate", before, snap(t, s, linkAB))
	})
}

// testAllocateOutboxOnly: an outbox entry without material (a message
// fixed before its first send) is stored alone, listed, refused a second
// time under its ID, and removed by SetKeysReady with no keys.
func testAllocateOutboxOnly(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	addConfirmed(t, s, linkAB, 64, 2)
	before := snap(t, s, linkAB)
	o := &keystore.Outbox{ID: "new_key_batch:1", Link: linkAB, Payload: []byte("batch"), Created: time.Unix(1000, 0)}
	if err := s.Allocate(ctx, keystore.Allocation{Link: linkAB, Outbox: o}); err != nil {
		t.Fatalf("Allocate(outbox entry alone) = %v", err)
	}
	box, err := s.PendingOutbox(ctx, linkAB)
	if err != nil || len(box) != 1 || box[0].ID != o.ID || string(box[0].Payload) != "batch" {
		t.Fatalf("PendingOutbox = %+v, %v; want the entry", box, err)
	}
	wantErr(t, "Allocate(the same entry again)", s.Allocate(ctx, keystore.Allocation{Link: linkAB, Outbox: o}), keystore.ErrConflict)
	if err := s.SetKeysReady(ctx, nil, o.ID); err != nil {
		t.Fatalf("SetKeysReady(no keys, entry) = %v", err)
	}
	if box, err := s.PendingOutbox(ctx, linkAB); len(box) != 0 || err != nil {
		t.Fatalf("PendingOutbox after SetKeysReady = %d entries, %v; want none", len(box), err)
	}
	sameSnapshot(t, "an outbox entry stored and removed", before, snap(t, s, linkAB))
}

func testAllocateMalformed(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	addConfirmed(t, s, linkAB, 64, 2)
	mod := func(f func(a *keystore.Allocation)) keystore.Allocation {
		a := oneKeyAlloc(t, 2, 0)
		f(&a)
		return a
	}
	tests := []struct {
		name string
		a    keystore.Allocation
	}{
		{"too few bytes", mod(func(a *keystore.Allocation) { a.Pieces[0].Len = 15 })},
		{"too many bytes", mod(func(a *keystore.Allocation) { a.Pieces[0].Len = 17 })},
		{"size not whole bytes", mod(func(a *keystore.Allocation) { a.Keys[0].SizeBits = 127 })},
		{"nothing to make", mod(func(a *keystore.Allocation) { a.Keys = nil })},
		{"zero key ID", mod(func(a *keystore.Allocation) { a.Keys[0].ID = qkd.KeyID{} })},
		{"pending stranger", mod(func(a *keystore.Allocation) { a.Keys[0].Pending = []qkd.SAEID{stranger} })},
		{"empty slot range", mod(func(a *keystore.Allocation) { a.Slots = &keystore.SlotRange{Sender: nodeA} })},
		{"outbox entry with pieces but no keys", mod(func(a *keystore.Allocation) { a.Keys = nil; a.Outbox = &keystore.Outbox{ID: "o", Link: linkAB} })},
		{"outbox entry alone without ID", keystore.Allocation{Link: linkAB, Outbox: &keystore.Outbox{Link: linkAB, Payload: []byte{1}}}},
		{"nothing at all", keystore.Allocation{Link: linkAB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snap(t, s, linkAB)
			wantErr(t, "Allocate", s.Allocate(ctx, tt.a), keystore.ErrBadAllocation)
			sameSnapshot(t, "a malformed Allocate", before, snap(t, s, linkAB))
		})
	}
}
