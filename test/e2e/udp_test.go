package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sae"
)

// TestKeysOverUDPPeers runs line2 with KMS↔KMS CoAP over UDP (RFC 7252,
// block-wise) instead of the default TCP, and delivers keys both ways.
func TestKeysOverUDPPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test skipped under -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := netsim.Up(ctx, netsim.Options{Topology: loadTopology(t, "line2.json"), Dir: t.TempDir(), PeerTransport: "udp"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	info := n.Info
	for _, pair := range [][2]qkd.SAEID{{"SAE_A1", "SAE_B1"}, {"SAE_B1", "SAE_A1"}} {
		m, s := saeOf(info, pair[0]), saeOf(info, pair[1])
		mc, err := sae.New(nodeOf(info, m.Node).ETSI014URL, info.CA, m.Cert, m.Key)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := sae.New(nodeOf(info, s.Node).ETSI014URL, info.CA, s.Cert, s.Key)
		if err != nil {
			t.Fatal(err)
		}
		// 60 keys of 64 bits: not in the ready pool (256-bit keys), so one
		// make_keys_external of about 1.3 KB goes block-wise over UDP.
		keys, err := mc.EncKeys(ctx, string(s.ID), 60, 64)
		if err != nil {
			t.Fatalf("enc_keys over UDP peers: %v", err)
		}
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = k.ID
		}
		got, err := sc.DecKeys(ctx, string(m.ID), ids)
		if err != nil {
			t.Fatalf("dec_keys over UDP peers: %v", err)
		}
		for i := range keys {
			if !keys[i].Key.Equal(got[i].Key) {
				t.Fatalf("key %s differs between the ends", ids[i])
			}
		}
		mc.Close()
		sc.Close()
	}
}
