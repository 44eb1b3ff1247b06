package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
)

// TestETSI004Ring5Relayed: on ring5, SAE_A1 opens a key stream with a
// NULL ID over the CoAP binding at node A to SAE_C1, two hops away; node
// A gets the pair's route from the SDN controller and relays the chunks.
// SAE_C1 opens the returned ID over the TCP/TLS framing at node C; GET_KEY
// with the same indices gives identical chunks at both ends, once each;
// CLOSE at both ends.
func TestETSI004Ring5Relayed(t *testing.T) {
	n := startNet(t, "ring5.json", nil, nil)
	info := n.Info
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca, cc := clients004(ctx, t, info, "SAE_A1", "SAE_C1")
	var err error

	qos := etsi004.QoS{KeyChunkSize: 32, Timeout: 20000, TTL: 600, MetadataMimetype: etsi004.MimeJSON}
	var oa etsi004.OpenResponse
	// The first request of the pair may find the controller still
	// learning the network (no route yet: 4); the application retries.
	waitFor(t, time.Minute, "OPEN_CONNECT at A with a route to C", func() bool {
		if oa, err = ca.OpenConnect(ctx, etsi004.OpenRequest{Source: "sae://SAE_A1", Destination: "sae://SAE_C1", QoS: qos}); err != nil {
			t.Fatal(err)
		}
		return oa.Status != etsi004.StatusNoQKDConnection
	})
	if oa.KeyStreamID.IsNull() || (oa.Status != etsi004.StatusSuccessful && oa.Status != etsi004.StatusPeerNotConnected) {
		t.Fatalf("OPEN_CONNECT at A = %+v", oa)
	}
	var oc etsi004.OpenResponse
	// C learns the stream with its first relayed chunk: until then the
	// ID is unknown there, and C would wait for it as destination.
	oc, err = cc.OpenConnect(ctx, etsi004.OpenRequest{Source: "SAE_C1", Destination: "SAE_A1", KeyStreamID: oa.KeyStreamID})
	if err != nil {
		t.Fatal(err)
	}
	if oc.Status != etsi004.StatusSuccessful || oc.KeyStreamID != oa.KeyStreamID || oc.QoS.KeyChunkSize != 32 {
		t.Fatalf("OPEN_CONNECT at C = %+v, want 0 with the stream's QoS (chunk 32)", oc)
	}
	for idx := uint32(0); idx < 3; idx++ {
		// Key material on the route's links comes at the simulated rate:
		// an end may answer 2 (insufficient key) until the chunk is relayed.
		var ka, kc etsi004.GetKeyResponse
		waitFor(t, time.Minute, "GET_KEY at both ends", func() bool {
			if ka.Status != etsi004.StatusSuccessful || len(ka.Key) == 0 {
				if ka, err = ca.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: oa.KeyStreamID, Index: idx, MetadataSize: 1024}); err != nil {
					t.Fatal(err)
				}
			}
			if kc.Status != etsi004.StatusSuccessful || len(kc.Key) == 0 {
				if kc, err = cc.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: oc.KeyStreamID, Index: idx, MetadataSize: 1024}); err != nil {
					t.Fatal(err)
				}
			}
			return ka.Status == etsi004.StatusSuccessful && kc.Status == etsi004.StatusSuccessful && len(ka.Key) > 0 && len(kc.Key) > 0
		})
		if ka.Status != etsi004.StatusSuccessful || kc.Status != etsi004.StatusSuccessful || len(ka.Key) != 32 || !bytes.Equal(ka.Key, kc.Key) {
			t.Fatalf("index %d: A status %d (%d bytes), C status %d (%d bytes), equal %v", idx, ka.Status, len(ka.Key), kc.Status, len(kc.Key), bytes.Equal(ka.Key, kc.Key))
		}
		again, err := cc.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: oc.KeyStreamID, Index: idx})
		if err != nil {
			t.Fatal(err)
		}
		if again.Status == etsi004.StatusSuccessful {
			t.Fatalf("index %d delivered twice at C", idx)
		}
	}
	for _, cl := range []interface {
		Close(context.Context, etsi004.CloseRequest) (etsi004.CloseResponse, error)
	}{ca, cc} {
		r, err := cl.Close(ctx, etsi004.CloseRequest{KeyStreamID: oa.KeyStreamID})
		if err != nil || r.Status != etsi004.StatusSuccessful {
			t.Fatalf("CLOSE = %+v, %v", r, err)
		}
	}
}
