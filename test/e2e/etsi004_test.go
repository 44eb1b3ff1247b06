package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/etsi004/coap004"
	"github.com/qkms/qkms/internal/etsi004/tcp004"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
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
	ca, cb := clients004(ctx, t, info, "SAE_A1", "SAE_B1")

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

// clients004 connects master over the CoAP binding at its node and slave
// over the reference TCP/TLS framing at its node, each with its own client
// certificate from network.json.
func clients004(ctx context.Context, t *testing.T, info netsim.Info, master, slave qkd.SAEID) (*coap004.Client, *tcp004.Client) {
	t.Helper()
	m, s := saeOf(info, master), saeOf(info, slave)
	nm, ns := nodeOf(info, m.Node), nodeOf(info, s.Node)
	if nm.ETSI004Addr == "" || ns.ETSI004TCPAddr == "" {
		t.Fatalf("network.json lacks etsi004_addr / etsi004_tcp_addr: %+v %+v", nm, ns)
	}
	tlsM, err := pki.ClientTLSConfig(info.CA, m.Cert, m.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	tlsS, err := pki.ClientTLSConfig(info.CA, s.Cert, s.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	cm, err := coap004.DialTLS(ctx, nm.ETSI004Addr, tlsM, coap004.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cm.Hangup() })
	cs, err := tcp004.Dial(ctx, ns.ETSI004TCPAddr, tlsS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Disconnect() })
	return cm, cs
}
