package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/etsi004/coap004"
	"github.com/qkms/qkms/internal/etsi004/tcp004"
	"github.com/qkms/qkms/internal/pki"
)

// TestETSI004Line2: SAE_A1 opens a key stream with a NULL ID over the CoAP
// binding (coaps+tcp, client certificate) at node A; SAE_B1 opens the
// returned ID over the reference TCP/TLS framing at node B; GET_KEY with
// the same indices gives identical chunks at both ends, once each; a too
// small metadata buffer gets status 8 and loses no key; CLOSE at both ends
// ends the stream.
func TestETSI004Line2(t *testing.T) {
	n := startNet(t, "line2.json", nil, nil)
	info := n.Info
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b := saeOf(info, "SAE_A1"), saeOf(info, "SAE_B1")
	na, nb := nodeOf(info, a.Node), nodeOf(info, b.Node)
	if na.ETSI004Addr == "" || nb.ETSI004TCPAddr == "" {
		t.Fatalf("network.json lacks etsi004_addr / etsi004_tcp_addr: %+v %+v", na, nb)
	}
	tlsA, err := pki.ClientTLSConfig(info.CA, a.Cert, a.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	tlsB, err := pki.ClientTLSConfig(info.CA, b.Cert, b.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := coap004.DialTLS(ctx, na.ETSI004Addr, tlsA, coap004.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Hangup()
	cb, err := tcp004.Dial(ctx, nb.ETSI004TCPAddr, tlsB)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Disconnect()

	qos := etsi004.QoS{KeyChunkSize: 32, Timeout: 20000, TTL: 600, MetadataMimetype: etsi004.MimeJSON}
	oa, err := ca.OpenConnect(ctx, etsi004.OpenRequest{Source: "sae://SAE_A1", Destination: "sae://SAE_B1", QoS: qos})
	if err != nil {
		t.Fatal(err)
	}
	if oa.KeyStreamID.IsNull() || (oa.Status != etsi004.StatusSuccessful && oa.Status != etsi004.StatusPeerNotConnected) {
		t.Fatalf("OPEN_CONNECT at A = %+v", oa)
	}
	// Another application may not take the stream; the peer may.
	ob, err := cb.OpenConnect(ctx, etsi004.OpenRequest{Source: "SAE_B1", Destination: "SAE_A1", KeyStreamID: oa.KeyStreamID,
		QoS: etsi004.QoS{KeyChunkSize: 64}})
	if err != nil {
		t.Fatal(err)
	}
	if ob.Status != etsi004.StatusSuccessful || ob.KeyStreamID != oa.KeyStreamID || ob.QoS.KeyChunkSize != 32 {
		t.Fatalf("OPEN_CONNECT at B = %+v, want 0 with the stream's QoS (chunk 32)", ob)
	}
	// Too small a metadata buffer: status 8, needed size, no key lost.
	r8, err := cb.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: ob.KeyStreamID, Index: 0, MetadataSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r8.Status != etsi004.StatusMetadataTooSmall || r8.MetadataSize <= 1 {
		t.Fatalf("GET_KEY with a 1-byte metadata buffer = status %d size %d, want 8 and the needed size", r8.Status, r8.MetadataSize)
	}
	for idx := uint32(0); idx < 3; idx++ {
		var ka, kb etsi004.GetKeyResponse
		waitFor(t, time.Minute, "GET_KEY at both ends", func() bool {
			if ka.Status != etsi004.StatusSuccessful || len(ka.Key) == 0 {
				ka, err = ca.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: oa.KeyStreamID, Index: idx, MetadataSize: 1024})
				if err != nil {
					t.Fatal(err)
				}
			}
			if kb.Status != etsi004.StatusSuccessful || len(kb.Key) == 0 {
				kb, err = cb.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: ob.KeyStreamID, Index: idx, MetadataSize: 1024})
				if err != nil {
					t.Fatal(err)
				}
			}
			return ka.Status == etsi004.StatusSuccessful && kb.Status == etsi004.StatusSuccessful
		})
		if len(ka.Key) != 32 || !bytes.Equal(ka.Key, kb.Key) || ka.Index != idx || kb.Index != idx {
			t.Fatalf("index %d: A got %d bytes, B %d bytes, equal %v", idx, len(ka.Key), len(kb.Key), bytes.Equal(ka.Key, kb.Key))
		}
		if !bytes.Contains(ka.Metadata, []byte(`"hops"`)) {
			t.Errorf("index %d: metadata %q lacks hops", idx, ka.Metadata)
		}
		again, err := ca.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: oa.KeyStreamID, Index: idx})
		if err != nil {
			t.Fatal(err)
		}
		if again.Status == etsi004.StatusSuccessful {
			t.Fatalf("index %d delivered twice at A", idx)
		}
	}
	for _, c := range []interface {
		Close(context.Context, etsi004.CloseRequest) (etsi004.CloseResponse, error)
	}{ca, cb} {
		r, err := c.Close(ctx, etsi004.CloseRequest{KeyStreamID: oa.KeyStreamID})
		if err != nil || r.Status != etsi004.StatusSuccessful {
			t.Fatalf("CLOSE = %+v, %v", r, err)
		}
	}
	after, err := cb.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: ob.KeyStreamID, Index: 5})
	if err != nil {
		t.Fatal(err)
	}
	if after.Status == etsi004.StatusSuccessful {
		t.Fatal("GET_KEY after CLOSE succeeded")
	}
}
