package storetest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// ksid is the key stream the tagged keys of these tests belong to.
const ksid = "6b1f2e8a-470c-4f3d-9a52-11e07c3b905d"

// testStreamKeys: keys tagged with a key stream (Key.Stream) are the
// stream's, delivered by ID only: TakeForPair, CountKeys and ListKeys do
// not see them and ResizeKeys refuses them; TakeByID delivers them with
// their tag.
func testStreamKeys(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	plain := makeKeys(t, s, keySpec{n: 2, ready: true})
	chunks := makeKeys(t, s, keySpec{n: 3, ready: true, stream: ksid})
	big := makeKeys(t, s, keySpec{n: 1, ready: true, bits: 512, stream: ksid})

	wantErr(t, "TakeForPair(3)", takeErr(s.TakeForPair(ctx, pairReq(3))), qkd.ErrInsufficientKey)
	if n := count(t, s, pairReq(0)); n != 2 {
		t.Errorf("CountKeys = %d, want 2 (the stream's keys are not the pair's)", n)
	}
	all := []qkd.SAEID{slave}
	for _, f := range []keystore.KeyFilter{
		{Master: master, Slaves: all, Now: t0},
		{Link: linkAB, Master: master, Slaves: all, Caller: slave, Now: t0},
		{Link: linkAB, Master: master, Slaves: all, SizeBits: 512, Now: t0},
	} {
		got, err := s.ListKeys(ctx, f)
		want := ids(plain)
		if f.SizeBits == 512 {
			want = nil
		}
		if err != nil {
			t.Fatalf("ListKeys(%+v) = %v", f, err)
		}
		if diff := cmp.Diff(want, ids(got), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ListKeys(%+v) IDs (-want +got):\n%s", f, diff)
		}
	}
	// A split or merge of the pair cannot take the stream's keys.
	for name, old := range map[string][]qkd.KeyID{
		"split a chunk":         ids(big),
		"merge a chunk in":      {plain[0].ID, chunks[0].ID},
		"merge chunks together": ids(chunks[:2]),
	} {
		r := keystore.Resize{ID: newID(t).String(), Link: linkAB, Master: master, Slaves: all, Old: old, New: newIDs(t, 2)}
		wantErr(t, "ResizeKeys("+name+")", s.ResizeKeys(ctx, r), qkd.ErrNotFound)
	}

	got, err := s.TakeForPair(ctx, pairReq(2))
	if err != nil {
		t.Fatalf("TakeForPair(2) = %v", err)
	}
	sameKeyBytes(t, "TakeForPair(2)", got, plain)
	for _, k := range got {
		if k.Stream != "" {
			t.Errorf("TakeForPair returned %s with Stream %q", k.ID, k.Stream)
		}
	}
	wantErr(t, "TakeForPair(1) with only the stream's keys left", takeErr(s.TakeForPair(ctx, pairReq(1))), qkd.ErrInsufficientKey)

	got, err = s.TakeByID(ctx, byIDReq(slave, chunks...))
	if err != nil {
		t.Fatalf("TakeByID(chunks) = %v", err)
	}
	sameKeyBytes(t, "TakeByID(chunks)", got, chunks)
	want := keystore.Key{ID: chunks[0].ID, Link: linkAB, State: keystore.KeyReady, Master: master, Slaves: all,
		SizeBits: 256, Created: t0, Stream: ksid}
	if diff := cmp.Diff(want, got[0], ignoreData, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("TakeByID(chunks)[0] (-want +got):\n%s", diff)
	}
	if got, err := s.TakeByID(ctx, byIDReq(slave, big...)); err != nil || len(got) != 1 || got[0].Stream != ksid {
		t.Errorf("TakeByID(512-bit chunk) = %v, %v; want it, tagged %q", got, err, ksid)
	}
}

// testStreamKeysInterleaved: keys of the pair and of a stream made in
// turns; TakeForPair (and whatever it keeps for the next requests) takes
// the pair's only, while the stream's are taken by ID in between.
func testStreamKeysInterleaved(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	var plain, chunks []keystore.Key
	for range 6 {
		plain = append(plain, makeKeys(t, s, keySpec{n: 1, ready: true})...)
		chunks = append(chunks, makeKeys(t, s, keySpec{n: 1, ready: true, stream: ksid})...)
	}
	var got []keystore.Key
	for i := range 3 {
		k, err := s.TakeForPair(ctx, pairReq(2))
		if err != nil {
			t.Fatalf("TakeForPair(2) #%d = %v", i, err)
		}
		got = append(got, k...)
		c, err := s.TakeByID(ctx, byIDReq(slave, chunks[2*i:2*i+2]...))
		if err != nil {
			t.Fatalf("TakeByID(chunks %d, %d) = %v", 2*i, 2*i+1, err)
		}
		sameKeyBytes(t, "TakeByID(chunks)", c, chunks[2*i:2*i+2])
	}
	sameKeyBytes(t, "TakeForPair", got, plain)
	wantErr(t, "TakeForPair(1) at the end", takeErr(s.TakeForPair(ctx, pairReq(1))), qkd.ErrInsufficientKey)
}
