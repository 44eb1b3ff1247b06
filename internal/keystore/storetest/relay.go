package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// recorder is a relay step's build function that keeps copies of the pads
// it was given (and the pads themselves, to check that the store wipes
// them) and returns what make derives from them.
type recorder struct {
	calls         int
	in, out       []byte       // copies
	inPad, outPad secret.Bytes // as given
	keys          []keystore.Key
	make          func(in, out []byte) (keystore.RelayResult, error)
}

func (r *recorder) build(in, out secret.Bytes) (keystore.RelayResult, error) {
	r.calls++
	r.inPad, r.outPad = in, out
	r.in, r.out = bytes.Clone(in.Expose()), bytes.Clone(out.Expose())
	res, err := r.make(r.in, r.out)
	r.keys = res.Keys
	return res, err
}

// wiped fails unless every byte of b is zero.
func wiped(t testing.TB, what string, b []byte) {
	t.Helper()
	if slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
		t.Errorf("%s not wiped after ApplyRelayStep returned", what)
	}
}

func xor(a, b []byte) []byte {
	out := bytes.Clone(a)
	for i := range out {
		out[i] ^= b[i%len(b)]
	}
	return out
}

// relayKeys returns n keys of bits bits for (master, slave), Pending for
// pending, in state st, holding consecutive bytes of data.
func relayKeys(t testing.TB, n, bits int, st keystore.KeyState, pending qkd.SAEID, data []byte) []keystore.Key {
	keys := make([]keystore.Key, n)
	for i := range keys {
		keys[i] = keystore.Key{
			ID: newID(t), State: st, Master: master, Slaves: []qkd.SAEID{slave}, Pending: []qkd.SAEID{pending},
			SizeBits: bits, Created: t0, Data: secret.From(data[i*bits/8 : (i+1)*bits/8]),
		}
	}
	return keys
}

// relaySnapshot is everything observable about both test links and some
// relay records, to check that a failed step changed nothing.
type relaySnapshot struct {
	AB, AC  snapshot
	Records map[string][]byte
}

func relaySnap(t testing.TB, s keystore.Store, stepIDs ...string) relaySnapshot {
	t.Helper()
	sn := relaySnapshot{AB: snap(t, s, linkAB), AC: snap(t, s, linkAC), Records: make(map[string][]byte)}
	for _, id := range stepIDs {
		rec, err := s.RelayRecord(context.Background(), id)
		switch {
		case errors.Is(err, qkd.ErrNotFound):
		case err != nil:
			t.Fatalf("RelayRecord(%q) = %v", id, err)
		default:
			sn.Records[id] = rec
		}
	}
	return sn
}

func sameRelaySnapshot(t testing.TB, what string, before, after relaySnapshot) {
	t.Helper()
	if diff := cmp.Diff(before, after, ignoreData); diff != "" {
		t.Errorf("%s changed the store (-before +after):\n%s", what, diff)
	}
}

// padOf returns the bytes of pieces of the Pattern blocks in data, in order.
func padOf(data map[uint64][]byte, pieces []keystore.Piece) []byte {
	var out []byte
	for _, p := range pieces {
		out = append(out, data[p.Index][p.Off:p.Off+p.Len]...)
	}
	return out
}

