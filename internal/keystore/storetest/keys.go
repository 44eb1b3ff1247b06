package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// pairReq is a TakeForPair request of slave for master's 256-bit keys.
func pairReq(n int) keystore.TakeRequest {
	return keystore.TakeRequest{Master: master, Caller: slave, Slaves: []qkd.SAEID{slave}, SizeBits: 256, Number: n, Now: t0}
}

func byIDReq(caller qkd.SAEID, keys ...keystore.Key) keystore.TakeRequest {
	return keystore.TakeRequest{Master: master, Caller: caller, IDs: ids(keys), Now: t0}
}

func count(t testing.TB, s keystore.Store, r keystore.TakeRequest) int {
	t.Helper()
	n, err := s.CountKeys(context.Background(), r)
	if err != nil {
		t.Fatalf("CountKeys = %v", err)
	}
	return n
}

func testTakeForPair(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	makeKeys(t, s, keySpec{n: 2}) // Pending: never delivered
	keys := makeKeys(t, s, keySpec{n: 5, ready: true})
	makeKeys(t, s, keySpec{n: 1, ready: true, bits: 128})
	makeKeys(t, s, keySpec{n: 1, ready: true, slaves: []qkd.SAEID{slave, slave2}})
	makeKeys(t, s, keySpec{n: 1, ready: true, link: linkAC})
	makeKeys(t, s, keySpec{n: 1, ready: true, expires: t0})

	wantErr(t, "TakeForPair(7)", takeErr(s.TakeForPair(ctx, pairReq(7))), qkd.ErrInsufficientKey)
	if n := count(t, s, pairReq(0)); n != 6 {
		t.Fatalf("CountKeys after a refused TakeForPair = %d, want 6", n)
	}
	got, err := s.TakeForPair(ctx, pairReq(2))
	if err != nil {
		t.Fatalf("TakeForPair(2) = %v", err)
	}
	sameKeyBytes(t, "TakeForPair(2)", got, keys[:2])
	want := keystore.Key{ID: keys[0].ID, Link: linkAB, State: keystore.KeyReady, Master: master, Slaves: []qkd.SAEID{slave}, SizeBits: 256, Created: t0}
	if diff := cmp.Diff(want, got[0], ignoreData, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("TakeForPair(2)[0] (-want +got):\n%s", diff)
	}

	onLink := pairReq(3)
	onLink.Link = linkAB
	got, err = s.TakeForPair(ctx, onLink)
	if err != nil {
		t.Fatalf("TakeForPair(3 on %s) = %v", linkAB, err)
	}
	sameKeyBytes(t, "TakeForPair(3 on link)", got, keys[2:])
	if n := count(t, s, pairReq(0)); n != 1 {
		t.Errorf("CountKeys = %d, want 1 (the key on %s)", n, linkAC)
	}

	notPending := pairReq(1)
	notPending.Caller = master // a recipient, but not Pending here
	wantErr(t, "TakeForPair(caller not pending)", takeErr(s.TakeForPair(ctx, notPending)), qkd.ErrInsufficientKey)
	beforeExpiry := onLink
	beforeExpiry.Number = 1
	beforeExpiry.Now = t0.Add(-time.Second)
	if got, err := s.TakeForPair(ctx, beforeExpiry); err != nil || len(got) != 1 || !got[0].Expires.Equal(t0) {
		t.Errorf("TakeForPair(before expiry) = %d keys, %v; want the expiring key", len(got), err)
	}
}

func takeErr(_ []keystore.Key, err error) error { return err }

func testLastRecipient(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	keys := makeKeys(t, s, keySpec{n: 1, ready: true, slaves: []qkd.SAEID{slave, slave2}, pending: []qkd.SAEID{slave, slave2}})
	r := pairReq(1)
	r.Slaves = []qkd.SAEID{slave, slave2}
	got, err := s.TakeForPair(ctx, r)
	if err != nil {
		t.Fatalf("TakeForPair(slave) = %v", err)
	}
	sameKeyBytes(t, "TakeForPair(slave)", got, keys)
	if diff := cmp.Diff([]qkd.SAEID{slave2}, got[0].Pending); diff != "" {
		t.Errorf("Pending after the first recipient (-want +got):\n%s", diff)
	}
	wantErr(t, "TakeForPair(slave again)", takeErr(s.TakeForPair(ctx, r)), qkd.ErrInsufficientKey)
	got, err = s.TakeByID(ctx, byIDReq(slave2, keys...))
	if err != nil {
		t.Fatalf("TakeByID(slave2) = %v", err)
	}
	sameKeyBytes(t, "TakeByID(slave2)", got, keys)
	if n, err := s.DeleteKeys(ctx, ids(keys)); n != 0 || err != nil {
		t.Errorf("DeleteKeys after the last recipient = %d, %v; want 0 (already deleted)", n, err)
	}
	if st, _ := s.Stats(ctx, linkAB); st.KeysReady != 0 {
		t.Errorf("Stats.KeysReady = %d after every recipient was served, want 0", st.KeysReady)
	}
}

