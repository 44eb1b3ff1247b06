package storetest

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// pskInit returns a LinkInit of n slots per sender, A from 0 and B from 100.
func pskInit(l qkd.LinkID, n int) keystore.LinkInit {
	return keystore.LinkInit{
		Link: l,
		Slots: []keystore.SlotRange{
			{Sender: nodeA, First: 0, Count: n},
			{Sender: nodeB, First: 100, Count: n},
		},
		Material: []secret.Bytes{
			secret.From(Pattern(l, 1<<40, n*keystore.SlotSize)),
			secret.From(Pattern(l, 1<<41, n*keystore.SlotSize)),
		},
	}
}

func testInitLink(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	in := pskInit(linkAB, 4)
	if ok, err := s.InitLink(ctx, in); !ok || err != nil {
		t.Fatalf("InitLink = %v, %v; want true, nil", ok, err)
	}
	again := pskInit(linkAB, 8)
	again.Material[0] = secret.From(make([]byte, 8*keystore.SlotSize))
	if ok, err := s.InitLink(ctx, again); ok || err != nil {
		t.Fatalf("InitLink again = %v, %v; want false, nil", ok, err)
	}
	want := Pattern(linkAB, 1<<40, 4*keystore.SlotSize)
	got := takeSlots(t, s, linkAB, nodeA, 0, 4)
	if !bytes.Equal(bytes.Join(got, nil), want) {
		t.Error("PSK slots of A are not the PSK material in order (or InitLink again changed them)")
	}
	if got := takeSlots(t, s, linkAB, nodeB, 102, 1); !bytes.Equal(got[0], Pattern(linkAB, 1<<41, 4*keystore.SlotSize)[2*keystore.SlotSize:3*keystore.SlotSize]) {
		t.Error("PSK slot 102 of B is not bytes [128, 192) of its material")
	}
	if _, err := s.TakeSlot(ctx, linkAB, nodeA, 4); err == nil {
		t.Error("TakeSlot(A, 4) = nil error; InitLink again must not add slots")
	}
	bad := pskInit(linkAC, 2)
	bad.Material[1] = secret.From(make([]byte, 10))
	if ok, err := s.InitLink(ctx, bad); ok || err == nil {
		t.Errorf("InitLink(material of the wrong size) = %v, %v; want an error", ok, err)
	}
	if ok, err := s.InitLink(ctx, pskInit(linkAC, 2)); !ok || err != nil {
		t.Errorf("InitLink(%s) after a malformed attempt = %v, %v; want true, nil", linkAC, ok, err)
	}
}

func testTakeSlot(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	if _, err := s.InitLink(ctx, pskInit(linkAB, 2)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		link   qkd.LinkID
		sender qkd.NodeID
		seq    uint64
		err    error
	}{
		{linkAB, nodeA, 1, nil},
		{linkAB, nodeA, 1, qkd.ErrNotFound},
		{linkAB, nodeA, 2, qkd.ErrNotFound},
		{linkAB, nodeB, 1, qkd.ErrNotFound},
		{linkAB, nodeB, 101, nil},
		{linkAC, nodeA, 0, qkd.ErrNotFound},
		{linkAB, nodeA, 0, nil},
	}
	for _, tt := range tests {
		m, err := s.TakeSlot(ctx, tt.link, tt.sender, tt.seq)
		if tt.err != nil {
			wantErr(t, "TakeSlot", err, tt.err)
			continue
		}
		if err != nil || m.Len() != keystore.SlotSize {
			t.Errorf("TakeSlot(%s, %s, %d) = %d bytes, %v; want %d, nil", tt.link, tt.sender, tt.seq, m.Len(), err, keystore.SlotSize)
		}
	}
}