func testRelaySteps(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	// A-B: upstream material at odd indices, A-C: this node's at even ones.
	// The indices differ: one map holds the bytes of both links' blocks.
	data := addConfirmed(t, s, linkAB, 40, 1, 3, 5, 7)
	maps.Copy(data, addConfirmed(t, s, linkAC, 40, 2, 4, 6, 8))
	cipher := Pattern("cipher", 0, 64)
	tests := []struct {
		name     string
		step     keystore.RelayStep
		state    keystore.KeyState // of the keys made (0: none)
		taker    qkd.SAEID
		keyLink  qkd.LinkID
		outbox   bool
		make     func(in, out []byte) []byte // the keys' bytes
		blocks   map[qkd.LinkID][]uint64     // blocks left, by link
		leftOffs map[uint64]int              // their offsets
	}{
		{
			name: "source: Out only, Pending keys, outbox",
			step: keystore.RelayStep{ID: "src", OutLink: linkAC,
				Out: []keystore.Piece{{Index: 2, Off: 0, Len: 40}, {Index: 4, Off: 0, Len: 24}}},
			state: keystore.KeyPending, taker: master, keyLink: linkAC, outbox: true,
			make:     func(_, out []byte) []byte { return Pattern("K", 1, len(out)) },
			blocks:   map[qkd.LinkID][]uint64{linkAC: {4, 6, 8}},
			leftOffs: map[uint64]int{4: 24, 6: 0, 8: 0},
		},
		{
			name: "intermediate: In and Out on two links, no keys",
			step: keystore.RelayStep{ID: "mid", InLink: linkAB, OutLink: linkAC,
				In:  []keystore.Piece{{Index: 1, Off: 0, Len: 40}, {Index: 3, Off: 0, Len: 8}},
				Out: []keystore.Piece{{Index: 4, Off: 24, Len: 16}, {Index: 6, Off: 0, Len: 32}}},
			outbox:   true,
			blocks:   map[qkd.LinkID][]uint64{linkAB: {3, 5, 7}, linkAC: {6, 8}},
			leftOffs: map[uint64]int{3: 8, 5: 0, 6: 32, 7: 0, 8: 0},
		},
		{
			name: "destination: In only, Ready keys from the pad",
			step: keystore.RelayStep{ID: "dst", InLink: linkAB,
				In: []keystore.Piece{{Index: 3, Off: 8, Len: 32}, {Index: 5, Off: 0, Len: 32}}},
			state: keystore.KeyReady, taker: slave, keyLink: linkAB,
			make:     func(in, _ []byte) []byte { return xor(in, cipher) },
			blocks:   map[qkd.LinkID][]uint64{linkAB: {5, 7}, linkAC: {6, 8}},
			leftOffs: map[uint64]int{5: 32, 6: 32, 7: 0, 8: 0},
		},
		{
			name: "In and Out on the same link: Out after In",
			step: keystore.RelayStep{ID: "loop", InLink: linkAB, OutLink: linkAB,
				In:  []keystore.Piece{{Index: 5, Off: 32, Len: 4}},
				Out: []keystore.Piece{{Index: 5, Off: 36, Len: 4}, {Index: 7, Off: 0, Len: 4}}},
			blocks:   map[qkd.LinkID][]uint64{linkAB: {7}, linkAC: {6, 8}},
			leftOffs: map[uint64]int{6: 32, 7: 4, 8: 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.step
			st.Expires = t0.Add(time.Hour)
			wantIn, wantOut := padOf(data, st.In), padOf(data, st.Out)
			record := append([]byte("record "+st.ID+" "), xor(append(bytes.Clone(wantIn), wantOut...), cipher)...)
			var keyData []byte
			var outbox *keystore.Outbox
			rec := &recorder{make: func(in, out []byte) (keystore.RelayResult, error) {
				res := keystore.RelayResult{Record: record}
				if tt.state != 0 {
					keyData = tt.make(in, out)
					res.Keys = relayKeys(t, len(keyData)/32, 256, tt.state, tt.taker, keyData)
				}
				if tt.outbox {
					outbox = &keystore.Outbox{ID: "relay-" + st.ID, Payload: record, Created: t0}
					res.Outbox = outbox
				}
				return res, nil
			}}
			if err := s.ApplyRelayStep(ctx, st, rec.build); err != nil {
				t.Fatalf("ApplyRelayStep = %v", err)
			}
			if rec.calls != 1 {
				t.Fatalf("build called %d times, want 1", rec.calls)
			}
			if !bytes.Equal(rec.in, wantIn) || !bytes.Equal(rec.out, wantOut) {
				t.Errorf("pads are not the pieces' bytes in order: in %d bytes (want %d), out %d bytes (want %d)",
					len(rec.in), len(wantIn), len(rec.out), len(wantOut))
			}
			if (len(st.In) == 0) != (rec.inPad.Len() == 0) || (len(st.Out) == 0) != (rec.outPad.Len() == 0) {
				t.Errorf("pad lengths %d, %d for %d In and %d Out pieces", rec.inPad.Len(), rec.outPad.Len(), len(st.In), len(st.Out))
			}
			wiped(t, "in pad", rec.inPad.Expose())
			wiped(t, "out pad", rec.outPad.Expose())
			for i, k := range rec.keys {
				wiped(t, fmt.Sprintf("the Data of key %d build returned", i), k.Data.Expose())
			}

			got, err := s.RelayRecord(ctx, st.ID)
			if err != nil || !bytes.Equal(got, record) {
				t.Errorf("RelayRecord = %d bytes, %v; want the record build returned", len(got), err)
			}
			for l, left := range tt.blocks {
				bs, err := s.ListBlocks(ctx, l, keystore.BlockConfirmed, 100)
				if err != nil {
					t.Fatal(err)
				}
				var idx []uint64
				for _, b := range bs {
					idx = append(idx, b.Index)
					if want := tt.leftOffs[b.Index]; b.Offset != want {
						t.Errorf("block %d of %s: offset %d, want %d", b.Index, l, b.Offset, want)
					}
				}
				if !slices.Equal(idx, left) {
					t.Errorf("blocks of %s after the step = %v, want %v", l, idx, left)
				}
			}
			if tt.outbox {
				l := st.OutLink
				ob, err := s.PendingOutbox(ctx, l)
				want := []keystore.Outbox{{ID: outbox.ID, Link: l, Payload: record, Created: t0}}
				if diff := cmp.Diff(want, ob); err != nil || diff != "" {
					t.Errorf("PendingOutbox(%s) = %v (-want +got):\n%s", l, err, diff)
				}
			}
			var nKeys int
			if tt.state != 0 {
				nKeys = len(keyData) / 32
				stats, err := s.Stats(ctx, tt.keyLink)
				if err != nil {
					t.Fatal(err)
				}
				if n := map[keystore.KeyState]int{keystore.KeyPending: stats.KeysPending, keystore.KeyReady: stats.KeysReady}[tt.state]; n != nKeys {
					t.Errorf("Stats(%s): %d keys in state %d, want %d (keys count on %s)", tt.keyLink, n, tt.state, nKeys, tt.keyLink)
				}
				want := relayKeys(t, nKeys, 256, tt.state, tt.taker, keyData)
				for i := range want {
					want[i].ID = rec.keys[i].ID
				}
				if tt.state == keystore.KeyPending {
					r := byIDReq(tt.taker, want...)
					wantErr(t, "TakeByID(Pending relay keys)", takeErr(s.TakeByID(ctx, r)), qkd.ErrNotFound)
					if err := s.SetKeysReady(ctx, ids(want), outbox.ID); err != nil {
						t.Fatal(err)
					}
				}
				got, err := s.TakeByID(ctx, byIDReq(tt.taker, want...))
				if err != nil {
					t.Fatalf("TakeByID(relay keys) = %v", err)
				}
				sameKeyBytes(t, "TakeByID(relay keys)", got, want)
			}
			for _, l := range []qkd.LinkID{linkAB, linkAC} {
				if stats, err := s.Stats(ctx, l); err != nil || stats.KeysPending+stats.KeysReady != 0 {
					t.Errorf("Stats(%s) after taking the relay keys = %+v, %v; want no keys", l, stats, err)
				}
			}
		})
	}
}