func testTakeByID(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	ready := makeKeys(t, s, keySpec{n: 1, ready: true, pending: []qkd.SAEID{slave, master}})[0]
	pending := makeKeys(t, s, keySpec{n: 1})[0]
	expired := makeKeys(t, s, keySpec{n: 1, ready: true, expires: t0})[0]
	unknown := keystore.Key{ID: newID(t)}
	tests := []struct {
		name   string
		r      keystore.TakeRequest
		err    error
		wanted []keystore.Key
	}{
		{"unknown", byIDReq(slave, unknown), qkd.ErrNotFound, nil},
		{"not ready", byIDReq(slave, pending), qkd.ErrNotFound, nil},
		{"expired", byIDReq(slave, expired), qkd.ErrNotFound, nil},
		{"other master", func() keystore.TakeRequest { r := byIDReq(slave, ready); r.Master = slave2; return r }(), qkd.ErrNotFound, nil},
		{"never a recipient", byIDReq(stranger, ready), qkd.ErrUnauthorized, nil},
		{"never a recipient, and unknown", byIDReq(stranger, ready, unknown), qkd.ErrNotFound, nil},
		{"slave", byIDReq(slave, ready), nil, []keystore.Key{ready}},
		{"slave again", byIDReq(slave, ready), qkd.ErrNotFound, nil},
		{"slave2 never a recipient", byIDReq(slave2, ready), qkd.ErrUnauthorized, nil},
		{"twice in one request", byIDReq(master, ready, ready), qkd.ErrNotFound, nil},
		{"master", byIDReq(master, ready), nil, []keystore.Key{ready}},
		{"master again (deleted)", byIDReq(master, ready), qkd.ErrNotFound, nil},
	}
	for _, tt := range tests {
		got, err := s.TakeByID(ctx, tt.r)
		if tt.err != nil {
			wantErr(t, "TakeByID("+tt.name+")", err, tt.err)
			continue
		}
		if err != nil {
			t.Fatalf("TakeByID(%s) = %v", tt.name, err)
		}
		sameKeyBytes(t, "TakeByID("+tt.name+")", got, tt.wanted)
	}
}

func testTakeByIDAllOrNone(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	keys := makeKeys(t, s, keySpec{n: 3, ready: true})
	bad := []keystore.Key{keys[0], keys[1], {ID: newID(t)}, keys[2]}
	wantErr(t, "TakeByID(with an unknown ID)", takeErr(s.TakeByID(ctx, byIDReq(slave, bad...))), qkd.ErrNotFound)
	got, err := s.TakeByID(ctx, byIDReq(slave, keys[2], keys[0], keys[1]))
	if err != nil {
		t.Fatalf("TakeByID(all three) after a refused request = %v", err)
	}
	sameKeyBytes(t, "TakeByID(all three)", got, []keystore.Key{keys[2], keys[0], keys[1]})
}