// testUseSlot: a failed check leaves the slot in place (a forged message
// uses up nothing); a passed check uses it; the material is the slot's.
func testUseSlot(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	if _, err := s.InitLink(ctx, pskInit(linkAB, 3)); err != nil {
		t.Fatal(err)
	}
	var seen []byte
	reject := func(k secret.MACKey) bool { seen = bytes.Clone(k.Expose()); return false }
	accept := func(secret.MACKey) bool { return true }
	for _, tt := range []struct {
		name  string
		seq   uint64
		check func(secret.MACKey) bool
		used  bool
		err   error
	}{
		{"rejected", 1, reject, false, nil},
		{"rejected again", 1, reject, false, nil},
		{"accepted", 1, accept, true, nil},
		{"used", 1, accept, false, qkd.ErrNotFound},
		{"unknown", 99, accept, false, qkd.ErrNotFound},
	} {
		k, used, err := s.UseSlot(ctx, linkAB, nodeA, tt.seq, tt.check)
		if tt.err != nil {
			wantErr(t, "UseSlot "+tt.name, err, tt.err)
			continue
		}
		if err != nil || used != tt.used || k.Len() != keystore.SlotSize {
			t.Errorf("UseSlot %s = %d bytes, used %v, %v; want used %v", tt.name, k.Len(), used, err, tt.used)
		}
		if tt.used && !bytes.Equal(k.Expose(), seen) {
			t.Errorf("UseSlot %s gave other material than the rejected checks saw", tt.name)
		}
	}
	// The other slots were not touched.
	if _, err := s.TakeSlot(ctx, linkAB, nodeA, 2); err != nil {
		t.Errorf("TakeSlot(2) after UseSlot(1) = %v", err)
	}
}

func testSlotBounds(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	type bounds struct {
		Lowest, Next uint64
		Count        int
	}
	check := func(what string, want bounds) {
		t.Helper()
		lo, next, n, err := s.SlotBounds(ctx, linkAB, nodeA)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, bounds{lo, next, n}); diff != "" {
			t.Errorf("SlotBounds %s (-want +got):\n%s", what, diff)
		}
	}
	check("of a new link", bounds{})
	if _, err := s.InitLink(ctx, pskInit(linkAB, 10)); err != nil {
		t.Fatal(err)
	}
	check("after InitLink", bounds{0, 10, 10})
	takeSlots(t, s, linkAB, nodeA, 0, 2)
	check("after taking 0 and 1", bounds{2, 10, 8})
	takeSlots(t, s, linkAB, nodeA, 9, 1)
	check("after taking 9", bounds{2, 10, 7})
	takeSlots(t, s, linkAB, nodeA, 2, 7)
	check("after taking all", bounds{10, 10, 0})
	addConfirmed(t, s, linkAB, 3*keystore.SlotSize, 2)
	a := keystore.Allocation{
		Link:   linkAB,
		Pieces: []keystore.Piece{{Index: 2, Len: 3 * keystore.SlotSize}},
		Slots:  &keystore.SlotRange{Sender: nodeA, First: 10, Count: 3},
	}
	if err := s.Allocate(ctx, a); err != nil {
		t.Fatal(err)
	}
	check("after allocating 10..12", bounds{10, 13, 3})
	takeSlots(t, s, linkAB, nodeA, 10, 3)
	check("after using every slot", bounds{13, 13, 0})
	if lo, next, n, err := s.SlotBounds(ctx, linkAB, nodeB); lo != 100 || next != 110 || n != 10 || err != nil {
		t.Errorf("SlotBounds(B) = %d, %d, %d, %v; want 100, 110, 10", lo, next, n, err)
	}
}

func testStats(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	empty, err := s.Stats(ctx, linkAB)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(keystore.LinkStats{Slots: map[qkd.NodeID]int{}}, empty, emptyMaps); diff != "" {
		t.Errorf("Stats(new link) (-want +got):\n%s", diff)
	}
	addBlock(t, s, linkAB, 9, 50)
	addBlock(t, s, linkAB, 11, 70)
	addConfirmed(t, s, linkAB, 100, 1, 2, 4)
	if _, err := s.InitLink(ctx, pskInit(linkAB, 3)); err != nil {
		t.Fatal(err)
	}
	takeSlots(t, s, linkAB, nodeB, 100, 3)
	makeKeys(t, s, keySpec{n: 2, bits: 64})              // blocks 12 and 13, consumed
	makeKeys(t, s, keySpec{n: 1, bits: 64, ready: true}) // block 14
	a := oneKeyAlloc(t, 2, 0)
	if err := s.Allocate(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DiscardBlocks(ctx, linkAB, []keystore.Range{{From: 11, To: 11}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Stats(ctx, linkAB)
	if err != nil {
		t.Fatal(err)
	}
	want := keystore.LinkStats{
		UnconfirmedBlocks: 1,
		UnconfirmedBytes:  50,
		ConfirmedBytes:    [2]int64{184, 100},
		KeysPending:       3,
		KeysReady:         1,
		Slots:             map[qkd.NodeID]int{nodeA: 3},
		MaxIndex:          14,
		HasIndex:          true,
	}
	if diff := cmp.Diff(want, got, emptyMaps); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

var emptyMaps = cmp.Comparer(func(a, b map[qkd.NodeID]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
})