func testRelayApplied(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	data := addConfirmed(t, s, linkAC, 64, 2)
	st := keystore.RelayStep{ID: "step-1", OutLink: linkAC, Out: []keystore.Piece{{Index: 2, Len: 32}}, Expires: t0.Add(time.Hour)}
	rec := &recorder{make: func(_, out []byte) (keystore.RelayResult, error) {
		return keystore.RelayResult{Record: []byte("first"), Keys: relayKeys(t, 1, 256, keystore.KeyPending, master, Pattern("K", 2, 32))}, nil
	}}
	if err := s.ApplyRelayStep(ctx, st, rec.build); err != nil {
		t.Fatalf("ApplyRelayStep = %v", err)
	}
	if !bytes.Equal(rec.out, data[2][:32]) {
		t.Error("out pad is not the piece's bytes")
	}
	before := relaySnap(t, s, st.ID)
	again := &recorder{make: func(_, _ []byte) (keystore.RelayResult, error) {
		return keystore.RelayResult{Record: []byte("second")}, nil
	}}
	for _, retry := range []keystore.RelayStep{
		st,
		{ID: st.ID, OutLink: linkAC, Out: []keystore.Piece{{Index: 2, Off: 32, Len: 32}}}, // free material
		{ID: st.ID, OutLink: linkAC, Out: []keystore.Piece{{Index: 9, Len: 32}}},          // absent material
	} {
		wantErr(t, "ApplyRelayStep(same ID)", s.ApplyRelayStep(ctx, retry, again.build), keystore.ErrApplied)
	}
	if again.calls != 0 {
		t.Errorf("build called %d times for a step applied before, want 0", again.calls)
	}
	sameRelaySnapshot(t, "ApplyRelayStep(same ID)", before, relaySnap(t, s, st.ID))
	if got := before.Records[st.ID]; string(got) != "first" {
		t.Errorf("RelayRecord = %q, want %q", got, "first")
	}
}