func testCountKeys(t *testing.T, s keystore.Store) {
	makeKeys(t, s, keySpec{n: 3, ready: true})
	makeKeys(t, s, keySpec{n: 2})
	makeKeys(t, s, keySpec{n: 1, ready: true, expires: t0.Add(time.Hour)})
	makeKeys(t, s, keySpec{n: 4, ready: true, link: linkAC})
	mod := func(f func(r *keystore.TakeRequest)) keystore.TakeRequest {
		r := pairReq(0)
		f(&r)
		return r
	}
	tests := []struct {
		name string
		r    keystore.TakeRequest
		want int
	}{
		{"all links", pairReq(0), 8},
		{"one link", mod(func(r *keystore.TakeRequest) { r.Link = linkAB }), 4},
		{"after expiry", mod(func(r *keystore.TakeRequest) { r.Now = t0.Add(time.Hour) }), 7},
		{"other size", mod(func(r *keystore.TakeRequest) { r.SizeBits = 128 }), 0},
		{"other slaves", mod(func(r *keystore.TakeRequest) { r.Slaves = []qkd.SAEID{slave, slave2} }), 0},
		{"caller not pending", mod(func(r *keystore.TakeRequest) { r.Caller = master }), 0},
	}
	for _, tt := range tests {
		if got := count(t, s, tt.r); got != tt.want {
			t.Errorf("CountKeys(%s) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func testDeleteKeys(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	keys := makeKeys(t, s, keySpec{n: 3, ready: true})
	n, err := s.DeleteKeys(ctx, []qkd.KeyID{keys[0].ID, newID(t), keys[2].ID})
	if n != 2 || err != nil {
		t.Fatalf("DeleteKeys = %d, %v; want 2, nil", n, err)
	}
	got, err := s.TakeForPair(ctx, pairReq(1))
	if err != nil {
		t.Fatal(err)
	}
	sameKeyBytes(t, "TakeForPair after DeleteKeys", got, keys[1:2])
}

func testExpireKeys(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	soon := makeKeys(t, s, keySpec{n: 2, ready: true, expires: t0.Add(time.Minute)})
	pendingSoon := makeKeys(t, s, keySpec{n: 1, expires: t0.Add(time.Minute)})
	makeKeys(t, s, keySpec{n: 1, ready: true, expires: t0.Add(time.Hour)})
	makeKeys(t, s, keySpec{n: 1, ready: true})

	if got, err := s.ExpireKeys(ctx, t0); len(got) != 0 || err != nil {
		t.Fatalf("ExpireKeys(t0) = %d keys, %v; want none", len(got), err)
	}
	got, err := s.ExpireKeys(ctx, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(soon), pendingSoon...)
	gotIDs, wantIDs := ids(got), ids(want)
	sortIDs := cmpopts.SortSlices(func(a, b qkd.KeyID) bool { return a.String() < b.String() })
	if diff := cmp.Diff(wantIDs, gotIDs, sortIDs); diff != "" {
		t.Errorf("ExpireKeys IDs (-want +got):\n%s", diff)
	}
	for _, k := range got {
		if k.Data.Len() != 0 {
			t.Errorf("ExpireKeys returned the bytes of %s", k.ID)
		}
		if !k.Expires.Equal(t0.Add(time.Minute)) || k.Master != master {
			t.Errorf("ExpireKeys returned %s without its metadata", k.ID)
		}
	}
	if n := count(t, s, keystore.TakeRequest{Master: master, Caller: slave, Slaves: []qkd.SAEID{slave}, SizeBits: 256, Now: t0}); n != 2 {
		t.Errorf("CountKeys after ExpireKeys = %d, want 2", n)
	}
}

func testOutbox(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	addConfirmed(t, s, linkAB, 64, 2, 4, 6)
	a1, a2, a3 := oneKeyAlloc(t, 2, 0), oneKeyAlloc(t, 4, 0), oneKeyAlloc(t, 6, 0)
	a1.Outbox.Created, a2.Outbox.Created, a3.Outbox.Created = t0.Add(2*time.Second), t0.Add(time.Second), t0.Add(3*time.Second)
	a3.Outbox.Link = linkAC
	for _, a := range []keystore.Allocation{a1, a2, a3} {
		if err := s.Allocate(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.PendingOutbox(ctx, linkAB)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]keystore.Outbox{*a2.Outbox, *a1.Outbox}, got); diff != "" {
		t.Fatalf("PendingOutbox (-want +got):\n%s", diff)
	}
	if err := s.SetKeysReady(ctx, ids(a2.Keys), a2.Outbox.ID); err != nil {
		t.Fatal(err)
	}
	got, err = s.PendingOutbox(ctx, linkAB)
	if err != nil || len(got) != 1 || got[0].ID != a1.Outbox.ID {
		t.Fatalf("PendingOutbox after SetKeysReady = %v, %v; want only %s", got, err, a1.Outbox.ID)
	}
	r := byIDReq(slave, a2.Keys...)
	if got, err := s.TakeByID(ctx, r); err != nil || len(got) != 1 {
		t.Errorf("TakeByID(key made ready) = %d keys, %v", len(got), err)
	}
	if err := s.SetKeysReady(ctx, append(ids(a2.Keys), newID(t)), a2.Outbox.ID); err != nil {
		t.Errorf("SetKeysReady(again, with absent keys) = %v, want nil", err)
	}
}

func testAbortAllocation(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	addConfirmed(t, s, linkAB, 64, 2)
	a := oneKeyAlloc(t, 2, 0)
	a.Keys = append(a.Keys, oneKeyAlloc(t, 2, 0).Keys[0])
	a.Pieces[0].Len = 32
	if err := s.Allocate(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeysReady(ctx, ids(a.Keys[1:]), ""); err != nil {
		t.Fatal(err)
	}
	if err := s.AbortAllocation(ctx, a.Outbox.ID, ids(a.Keys)); err != nil {
		t.Fatalf("AbortAllocation = %v", err)
	}
	if got, err := s.PendingOutbox(ctx, linkAB); len(got) != 0 || err != nil {
		t.Errorf("PendingOutbox after AbortAllocation = %d entries, %v; want none", len(got), err)
	}
	st, err := s.Stats(ctx, linkAB)
	if err != nil || st.KeysPending != 0 || st.KeysReady != 1 {
		t.Errorf("Stats after AbortAllocation = %d pending, %d ready, %v; want 0, 1 (Ready keys stay)", st.KeysPending, st.KeysReady, err)
	}
	bs := getOne(t, s, linkAB, 2)
	if bs.Offset != 32 {
		t.Errorf("AbortAllocation gave material back: block offset %d, want 32", bs.Offset)
	}
}
