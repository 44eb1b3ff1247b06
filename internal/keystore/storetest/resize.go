package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

func newIDs(t testing.TB, n int) []qkd.KeyID {
	out := make([]qkd.KeyID, n)
	for i := range out {
		out[i] = newID(t)
	}
	return out
}

// concat returns the concatenated bytes of keys.
func concat(keys []keystore.Key) []byte {
	var b []byte
	for _, k := range keys {
		b = append(b, k.Data.Expose()...)
	}
	return b
}

// takeAll takes the named keys as slave and returns them.
func takeAll(t testing.TB, s keystore.Store, idList []qkd.KeyID) []keystore.Key {
	t.Helper()
	got, err := s.TakeByID(context.Background(), keystore.TakeRequest{Master: master, Caller: slave, IDs: idList, Now: t0})
	if err != nil {
		t.Fatalf("TakeByID(resized keys) = %v", err)
	}
	return got
}

func testResize(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	tests := []struct {
		name   string
		old    []keySpec // made in order, each n keys
		parts  int
		ready  bool
		outbox bool
	}{
		{"split 512 into 2", []keySpec{{n: 1, bits: 512}}, 2, true, false},
		{"split 1024 into 8, pending with outbox", []keySpec{{n: 1, bits: 1024}}, 8, false, true},
		{"merge 3×256", []keySpec{{n: 3}}, 1, true, false},
		{"merge 128 and 384", []keySpec{{n: 1, bits: 128}, {n: 1, bits: 384}}, 1, false, true},
		{"merge 2 into 4", []keySpec{{n: 2}}, 4, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old []keystore.Key
			for i, sp := range tt.old {
				sp.ready = true
				sp.expires = t0.Add(time.Duration(2+i) * time.Hour)
				old = append(old, makeKeys(t, s, sp)...)
			}
			r := keystore.Resize{ID: newID(t).String(), Link: linkAB, Master: master, Slaves: []qkd.SAEID{slave},
				Old: ids(old), New: newIDs(t, tt.parts), Ready: tt.ready}
			if tt.outbox {
				r.Outbox = &keystore.Outbox{ID: "out-" + r.ID, Payload: []byte{1, 2}, Created: t0}
			}
			if err := s.ResizeKeys(ctx, r); err != nil {
				t.Fatalf("ResizeKeys = %v", err)
			}
			if _, err := s.TakeByID(ctx, byIDReq(slave, old[0])); err == nil {
				t.Errorf("TakeByID(old key) after ResizeKeys = nil error, want not found")
			}
			if !tt.ready {
				if err := s.SetKeysReady(ctx, r.New, "out-"+r.ID); err != nil {
					t.Fatal(err)
				}
			}
			got := takeAll(t, s, r.New)
			want := concat(old)
			if !bytes.Equal(concat(got), want) {
				t.Fatalf("resized keys hold other bytes than the old keys, in order")
			}
			for _, k := range got {
				wantKey := keystore.Key{ID: k.ID, Link: linkAB, State: keystore.KeyReady, Master: master,
					Slaves: []qkd.SAEID{slave}, SizeBits: 8 * len(want) / tt.parts, Created: t0, Expires: t0.Add(2 * time.Hour)}
				if diff := cmp.Diff(wantKey, k, ignoreData, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("resized key (-want +got):\n%s", diff)
				}
			}
			if box, err := s.PendingOutbox(ctx, linkAB); err != nil || len(box) != 0 {
				t.Errorf("PendingOutbox after SetKeysReady = %d entries, %v", len(box), err)
			}
		})
	}
}

func testResizeApplied(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	old := makeKeys(t, s, keySpec{n: 1, bits: 512, ready: true, expires: t0.Add(time.Hour)})
	r := keystore.Resize{ID: "op-1", Link: linkAB, Master: master, Slaves: []qkd.SAEID{slave}, Old: ids(old), New: newIDs(t, 2), Ready: true}
	if err := s.ResizeKeys(ctx, r); err != nil {
		t.Fatal(err)
	}
	before := snap(t, s, linkAB)
	wantErr(t, "ResizeKeys(again)", s.ResizeKeys(ctx, r), keystore.ErrApplied)
	other := r
	other.New = newIDs(t, 4)
	wantErr(t, "ResizeKeys(same ID, other keys)", s.ResizeKeys(ctx, other), keystore.ErrApplied)
	sameSnapshot(t, "a repeated ResizeKeys", before, snap(t, s, linkAB))
	if got, err := s.ListKeys(ctx, keystore.KeyFilter{Master: master, Slaves: r.Slaves, Now: t0}); err != nil || len(got) != 2 {
		t.Fatalf("resized keys after a repeat = %d, %v; want 2", len(got), err)
	}
	// Once the keys expired, the ID is forgotten with them: the old keys
	// are gone too, so a late repeat finds nothing to resize.
	if gone, err := s.ExpireKeys(ctx, t0.Add(time.Hour)); err != nil || len(gone) != 2 {
		t.Fatalf("ExpireKeys = %d keys, %v; want the 2 resized ones", len(gone), err)
	}
	wantErr(t, "ResizeKeys(after expiry)", s.ResizeKeys(ctx, r), qkd.ErrNotFound)
}