func testRelayConflict(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	addConfirmed(t, s, linkAB, 64, 1, 3)
	addConfirmed(t, s, linkAC, 64, 2, 4)
	addBlock(t, s, linkAC, 6, 64) // unconfirmed
	// Consume the first 16 bytes of block 1 of A-B and of 2 of A-C.
	setup := keystore.RelayStep{ID: "setup", InLink: linkAB, In: []keystore.Piece{{Index: 1, Len: 16}},
		OutLink: linkAC, Out: []keystore.Piece{{Index: 2, Len: 16}}}
	if err := s.ApplyRelayStep(ctx, setup, (&recorder{make: noResult}).build); err != nil {
		t.Fatal(err)
	}
	in := func(ps ...keystore.Piece) keystore.RelayStep {
		return keystore.RelayStep{InLink: linkAB, In: ps, OutLink: linkAC, Out: []keystore.Piece{{Index: 2, Off: 16, Len: 8}}}
	}
	out := func(ps ...keystore.Piece) keystore.RelayStep {
		return keystore.RelayStep{InLink: linkAB, In: []keystore.Piece{{Index: 1, Off: 16, Len: 8}}, OutLink: linkAC, Out: ps}
	}
	p := func(idx uint64, off, n int) keystore.Piece { return keystore.Piece{Index: idx, Off: off, Len: n} }
	tests := []struct {
		name string
		step keystore.RelayStep
	}{
		{"In: consumed material", in(p(1, 0, 8))},
		{"In: piece behind the offset", in(p(1, 8, 16))},
		{"In: piece ahead of the offset", in(p(1, 24, 8))},
		{"In: past the end", in(p(1, 16, 49))},
		{"In: absent block", in(p(9, 0, 8))},
		{"In: second piece conflicts", in(p(1, 16, 48), p(3, 8, 8))},
		{"In: the same bytes twice", in(p(1, 16, 8), p(1, 16, 8))},
		{"In: wrong link", func() keystore.RelayStep { s := in(p(1, 16, 8)); s.InLink = linkAC; return s }()},
		{"In: unknown link", func() keystore.RelayStep { s := in(p(1, 16, 8)); s.InLink = "nowhere"; return s }()},
		{"Out: consumed material", out(p(2, 0, 8))},
		{"Out: piece ahead of the offset", out(p(2, 32, 8))},
		{"Out: unconfirmed block", out(p(6, 0, 8))},
		{"Out: absent block", out(p(8, 0, 8))},
		{"Out: wrong link", out(p(3, 0, 8))},
		{"Out: second piece conflicts", out(p(2, 16, 48), p(4, 0, 8), p(4, 16, 8))},
		{"Out: same link as In, same bytes", func() keystore.RelayStep {
			s := out(p(1, 16, 8))
			s.OutLink = linkAB
			return s
		}()},
		{"Out only: unknown link", keystore.RelayStep{OutLink: "nowhere", Out: []keystore.Piece{p(2, 16, 8)}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.step
			st.ID = fmt.Sprintf("conflict-%d", i)
			before := relaySnap(t, s, st.ID)
			rec := &recorder{make: noResult}
			wantErr(t, "ApplyRelayStep", s.ApplyRelayStep(ctx, st, rec.build), keystore.ErrConflict)
			if rec.calls != 0 {
				t.Errorf("build called for a conflicting step")
			}
			sameRelaySnapshot(t, "a conflicting ApplyRelayStep", before, relaySnap(t, s, st.ID))
		})
	}
	t.Run("the same step is applied once the pieces are right", func(t *testing.T) {
		st := in(p(1, 16, 8))
		st.ID = "conflict-0"
		if err := s.ApplyRelayStep(ctx, st, (&recorder{make: noResult}).build); err != nil {
			t.Fatalf("ApplyRelayStep after a conflict with the same ID = %v", err)
		}
	})
}

func noResult(_, _ []byte) (keystore.RelayResult, error) {
	return keystore.RelayResult{Record: []byte("done")}, nil
}

