package qkdsim

import (
	"context"
	"testing"

	"github.com/qkms/qkms/internal/device/pushproto"
)

// fakeObserver marks an end as registered without a connection.
func fakeObserver(endpoint string) *observer {
	ctx, cancel := context.WithCancel(context.Background())
	return &observer{endpoint: endpoint, ctx: ctx, cancel: cancel}
}

func TestOpenConnect(t *testing.T) {
	predefined, _ := pushproto.NewKeyStreamID(nil)
	other, _ := pushproto.NewKeyStreamID(nil)
	l, err := NewLink(Options{BlockSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	a, b := l.End("a"), l.End("b")
	open := func(e *End, src string, k pushproto.KeyStreamID, endpoint string) pushproto.OpenConnectReply {
		t.Helper()
		rep, err := e.openConnect(pushproto.OpenConnect{Source: src, Destination: "kms://peer", KeyStreamID: k}, endpoint)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	first := open(a, "kms://A", pushproto.KeyStreamID{}, "udp 1")
	if first.Status != pushproto.StatusPeerNotConnected || first.KeyStreamID.IsZero() || first.KeyStreamID[6]>>4 != 4 {
		t.Fatalf("first OPEN_CONNECT = %+v, want status 1 and a fresh UUIDv4", first)
	}
	if first.QoS.KeyChunkSize != 64 {
		t.Errorf("key_chunk_size = %d, want the block size 64", first.QoS.KeyChunkSize)
	}
	if rep := open(b, "kms://B", first.KeyStreamID, "udp 2"); rep.Status != pushproto.StatusSuccess || rep.KeyStreamID != first.KeyStreamID {
		t.Errorf("peer OPEN_CONNECT = %+v, want status 0 and the same KSID", rep)
	}
	if rep := open(b, "kms://B", pushproto.KeyStreamID{}, "udp 3"); rep.KeyStreamID != first.KeyStreamID {
		t.Errorf("NULL KSID again = %+v, want the link's KSID", rep)
	}
	if rep := open(b, "kms://B", other, "udp 3"); rep.Status != pushproto.StatusNoQKDConnection {
		t.Errorf("other KSID = %+v, want status 4", rep)
	}

	// Another application while the holder is registered: refused.
	a.mu.Lock()
	a.obs = fakeObserver("udp 1")
	a.mu.Unlock()
	if rep := open(a, "kms://intruder", pushproto.KeyStreamID{}, "udp 9"); rep.Status != pushproto.StatusKSIDInUse {
		t.Errorf("second application = %+v, want status 5", rep)
	}
	// The same application from a new endpoint takes over and ends the old registration.
	old := a.obs
	if rep := open(a, "kms://A", pushproto.KeyStreamID{}, "udp 7"); !rep.Status.OK() {
		t.Errorf("same application again = %+v, want success", rep)
	}
	if old.ctx.Err() == nil || a.obs != nil {
		t.Error("the old registration survived a new OPEN_CONNECT")
	}
	a.mu.Lock()
	if st := a.admitLocked(first.KeyStreamID, "udp 1"); st != pushproto.StatusKSIDInUse {
		t.Errorf("GET_KEY from the old endpoint: status %d, want 5", st)
	}
	if st := a.admitLocked(first.KeyStreamID, "udp 7"); st != pushproto.StatusSuccess {
		t.Errorf("GET_KEY from the holder: status %d, want 0", st)
	}
	if st := a.admitLocked(other, "udp 7"); st != pushproto.StatusPeerAppNotConnected {
		t.Errorf("GET_KEY for another KSID: status %d, want 3", st)
	}
	a.mu.Unlock()

	// CLOSE at both ends ends the stream: the next OPEN_CONNECT gets a new KSID.
	if err := l.Produce(2); err != nil {
		t.Fatal(err)
	}
	if st := a.closeStream(first.KeyStreamID, "udp 7"); st != pushproto.StatusSuccess {
		t.Fatalf("CLOSE at a: status %d", st)
	}
	if a.Stats().Buffered != 2 {
		t.Errorf("a discarded its blocks before the peer closed")
	}
	if st := b.closeStream(first.KeyStreamID, "udp 3"); st != pushproto.StatusSuccess {
		t.Fatalf("CLOSE at b: status %d", st)
	}
	if a.Stats().Buffered != 0 || b.Stats().Buffered != 0 || !l.KeyStreamID().IsZero() {
		t.Errorf("after CLOSE at both ends: %+v, KSID %s; want no blocks, no KSID", l.Stats(), l.KeyStreamID())
	}
	if rep := open(a, "kms://A", predefined, "udp 1"); rep.KeyStreamID != predefined {
		t.Errorf("predefined KSID = %+v, want %s", rep, predefined)
	}
}

func FuzzOpenConnect(f *testing.F) {
	k, _ := pushproto.NewKeyStreamID(nil)
	for _, req := range []pushproto.OpenConnect{
		{Source: "kms://A", Destination: "kms://B"},
		{Source: "kms://A", KeyStreamID: k, QoS: pushproto.QoS{KeyChunkSize: 64, MinBps: 10, MetadataMimetype: "application/json"}},
	} {
		for _, fm := range []pushproto.Format{pushproto.CBOR, pushproto.JSON} {
			p, err := fm.Marshal(req)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(fm), p)
		}
	}
	f.Add(uint8(0), []byte{0xa1, 0x66, 's', 'o', 'u', 'r', 'c', 'e', 0x61, 'x'})
	f.Add(uint8(1), []byte(`{"source":"x","key_stream_id":null,"qos":{"ttl":-1}}`))
	f.Fuzz(func(t *testing.T, format uint8, body []byte) {
		fm := pushproto.Format(format % 2)
		req, err := decodeOpenConnect(fm, body)
		if err != nil {
			return
		}
		l, err := NewLink(Options{BlockSize: 64, Rate: 1000})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := l.End("a").openConnect(req, "udp x")
		if err != nil {
			t.Fatal(err)
		}
		switch rep.Status {
		case pushproto.StatusPeerNotConnected:
			if rep.KeyStreamID.IsZero() || !req.KeyStreamID.IsZero() && rep.KeyStreamID != req.KeyStreamID {
				t.Fatalf("openConnect(%+v) = %+v: wrong KSID", req, rep)
			}
		case pushproto.StatusQoSNotMet:
		default:
			t.Fatalf("openConnect(%+v) = status %d", req, rep.Status)
		}
		if rep.QoS.KeyChunkSize != 64 {
			t.Fatalf("openConnect(%+v) offers chunk %d", req, rep.QoS.KeyChunkSize)
		}
		p, err := fm.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var back pushproto.OpenConnectReply
		if err := fm.Unmarshal(p, &back); err != nil || back != rep {
			t.Fatalf("reply round trip = %+v, %v; want %+v", back, err, rep)
		}
	})
}