func testResizeRefused(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	ready := makeKeys(t, s, keySpec{n: 4, ready: true})
	pending := makeKeys(t, s, keySpec{n: 1})
	onAC := makeKeys(t, s, keySpec{n: 1, ready: true, link: linkAC})
	twoSlaves := makeKeys(t, s, keySpec{n: 1, ready: true, slaves: []qkd.SAEID{slave, slave2}})
	otherPending := makeKeys(t, s, keySpec{n: 1, ready: true, slaves: []qkd.SAEID{slave, slave2}, pending: []qkd.SAEID{slave2}})
	expired := makeKeys(t, s, keySpec{n: 1, ready: true, expires: time.Now().Add(-time.Hour)})
	existing := ready[3].ID
	r := func(old []qkd.KeyID, nw int, f func(*keystore.Resize)) keystore.Resize {
		x := keystore.Resize{ID: newID(t).String(), Link: linkAB, Master: master, Slaves: []qkd.SAEID{slave}, Old: old, New: newIDs(t, nw)}
		if f != nil {
			f(&x)
		}
		return x
	}
	id := func(k []keystore.Key) qkd.KeyID { return k[0].ID }
	tests := []struct {
		name string
		r    keystore.Resize
		want error
	}{
		{"no ID", r(ids(ready[:1]), 2, func(x *keystore.Resize) { x.ID = "" }), keystore.ErrBadAllocation},
		{"one into one", r(ids(ready[:1]), 1, nil), keystore.ErrBadAllocation},
		{"repeated old", r([]qkd.KeyID{ready[0].ID, ready[0].ID}, 1, nil), keystore.ErrBadAllocation},
		{"old among new", r(ids(ready[:1]), 2, func(x *keystore.Resize) { x.New[1] = ready[0].ID }), keystore.ErrBadAllocation},
		{"32 bytes into 3", r(ids(ready[:1]), 3, nil), keystore.ErrBadAllocation},
		{"different recipients", r([]qkd.KeyID{id(twoSlaves), id(otherPending)}, 1, func(x *keystore.Resize) {
			x.Slaves = []qkd.SAEID{slave, slave2}
		}), keystore.ErrBadAllocation},
		{"unknown key", r([]qkd.KeyID{newID(t)}, 2, nil), qkd.ErrNotFound},
		{"expired key", r([]qkd.KeyID{id(expired)}, 2, nil), qkd.ErrNotFound},
		{"other link", r([]qkd.KeyID{ready[0].ID, id(onAC)}, 1, nil), qkd.ErrNotFound},
		{"other pair", r([]qkd.KeyID{ready[0].ID, id(twoSlaves)}, 1, nil), qkd.ErrNotFound},
		{"other master", r(ids(ready[:1]), 2, func(x *keystore.Resize) { x.Master = stranger }), qkd.ErrNotFound},
		{"pending key", r([]qkd.KeyID{ready[0].ID, id(pending)}, 1, nil), keystore.ErrConflict},
		{"new ID exists", r(ids(ready[:2]), 2, func(x *keystore.Resize) { x.New[0] = existing }), keystore.ErrConflict},
	}
	before := snap(t, s, linkAB)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, "ResizeKeys", s.ResizeKeys(ctx, tt.r), tt.want)
		})
	}
	sameSnapshot(t, "refused ResizeKeys", before, snap(t, s, linkAB))
	if got := takeAll(t, s, ids(ready)); len(got) != 4 {
		t.Errorf("keys left after refused resizes = %d, want 4", len(got))
	}
}

func testListKeys(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	a := makeKeys(t, s, keySpec{n: 2, ready: true})
	b := makeKeys(t, s, keySpec{n: 1, ready: true, bits: 512})
	makeKeys(t, s, keySpec{n: 1})                                                   // pending
	c := makeKeys(t, s, keySpec{n: 1, ready: true, link: linkAC})                   // other link
	makeKeys(t, s, keySpec{n: 1, ready: true, slaves: []qkd.SAEID{slave, slave2}})  // other pair
	makeKeys(t, s, keySpec{n: 1, ready: true, expires: time.Now().Add(-time.Hour)}) // expired
	d := makeKeys(t, s, keySpec{n: 1, ready: true, pending: []qkd.SAEID{master}})   // waits for master
	all := []qkd.SAEID{slave}
	tests := []struct {
		name string
		f    keystore.KeyFilter
		want [][]keystore.Key
	}{
		{"pair on A-B", keystore.KeyFilter{Link: linkAB, Master: master, Slaves: all}, [][]keystore.Key{a, b, d}},
		{"any link", keystore.KeyFilter{Master: master, Slaves: all}, [][]keystore.Key{a, b, c, d}},
		{"512 bits", keystore.KeyFilter{Link: linkAB, Master: master, Slaves: all, SizeBits: 512}, [][]keystore.Key{b}},
		{"caller slave", keystore.KeyFilter{Link: linkAB, Master: master, Slaves: all, Caller: slave}, [][]keystore.Key{a, b}},
		{"limit 1", keystore.KeyFilter{Link: linkAB, Master: master, Slaves: all, Limit: 1}, [][]keystore.Key{a[:1]}},
		{"nobody's", keystore.KeyFilter{Master: stranger, Slaves: all}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListKeys(ctx, tt.f)
			if err != nil {
				t.Fatalf("ListKeys = %v", err)
			}
			var want []qkd.KeyID
			for _, w := range tt.want {
				want = append(want, ids(w)...)
			}
			if diff := cmp.Diff(want, ids(got), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListKeys IDs (-want +got):\n%s", diff)
			}
			for _, k := range got {
				if k.Data.Len() != 0 {
					t.Errorf("ListKeys returned the bytes of %s", k.ID)
				}
			}
		})
	}
}