// testRelayRefused covers steps refused before or after build: malformed
// steps and results (ErrBadAllocation), existing keys and outbox entries
// (ErrConflict), and build's own error. Nothing changes, the pads are
// wiped either way.
func testRelayRefused(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	addConfirmed(t, s, linkAB, 64, 1)
	addConfirmed(t, s, linkAC, 64, 2)
	existing := makeKeys(t, s, keySpec{n: 1, link: linkAC, bits: 128})[0]
	a := oneKeyAlloc(t, freshIndex(t, s, linkAB), 0)
	addConfirmed(t, s, linkAB, 16, a.Pieces[0].Index)
	if err := s.Allocate(ctx, a); err != nil {
		t.Fatal(err)
	}
	errBuild := errors.New("build refuses")
	good := keystore.RelayStep{InLink: linkAB, In: []keystore.Piece{{Index: 1, Len: 32}},
		OutLink: linkAC, Out: []keystore.Piece{{Index: 2, Len: 8}}}
	keys := func(in []byte, f func(k []keystore.Key)) keystore.RelayResult {
		ks := relayKeys(t, 2, 128, keystore.KeyReady, slave, in)
		f(ks)
		return keystore.RelayResult{Keys: ks, Record: []byte("done")}
	}
	tests := []struct {
		name   string
		step   func(*keystore.RelayStep) // changes the good step
		result func(in, out []byte) keystore.RelayResult
		err    error // of build
		want   error
		built  bool
	}{
		{name: "no ID", step: func(s *keystore.RelayStep) { s.ID = "" }, want: keystore.ErrBadAllocation},
		{name: "no pieces", step: func(s *keystore.RelayStep) { s.In, s.Out = nil, nil }, want: keystore.ErrBadAllocation},
		{name: "In pieces without a link", step: func(s *keystore.RelayStep) { s.InLink = "" }, want: keystore.ErrBadAllocation},
		{name: "Out pieces without a link", step: func(s *keystore.RelayStep) { s.OutLink = "" }, want: keystore.ErrBadAllocation},
		{name: "empty piece", step: func(s *keystore.RelayStep) { s.Out[0].Len = 0 }, want: keystore.ErrBadAllocation},
		{name: "negative offset", step: func(s *keystore.RelayStep) { s.In[0].Off = -1 }, want: keystore.ErrBadAllocation},
		{name: "build fails", step: func(s *keystore.RelayStep) { s.ID = "build-fails" }, err: errBuild, want: errBuild, built: true},
		{name: "key without its bytes", want: keystore.ErrBadAllocation, built: true,
			result: func(in, _ []byte) keystore.RelayResult {
				return keys(in, func(k []keystore.Key) { k[1].Data = secret.Bytes{} })
			}},
		{name: "key with too many bytes", want: keystore.ErrBadAllocation, built: true,
			result: func(in, _ []byte) keystore.RelayResult {
				return keys(in, func(k []keystore.Key) { k[1].Data = secret.From(in[:17]) })
			}},
		{name: "size not whole bytes", want: keystore.ErrBadAllocation, built: true,
			result: func(in, _ []byte) keystore.RelayResult {
				return keys(in, func(k []keystore.Key) { k[0].SizeBits = 127 })
			}},
		{name: "pending stranger", want: keystore.ErrBadAllocation, built: true,
			result: func(in, _ []byte) keystore.RelayResult {
				return keys(in, func(k []keystore.Key) { k[1].Pending = []qkd.SAEID{stranger} })
			}},
		{name: "no master", want: keystore.ErrBadAllocation, built: true,
			result: func(in, _ []byte) keystore.RelayResult {
				return keys(in, func(k []keystore.Key) { k[0].Master = "" })
			}},
		{name: "repeated key ID", want: keystore.ErrBadAllocation, built: true,
			result: func(in, _ []byte) keystore.RelayResult {
				return keys(in, func(k []keystore.Key) { k[1].ID = k[0].ID })
			}},
		{name: "outbox entry without ID", want: keystore.ErrBadAllocation, built: true,
			result: func(in, _ []byte) keystore.RelayResult {
				r := keys(in, func([]keystore.Key) {})
				r.Outbox = &keystore.Outbox{Payload: []byte("x")}
				return r
			}},
		{name: "key ID exists", want: keystore.ErrKeyExists, built: true,
			result: func(in, _ []byte) keystore.RelayResult {
				return keys(in, func(k []keystore.Key) { k[1].ID = existing.ID })
			}},
		{name: "outbox entry exists", want: keystore.ErrConflict, built: true,
			result: func(in, _ []byte) keystore.RelayResult {
				r := keys(in, func([]keystore.Key) {})
				r.Outbox = &keystore.Outbox{ID: a.Outbox.ID, Payload: []byte("x")}
				return r
			}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := good
			st.ID = fmt.Sprintf("refused-%d", i)
			st.In, st.Out = slices.Clone(good.In), slices.Clone(good.Out)
			if tt.step != nil {
				tt.step(&st)
			}
			result := tt.result
			if result == nil {
				result = func(in, _ []byte) keystore.RelayResult { return keys(in, func([]keystore.Key) {}) }
			}
			before := relaySnap(t, s, st.ID)
			rec := &recorder{make: func(in, out []byte) (keystore.RelayResult, error) { return result(in, out), tt.err }}
			wantErr(t, "ApplyRelayStep", s.ApplyRelayStep(ctx, st, rec.build), tt.want)
			if built := rec.calls > 0; built != tt.built {
				t.Errorf("build called: %v, want %v", built, tt.built)
			}
			if tt.built {
				wiped(t, "in pad", rec.inPad.Expose())
				wiped(t, "out pad", rec.outPad.Expose())
			}
			sameRelaySnapshot(t, "a refused ApplyRelayStep", before, relaySnap(t, s, st.ID))
			if st := statsOf(t, s, linkAC); st.KeysPending != 1 || st.KeysReady != 0 {
				t.Errorf("Stats(%s) = %d pending, %d ready; want 1, 0", linkAC, st.KeysPending, st.KeysReady)
			}
		})
	}
	t.Run("the step goes through once build succeeds", func(t *testing.T) {
		st := good
		st.ID = "build-fails"
		rec := &recorder{make: func(in, _ []byte) (keystore.RelayResult, error) {
			return keys(in, func([]keystore.Key) {}), nil
		}}
		if err := s.ApplyRelayStep(ctx, st, rec.build); err != nil {
			t.Fatalf("ApplyRelayStep = %v", err)
		}
		if st := statsOf(t, s, linkAC); st.KeysReady != 2 {
			t.Errorf("Stats(%s): %d Ready keys, want 2 (keys count on OutLink)", linkAC, st.KeysReady)
		}
	})
}

func statsOf(t testing.TB, s keystore.Store, l qkd.LinkID) keystore.LinkStats {
	t.Helper()
	st, err := s.Stats(context.Background(), l)
	if err != nil {
		t.Fatalf("Stats(%s) = %v", l, err)
	}
	return st
}

