package relay_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

// streamSink is a destination's OnStream: it records what it learnt and
// answers with a state the test sets.
type streamSink struct {
	mu    sync.Mutex
	calls []kmsproto.RelayStream
	ns    []int
	state kmsproto.StreamInfo
}

func (s *streamSink) on(_ context.Context, _ string, info kmsproto.RelayStream, n int) *kmsproto.StreamInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, info)
	s.ns = append(s.ns, n)
	st := s.state
	return &st
}

func (s *streamSink) set(st kmsproto.StreamInfo) { s.mu.Lock(); s.state = st; s.mu.Unlock() }

func (s *streamSink) seen() ([]kmsproto.RelayStream, []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]kmsproto.RelayStream(nil), s.calls...), append([]int(nil), s.ns...)
}

func newIDs(t *testing.T, n int) []qkd.KeyID {
	t.Helper()
	ids := make([]qkd.KeyID, n)
	for i := range ids {
		var err error
		if ids[i], err = qkd.NewKeyID(nil); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// RelayIDs relays keys under the caller's IDs with the 004 stream
// information; the destination learns it on delivery and its answer
// comes back, also to a Poll, which consumes nothing.
func TestRelayIDsWithStreamInfo(t *testing.T) {
	sink := &streamSink{}
	c := newGraphWith(t, 3, [][2]int{{0, 1}, {1, 2}}, func(i int, o *relay.Options) {
		if i == 2 {
			o.OnStream = sink.on
		}
	})
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	c.install(t, "s1")
	ctx := context.Background()
	info := &kmsproto.RelayStream{KSID: "ksid-1", Source: sae(0), Dest: sae(2), QoS: &kmsproto.QoS{KeyChunkSize: 32},
		Mimetype: "application/json", State: kmsproto.StreamOpen, First: 8}
	ids := newIDs(t, 4)
	rcpt, peer, err := c.engines[0].RelayIDs(ctx, "s1", 256, ids, time.Hour, info)
	if err != nil {
		t.Fatalf("RelayIDs = %v", err)
	}
	if peer == nil || peer.State != "" {
		t.Fatalf("RelayIDs peer = %+v, want the destination's empty state", peer)
	}
	calls, ns := sink.seen()
	if len(calls) == 0 || calls[0] != *info && (calls[0].KSID != info.KSID || calls[0].First != 8 || calls[0].Source != sae(0) ||
		calls[0].Dest != sae(2) || calls[0].State != kmsproto.StreamOpen || calls[0].QoS == nil || calls[0].QoS.KeyChunkSize != 32) || ns[0] != 4 {
		t.Fatalf("OnStream saw %+v (n %v), want %+v with 4 chunks", calls, ns, *info)
	}
	// The destination's application opens: a Poll learns it, and no
	// material is spent on it anywhere.
	before := make([]keystore.LinkStats, 0)
	for i := range c.ids {
		for _, l := range c.links[i] {
			st, _ := c.stores[i].Stats(ctx, l.ID())
			before = append(before, st)
		}
	}
	sink.set(kmsproto.StreamInfo{State: kmsproto.StreamOpen, Want: 12})
	got, err := c.engines[0].Poll(ctx, rcpt)
	if err != nil || got == nil || got.State != kmsproto.StreamOpen || got.Want != 12 {
		t.Fatalf("Poll = %+v, %v; want open, want 12", got, err)
	}
	k := 0
	for i := range c.ids {
		for _, l := range c.links[i] {
			st, _ := c.stores[i].Stats(ctx, l.ID())
			if st.ConfirmedBytes != before[k].ConfirmedBytes {
				t.Errorf("Poll spent material of %s at %s: %v → %v", l.ID(), c.ids[i], before[k].ConfirmedBytes, st.ConfirmedBytes)
			}
			k++
		}
	}
	// The keys have the caller's IDs at both ends, the same bytes.
	c.take(t, ids)
}

func TestRelayIDsRefusals(t *testing.T) {
	c := newChain(t, 2)
	c.install(t, "s1")
	ctx := context.Background()
	ids := newIDs(t, 2)
	for name, tc := range map[string]struct {
		stream string
		ids    []qkd.KeyID
		info   *kmsproto.RelayStream
	}{
		"unknown stream":     {"s2", ids, nil},
		"no IDs":             {"s1", nil, nil},
		"duplicate IDs":      {"s1", []qkd.KeyID{ids[0], ids[0]}, nil},
		"info of other apps": {"s1", ids, &kmsproto.RelayStream{KSID: "k", Source: sae(1), Dest: sae(2)}},
		"info without KSID":  {"s1", ids, &kmsproto.RelayStream{Source: sae(0), Dest: sae(2)}},
	} {
		if _, _, err := c.engines[0].RelayIDs(ctx, tc.stream, 256, tc.ids, time.Hour, tc.info); err == nil {
			t.Errorf("%s: RelayIDs succeeded", name)
		}
	}
	if _, err := c.engines[0].Poll(ctx, relay.Receipt{Step: "nope", Link: c.links[0][0].ID()}); !errors.Is(err, qkd.ErrNotFound) {
		t.Errorf("Poll of an unknown step = %v, want ErrNotFound", err)
	}
}

// Chunks of a 004 stream are tagged with its KSID at both ends: a
// pair-wise take (ETSI 014) never gets them.
func TestRelayIDsChunksAreStreamKeys(t *testing.T) {
	c := newChain(t, 2)
	c.push(t, 12, 2048)
	c.waitMaterial(t)
	c.install(t, "s1")
	ctx := context.Background()
	ids := newIDs(t, 3)
	info := &kmsproto.RelayStream{KSID: "ksid-2", Source: sae(0), Dest: sae(2), State: kmsproto.StreamOpen}
	if _, _, err := c.engines[0].RelayIDs(ctx, "s1", 256, ids, time.Hour, info); err != nil {
		t.Fatalf("RelayIDs = %v", err)
	}
	for _, end := range []struct {
		i      int
		caller qkd.SAEID
	}{{0, sae(0)}, {2, sae(2)}} {
		_, err := c.stores[end.i].TakeForPair(ctx, keystore.TakeRequest{Master: sae(0), Slaves: []qkd.SAEID{sae(2)}, Caller: end.caller,
			SizeBits: 256, Number: 1, Now: time.Now()})
		if !errors.Is(err, qkd.ErrInsufficientKey) {
			t.Errorf("TakeForPair at %s = %v, want ErrInsufficientKey (chunks are stream keys)", c.ids[end.i], err)
		}
	}
	c.take(t, ids)
}
