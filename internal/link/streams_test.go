package link_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
)

// testStream is the KSID the chunks of TestReserveIDs belong to.
const testStream = "0c5e8a9e-3f1d-4b7a-8d2e-5a6b7c8d9e0f"

func TestReserveIDs(t *testing.T) {
	p := readyPair(t)
	ctx := context.Background()
	ids := []qkd.KeyID{{1}, {2}, {3}}
	if err := p.A.ReserveIDs(ctx, testStream, masterA, slavesB, 128, ids, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Both ends hold the chunks tagged with the stream: no ETSI 014
	// request, split or merge, or closing of the pair sees them.
	for end, st := range map[string]keystore.Store{"master's": p.SA, "slave's": p.SB} {
		for _, caller := range []qkd.SAEID{masterA, slavesB[0]} {
			if got, err := st.TakeForPair(ctx, keystore.TakeRequest{Master: masterA, Slaves: slavesB, Caller: caller,
				SizeBits: 128, Number: 1}); !errors.Is(err, qkd.ErrInsufficientKey) {
				t.Errorf("TakeForPair(%s) at the %s node = %d keys, %v; want ErrInsufficientKey", caller, end, len(got), err)
			}
		}
		if list, err := st.ListKeys(ctx, keystore.KeyFilter{Master: masterA, Slaves: slavesB}); len(list) != 0 || err != nil {
			t.Errorf("ListKeys at the %s node = %d keys, %v; want none", end, len(list), err)
		}
	}
	ka, err := p.SA.TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: masterA, Caller: masterA})
	if err != nil {
		t.Fatalf("TakeByID at the master's node: %v", err)
	}
	kb, err := p.SB.TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: masterA, Caller: slavesB[0]})
	if err != nil {
		t.Fatalf("TakeByID at the slave's node: %v", err)
	}
	for i := range ids {
		if ka[i].ID != ids[i] || !ka[i].Data.Equal(kb[i].Data) || ka[i].Data.Len() != 16 {
			t.Errorf("key %d: IDs %v/%v, bytes differ or not 16 bytes", i, ka[i].ID, kb[i].ID)
		}
		if ka[i].Stream != testStream || kb[i].Stream != testStream {
			t.Errorf("key %d: Stream %q at the master's node, %q at the slave's; want %q", i, ka[i].Stream, kb[i].Stream, testStream)
		}
	}
	for _, bad := range [][]qkd.KeyID{nil, {{9}, {9}}} {
		if err := p.A.ReserveIDs(ctx, testStream, masterA, slavesB, 128, bad, time.Hour); err == nil {
			t.Errorf("ReserveIDs(%v) succeeded", bad)
		}
	}
	for _, bad := range []string{"", strings.Repeat("s", 257)} {
		if err := p.A.ReserveIDs(ctx, bad, masterA, slavesB, 128, []qkd.KeyID{{10}}, time.Hour); err == nil {
			t.Errorf("ReserveIDs for stream %q succeeded", bad)
		}
	}
	// Reserve (ETSI 014) still makes ordinary keys of the pair.
	rid, err := p.A.Reserve(ctx, masterA, slavesB, 128, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := p.SB.TakeForPair(ctx, keystore.TakeRequest{Master: masterA, Slaves: slavesB, Caller: slavesB[0], SizeBits: 128, Number: 1})
	if err != nil || kr[0].ID != rid[0] || kr[0].Stream != "" {
		t.Errorf("TakeForPair of a reserved key at the slave's node = %v, %v; want %v, no stream", kr, err, rid)
	}
}

type fakeStreams struct{ got []kmsproto.NewAppReq }

func (f *fakeStreams) PeerStream(_ context.Context, _ qkd.LinkID, req kmsproto.NewAppReq) (kmsproto.NewAppResp, error) {
	f.got = append(f.got, req)
	return kmsproto.NewAppResp{State: kmsproto.StreamOpen, Master: req.Master}, nil
}