func testRelayRecord(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	if _, err := s.RelayRecord(ctx, "never"); !errors.Is(err, qkd.ErrNotFound) {
		t.Errorf("RelayRecord(never applied) = %v, want ErrNotFound", err)
	}
	addConfirmed(t, s, linkAC, 4096, 2)
	records := []struct {
		id  string
		rec []byte
	}{
		{"large", Pattern("record", 0, 3<<20)},
		{"small", []byte("done")},
		{"empty", nil},
	}
	for i, r := range records {
		st := keystore.RelayStep{ID: r.id, OutLink: linkAC, Out: []keystore.Piece{{Index: 2, Off: 64 * i, Len: 64}}}
		given := bytes.Clone(r.rec)
		if err := s.ApplyRelayStep(ctx, st, func(_, _ secret.Bytes) (keystore.RelayResult, error) {
			return keystore.RelayResult{Record: given}, nil
		}); err != nil {
			t.Fatalf("ApplyRelayStep(%s) = %v", r.id, err)
		}
		clear(given) // the store keeps its own copy
	}
	for _, r := range records {
		for range 2 {
			got, err := s.RelayRecord(ctx, r.id)
			if err != nil || !bytes.Equal(got, r.rec) {
				t.Fatalf("RelayRecord(%s) = %d bytes, %v; want the %d bytes stored", r.id, len(got), err, len(r.rec))
			}
			clear(got) // the caller's copy: the next read is the same
		}
	}
}

