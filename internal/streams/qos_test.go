package streams_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/streams"
)

// qosRouter plays the SDN controller's admission: it promises up to
// capacity bit/s per pair and records registrations and releases.
type qosRouter struct {
	*fakeRouter
	capacity float64

	mu       sync.Mutex
	asked    []etsi004.QoS
	released []string
}

func (r *qosRouter) Stream004(ctx context.Context, master, slave qkd.SAEID, q etsi004.QoS) (string, float64, error) {
	s, err := r.Stream(ctx, master, []qkd.SAEID{slave})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, q)
	return s, min(float64(q.MinBps), r.capacity), err
}

func (r *qosRouter) Release004(_ context.Context, stream string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.released = append(r.released, stream)
	return nil
}

func (r *qosRouter) releases() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.released)
}

func newQoSLine(t *testing.T, capacity float64) (*line3, *qosRouter) {
	var qr *qosRouter
	l3 := newLine3With(t, func(f *fakeRouter) streams.Router {
		qr = &qosRouter{fakeRouter: f, capacity: capacity}
		return qr
	})
	return l3, qr
}

// A remote stream whose min_bps the route cannot promise: status 7 with
// the offered rate as min_bps, no stream, and the registration released.
func TestRemoteQoSCounterProposal(t *testing.T) {
	l3, qr := newQoSLine(t, 1500)
	q := etsi004.QoS{KeyChunkSize: 32, MinBps: 4000, MaxBps: 8000, TTL: 60}
	r := open(t, l3.a, "SAE_A1", "SAE_C1", q, etsi004.KSID{})
	if r.Status != etsi004.StatusQoSNotMet || r.QoS.MinBps != 1500 || r.QoS.MaxBps != 8000 || r.QoS.KeyChunkSize != 32 {
		t.Fatalf("OpenConnect(min_bps 4000) on a 1500 bit/s route = %v, QoS %+v; want 7 with min_bps 1500", r.Status, r.QoS)
	}
	if n := len(l3.a.Streams()); n != 0 {
		t.Errorf("%d streams after a counter-proposal, want 0", n)
	}
	if len(qr.asked) != 1 || qr.asked[0].MinBps != 4000 || qr.asked[0].TTL != 60 {
		t.Errorf("router asked with %+v, want the stream's QoS", qr.asked)
	}
	linktest.WaitFor(t, "the registration released", func() bool { return len(qr.releases()) == 1 })
	// The application accepts the counter-proposal.
	q.MinBps = r.QoS.MinBps
	if r := open(t, l3.a, "SAE_A1", "SAE_C1", q, etsi004.KSID{}); r.Status != etsi004.StatusPeerNotConnected || r.QoS.MinBps != 1500 {
		t.Fatalf("OpenConnect with the counter-proposal = %v, QoS %+v; want 1", r.Status, r.QoS)
	}
}

// An admitted remote stream is released once both ends closed; a second
// stream of the pair on the same key stream keeps it until it closes too.
func TestRemoteQoSReleaseOnClose(t *testing.T) {
	l3, qr := newQoSLine(t, 1e6)
	q := etsi004.QoS{KeyChunkSize: 32, MinBps: 1000}
	k1 := open(t, l3.a, "SAE_A1", "SAE_C1", q, etsi004.KSID{}).KeyStreamID
	k2 := open(t, l3.a, "SAE_A1", "SAE_C1", q, etsi004.KSID{}).KeyStreamID
	for _, k := range []etsi004.KSID{k1, k2} {
		if k.IsNull() {
			t.Fatal("OpenConnect did not open the stream")
		}
	}
	linktest.WaitFor(t, "C learns both streams", func() bool { return len(l3.c.Streams()) == 2 })
	for _, k := range []etsi004.KSID{k1, k2} {
		if j := open(t, l3.c, "SAE_C1", "SAE_A1", etsi004.QoS{}, k); j.Status != etsi004.StatusSuccessful {
			t.Fatalf("OpenConnect(KSID) at C = %v", j.Status)
		}
	}
	closeEnd := func(s *streams.Service, caller qkd.SAEID, k etsi004.KSID) {
		t.Helper()
		if r, err := s.Close(ctx, caller, etsi004.CloseRequest{KeyStreamID: k}); err != nil || r.Status != 0 {
			t.Fatalf("Close at %s = %v, %v", caller, r.Status, err)
		}
	}
	// k1: the destination closes first, then the source.
	closeEnd(l3.c, "SAE_C1", k1)
	closeEnd(l3.a, "SAE_A1", k1)
	linktest.WaitFor(t, "A forgets k1", func() bool { return len(l3.a.Streams()) == 1 })
	if rel := qr.releases(); len(rel) != 0 {
		t.Fatalf("released %v while k2 uses the key stream", rel)
	}
	closeEnd(l3.c, "SAE_C1", k2)
	closeEnd(l3.a, "SAE_A1", k2)
	linktest.WaitFor(t, "the key stream released", func() bool { return len(qr.releases()) == 1 })
	if rel := qr.releases(); rel[0] != "ks-SAE_A1-SAE_C1" {
		t.Errorf("released %v", rel)
	}
}

// A source that closes before its destination opened releases at once.
func TestRemoteQoSReleaseUnjoined(t *testing.T) {
	l3, qr := newQoSLine(t, 1e6)
	k := open(t, l3.a, "SAE_A1", "SAE_C1", etsi004.QoS{KeyChunkSize: 32, MinBps: 1000}, etsi004.KSID{}).KeyStreamID
	linktest.WaitFor(t, "C learns the stream", func() bool { return len(l3.c.Streams()) == 1 })
	if r, err := l3.a.Close(ctx, "SAE_A1", etsi004.CloseRequest{KeyStreamID: k}); err != nil || r.Status != 0 {
		t.Fatalf("Close = %v, %v", r.Status, err)
	}
	linktest.WaitFor(t, "the key stream released", func() bool { return len(qr.releases()) == 1 })
}

// A source that closes while its destination is open keeps the key
// stream: it still polls the destination over it (finish releases it).
func TestRemoteQoSKeepWhileDestinationOpen(t *testing.T) {
	l3, qr := newQoSLine(t, 1e6)
	k := open(t, l3.a, "SAE_A1", "SAE_C1", etsi004.QoS{KeyChunkSize: 32, MinBps: 1000}, etsi004.KSID{}).KeyStreamID
	linktest.WaitFor(t, "C learns the stream", func() bool { return len(l3.c.Streams()) == 1 })
	if j := open(t, l3.c, "SAE_C1", "SAE_A1", etsi004.QoS{}, k); j.Status != etsi004.StatusSuccessful {
		t.Fatalf("OpenConnect(KSID) at C = %v", j.Status)
	}
	linktest.WaitFor(t, "A sees C open", func() bool {
		st := l3.a.Streams()
		return len(st) == 1 && st[0].DstState == "open"
	})
	if r, err := l3.a.Close(ctx, "SAE_A1", etsi004.CloseRequest{KeyStreamID: k}); err != nil || r.Status != 0 {
		t.Fatalf("Close = %v, %v", r.Status, err)
	}
	time.Sleep(100 * time.Millisecond)
	if rel := qr.releases(); len(rel) != 0 {
		t.Errorf("released %v while the destination is open", rel)
	}
}