func TestAnnounceStream(t *testing.T) {
	p := msgPair(t)
	ctx := context.Background()
	ks := "6b1f2e8a-470c-4f3d-9a52-11e07c3b905d"
	good := kmsproto.NewAppReq{App: ks, Stream: ks, Master: masterA, Slaves: slavesB, SizeBits: 256,
		QoS: &kmsproto.QoS{}, Etsi004: &kmsproto.StreamInfo{State: kmsproto.StreamOpen}}
	if _, err := p.A.AnnounceStream(ctx, good); refusal(err) != kmsproto.Retry {
		t.Errorf("AnnounceStream without a handler = %v, want Retry", err)
	}
	f := &fakeStreams{}
	p.B.SetStreamHandler(f)
	reverse := good
	reverse.Master, reverse.Slaves = slavesB[0], []qkd.SAEID{masterA} // the destination's end tells the source's
	bad := good
	bad.Slaves = []qkd.SAEID{"SAE_X"}
	tests := []struct {
		name string
		req  kmsproto.NewAppReq
		want kmsproto.Code
	}{
		{"source to destination", good, kmsproto.OK},
		{"destination to source", reverse, kmsproto.OK},
		{"neither attached to the receiver", bad, kmsproto.BadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := p.A.AnnounceStream(ctx, tt.req)
			if tt.want == kmsproto.OK && (err != nil || resp.State != kmsproto.StreamOpen) || tt.want != kmsproto.OK && refusal(err) != tt.want {
				t.Fatalf("AnnounceStream = %+v, %v; want code %v", resp, err, tt.want)
			}
		})
	}
	if len(f.got) != 2 {
		t.Errorf("handler got %d announcements, want 2", len(f.got))
	}
}

// TestReserveForPeersMaster: keys the slave's node reserves for a pair
// whose master is on the peer's side are Ready there at once (they are
// delivered only by ID, and only the master's node hands IDs out, after
// it stored them), so a slave that asks right after its master never
// meets keys pending for an acknowledgement still on its way. Both ends
// deliver the same bytes.
func TestReserveForPeersMaster(t *testing.T) {
	p := readyPair(t)
	ctx := context.Background()
	count := func(st keystore.Store, caller qkd.SAEID) int {
		t.Helper()
		n, err := st.CountKeys(ctx, keystore.TakeRequest{Master: masterA, Slaves: slavesB, Caller: caller, SizeBits: 256, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	h := p.PB.HoldNext(kmsproto.MakeKeysExternal)
	type result struct {
		ids []qkd.KeyID
		err error
	}
	done := make(chan result, 1)
	go func() {
		ids, err := p.B.Reserve(ctx, masterA, slavesB, 256, 2, time.Hour)
		done <- result{ids, err}
	}()
	select {
	case <-h.Arrived():
	case <-time.After(10 * time.Second):
		t.Fatal("make_keys_external from B never sent")
	}
	if got := count(p.SB, slavesB[0]); got != 2 {
		t.Errorf("B holds %d Ready keys for its slave before A answered, want 2", got)
	}
	if got := count(p.SA, masterA); got != 0 {
		t.Errorf("A holds %d keys before the message arrived", got)
	}
	h.Release()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Reserve did not return")
	}
	if r.err != nil {
		t.Fatalf("Reserve at B = %v", r.err)
	}
	ka, err := p.SA.TakeByID(ctx, keystore.TakeRequest{IDs: r.ids, Master: masterA, Caller: masterA})
	if err != nil {
		t.Fatalf("TakeByID at the master's node: %v", err)
	}
	kb, err := p.SB.TakeByID(ctx, keystore.TakeRequest{IDs: r.ids, Master: masterA, Caller: slavesB[0]})
	if err != nil {
		t.Fatalf("TakeByID at the slave's node: %v", err)
	}
	for i := range r.ids {
		if !ka[i].Data.Equal(kb[i].Data) {
			t.Errorf("key %d differs between the ends", i)
		}
	}
}

// refusingStore refuses every allocation of keys while refuse is set (the
// peer then answers bad_request: the reservation is refused for good).
type refusingStore struct {
	keystore.Store
	refuse atomic.Bool
}

func (s *refusingStore) Allocate(ctx context.Context, a keystore.Allocation) error {
	if s.refuse.Load() && len(a.Keys) > 0 {
		return keystore.ErrBadAllocation
	}
	return s.Store.Allocate(ctx, a)
}

// TestReserveForPeersMasterRefused: keys Ready at once at the slave's node
// are deleted there when the master's node refuses them.
func TestReserveForPeersMasterRefused(t *testing.T) {
	sa := &refusingStore{Store: memstore.New(memstore.Options{})}
	p := confirmedPair(t, sa)
	ctx := context.Background()
	sa.refuse.Store(true)
	if ids, err := p.B.Reserve(ctx, masterA, slavesB, 256, 2, time.Hour); err == nil {
		t.Fatalf("Reserve refused by A = %v, nil", ids)
	}
	for end, st := range map[string]keystore.Store{"A": p.SA, "B": p.SB} {
		if s := linktest.Stats(t, st); s.KeysReady+s.KeysPending != 0 {
			t.Errorf("%s keeps %d ready and %d pending keys of a refused reservation", end, s.KeysReady, s.KeysPending)
		}
	}
	if box, err := p.SB.PendingOutbox(ctx, p.B.ID()); err != nil || len(box) != 0 {
		t.Errorf("B's outbox after the refusal: %d entries, %v", len(box), err)
	}
}