func testRelayExpire(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	addConfirmed(t, s, linkAC, 640, 2)
	expires := map[string]time.Time{
		"soon":  t0.Add(time.Minute),
		"later": t0.Add(time.Hour),
		"never": {},
	}
	apply := func(id string, off int) error {
		st := keystore.RelayStep{ID: id, OutLink: linkAC, Out: []keystore.Piece{{Index: 2, Off: off, Len: 16}}, Expires: expires[id]}
		return s.ApplyRelayStep(ctx, st, func(_, _ secret.Bytes) (keystore.RelayResult, error) {
			return keystore.RelayResult{Record: []byte(id)}, nil
		})
	}
	for i, id := range []string{"soon", "later", "never"} {
		if err := apply(id, 16*i); err != nil {
			t.Fatal(err)
		}
	}
	left := func(when string, want ...string) {
		t.Helper()
		for id := range expires {
			_, err := s.RelayRecord(ctx, id)
			if slices.Contains(want, id) != (err == nil) {
				t.Errorf("%s: RelayRecord(%s) = %v", when, id, err)
			}
			if err != nil && !errors.Is(err, qkd.ErrNotFound) {
				t.Errorf("%s: RelayRecord(%s) = %v, want ErrNotFound", when, id, err)
			}
		}
	}
	if _, err := s.ExpireKeys(ctx, t0); err != nil {
		t.Fatal(err)
	}
	left("ExpireKeys(t0)", "soon", "later", "never")
	wantErr(t, "ApplyRelayStep(soon) before it expired", apply("soon", 48), keystore.ErrApplied)
	if _, err := s.ExpireKeys(ctx, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	left("ExpireKeys(Expires of soon)", "later", "never")
	if _, err := s.ExpireKeys(ctx, t0.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	left("ExpireKeys(a day later)", "never")
	// Expired records give no idempotency any more.
	if err := apply("soon", 48); err != nil {
		t.Errorf("ApplyRelayStep(soon) after its record expired = %v, want nil", err)
	}
}

// testConcurrentRelay runs steps on shared links from many goroutines,
// each picking free material and retrying on ErrConflict until the
// material runs out: every byte is handed to exactly one applied step, as
// its pad, and nothing else is consumed.
func testConcurrentRelay(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	const blockSize, blocks, workers = 40, 16, 8
	var inIdx, outIdx []uint64
	for i := range uint64(blocks) {
		inIdx, outIdx = append(inIdx, 2*i+1), append(outIdx, 2*i)
	}
	data := map[qkd.LinkID]map[uint64][]byte{
		linkAB: addConfirmed(t, s, linkAB, blockSize, inIdx...),
		linkAC: addConfirmed(t, s, linkAC, blockSize, outIdx...),
	}
	type applied struct {
		id      string
		in, out []keystore.Piece
		inPad   []byte
		outPad  []byte
	}
	var (
		mu       sync.Mutex
		done     []applied
		keysMade int
		wg       sync.WaitGroup
	)
	// free returns pieces covering the next n free bytes of l (parity p).
	free := func(l qkd.LinkID, parity, n int) ([]keystore.Piece, error) {
		if n == 0 {
			return nil, nil
		}
		ps, err := s.Material(ctx, l, parity, n)
		if err != nil {
			return nil, err
		}
		have := 0
		for i := range ps {
			if have+ps[i].Len >= n {
				ps[i].Len = n - have
				return ps[:i+1], nil
			}
			have += ps[i].Len
		}
		return nil, nil // not enough left
	}
	shapes := []struct{ in, out int }{{16, 0}, {16, 24}, {0, 24}, {8, 8}}
	for w := range workers {
		wg.Go(func() {
			for n := 0; ; n++ {
				if n > 4*blocks*blockSize {
					t.Errorf("worker %d: material still not used up after %d attempts", w, n)
					return
				}
				progress := false
				for k := range shapes {
					shape := shapes[(n+w+k)%len(shapes)]
					in, err := free(linkAB, 1, shape.in)
					if err == nil && in == nil && shape.in > 0 {
						continue
					}
					var out []keystore.Piece
					if err == nil {
						out, err = free(linkAC, 0, shape.out)
					}
					if err == nil && out == nil && shape.out > 0 {
						continue
					}
					if err != nil {
						t.Errorf("Material = %v", err)
						return
					}
					progress = true
					id := fmt.Sprintf("w%d-%d", w, n)
					st := keystore.RelayStep{ID: id, InLink: linkAB, In: in, OutLink: linkAC, Out: out}
					var a applied
					withKey := shape.in == 16 && shape.out == 0
					err = s.ApplyRelayStep(ctx, st, func(inPad, outPad secret.Bytes) (keystore.RelayResult, error) {
						a = applied{id: id, in: in, out: out, inPad: bytes.Clone(inPad.Expose()), outPad: bytes.Clone(outPad.Expose())}
						res := keystore.RelayResult{Record: []byte(id)}
						if withKey {
							res.Keys = relayKeys(t, 1, 128, keystore.KeyReady, slave, inPad.Expose())
						}
						return res, nil
					})
					switch {
					case errors.Is(err, keystore.ErrConflict):
					case err != nil:
						t.Errorf("ApplyRelayStep = %v", err)
						return
					default:
						mu.Lock()
						done = append(done, a)
						if withKey {
							keysMade++
						}
						mu.Unlock()
					}
					break
				}
				if !progress {
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// used[l][idx][i]: byte i of block idx of l was in an applied step's pad.
	used := map[qkd.LinkID]map[uint64][]bool{linkAB: {}, linkAC: {}}
	mark := func(a applied, l qkd.LinkID, pieces []keystore.Piece, pad []byte) {
		var want []byte
		for _, p := range pieces {
			u := used[l][p.Index]
			if u == nil {
				u = make([]bool, blockSize)
				used[l][p.Index] = u
			}
			for i := p.Off; i < p.Off+p.Len; i++ {
				if u[i] {
					t.Errorf("byte %d of block %d of %s used twice (again by %s)", i, p.Index, l, a.id)
				}
				u[i] = true
			}
			want = append(want, data[l][p.Index][p.Off:p.Off+p.Len]...)
		}
		if !bytes.Equal(pad, want) {
			t.Errorf("step %s: the pad of %s is not its pieces' bytes", a.id, l)
		}
	}
	for _, a := range done {
		mark(a, linkAB, a.in, a.inPad)
		mark(a, linkAC, a.out, a.outPad)
		if rec, err := s.RelayRecord(ctx, a.id); err != nil || string(rec) != a.id {
			t.Errorf("RelayRecord(%s) = %q, %v", a.id, rec, err)
		}
	}
	// What the store consumed is exactly what the applied steps used: a
	// prefix of every block.
	for l, byIdx := range data {
		left := make(map[uint64]int) // offsets of the blocks still there
		bs, err := s.ListBlocks(ctx, l, keystore.BlockConfirmed, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			left[b.Index] = b.Offset
		}
		for idx := range byIdx {
			consumed, ok := left[idx]
			if !ok {
				consumed = blockSize
			}
			u := used[l][idx]
			for i := range blockSize {
				if isUsed := u != nil && u[i]; isUsed != (i < consumed) {
					t.Errorf("block %d of %s: byte %d used by a step: %v, consumed by the store: %v", idx, l, i, isUsed, i < consumed)
					break
				}
			}
		}
	}
	if len(done) < 20 {
		t.Errorf("only %d steps applied", len(done))
	}
	if st := statsOf(t, s, linkAB); st.KeysReady != keysMade {
		t.Errorf("Stats(%s): %d Ready keys, want %d", linkAB, st.KeysReady, keysMade)
	}
}

// testConcurrentRelaySameID applies one step ID from many goroutines at
// once, each with material of its own: one applies, the others get
// ErrApplied and consume nothing.
func testConcurrentRelaySameID(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	const workers = 8
	var idx []uint64
	for i := range uint64(workers) {
		idx = append(idx, 100+2*i)
	}
	addConfirmed(t, s, linkAC, 32, idx...)
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		ok, builds int
		winner     uint64
	)
	for _, i := range idx {
		wg.Go(func() {
			st := keystore.RelayStep{ID: "same", OutLink: linkAC, Out: []keystore.Piece{{Index: i, Len: 32}}}
			err := s.ApplyRelayStep(ctx, st, func(_, _ secret.Bytes) (keystore.RelayResult, error) {
				mu.Lock()
				builds++
				mu.Unlock()
				return keystore.RelayResult{Record: fmt.Appendf(nil, "%d", i)}, nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
				winner = i
			case !errors.Is(err, keystore.ErrApplied):
				t.Errorf("ApplyRelayStep = %v, want nil or ErrApplied", err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || builds != 1 {
		t.Fatalf("%d applied, build called %d times; want 1, 1", ok, builds)
	}
	bs, err := s.ListBlocks(ctx, linkAC, keystore.BlockConfirmed, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Index == winner || b.Offset != 0 {
			t.Errorf("block %d: offset %d after the race; only block %d is consumed", b.Index, b.Offset, winner)
		}
	}
	if len(bs) != workers-1 {
		t.Errorf("%d blocks left, want %d", len(bs), workers-1)
	}
	if rec, err := s.RelayRecord(ctx, "same"); err != nil || string(rec) != fmt.Sprint(winner) {
		t.Errorf("RelayRecord = %q, %v; want the winner's", rec, err)
	}
}

// testRelayShares: a step stores an XOR share as a row no application
// receives; a later step that combines it gets its bytes as out and
// deletes it with the step; a combine naming a share that is not there
// conflicts and changes nothing.
func testRelayShares(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	data := addConfirmed(t, s, linkAC, 64, 2, 3)
	share := xor(data[2][:32], Pattern("S", 1, 32)) // what the share row must hold
	shareID := newID(t)
	first := keystore.RelayStep{ID: "share-1", InLink: linkAC, In: []keystore.Piece{{Index: 2, Len: 32}}, Expires: t0.Add(time.Hour)}
	rec := &recorder{make: func(in, _ []byte) (keystore.RelayResult, error) {
		k := keystore.Key{ID: shareID, State: keystore.KeyPending, Master: master, Slaves: []qkd.SAEID{slave},
			SizeBits: 256, Created: t0, Expires: t0.Add(time.Hour), Stream: keystore.ShareStream, Data: secret.From(xor(in, Pattern("S", 1, 32)))}
		return keystore.RelayResult{Record: []byte("stored"), Keys: []keystore.Key{k}}, nil
	}}
	if err := s.ApplyRelayStep(ctx, first, rec.build); err != nil {
		t.Fatalf("ApplyRelayStep(share) = %v", err)
	}
	if _, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{shareID}, Now: t0}); err == nil {
		t.Error("TakeByID delivered a share row")
	}
	if n, err := s.CountKeys(ctx, keystore.TakeRequest{Master: master, Slaves: []qkd.SAEID{slave}, Caller: slave, SizeBits: 256, Now: t0}); err != nil || n != 0 {
		t.Errorf("CountKeys = %d, %v; want 0: share rows are not keys of the pair", n, err)
	}

	keyID := newID(t)
	final := keystore.RelayStep{ID: "share-2", InLink: linkAC, In: []keystore.Piece{{Index: 3, Len: 32}}, Expires: t0.Add(time.Hour),
		Combine: []qkd.KeyID{shareID}}
	mk := func(in, out []byte) (keystore.RelayResult, error) {
		k := relayKeys(t, 1, 256, keystore.KeyReady, slave, xor(in, out))
		k[0].ID = keyID
		return keystore.RelayResult{Record: []byte("combined"), Keys: k}, nil
	}
	missing := final
	missing.Combine = []qkd.KeyID{newID(t)}
	before := relaySnap(t, s, final.ID)
	none := &recorder{make: mk}
	wantErr(t, "ApplyRelayStep(absent share)", s.ApplyRelayStep(ctx, missing, none.build), keystore.ErrConflict)
	if none.calls != 0 {
		t.Error("build called for a step whose share is not there")
	}
	sameRelaySnapshot(t, "ApplyRelayStep(absent share)", before, relaySnap(t, s, final.ID))

	rec = &recorder{make: mk}
	if err := s.ApplyRelayStep(ctx, final, rec.build); err != nil {
		t.Fatalf("ApplyRelayStep(combine) = %v", err)
	}
	if !bytes.Equal(rec.out, share) {
		t.Error("a combining step's out is not the share's bytes")
	}
	wiped(t, "combined shares", rec.outPad.Expose())
	got, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{keyID}, Now: t0})
	if err != nil || len(got) != 1 {
		t.Fatalf("TakeByID(combined key) = %d keys, %v", len(got), err)
	}
	if want := xor(data[3][:32], share); !bytes.Equal(got[0].Data.Expose(), want) {
		t.Error("combined key is not in-pad XOR share")
	}
	again := keystore.RelayStep{ID: "share-3", InLink: linkAC, In: []keystore.Piece{{Index: 3, Off: 32, Len: 32}}, Combine: []qkd.KeyID{shareID}}
	wantErr(t, "ApplyRelayStep(share used before)", s.ApplyRelayStep(ctx, again, (&recorder{make: mk}).build), keystore.ErrConflict)
}
