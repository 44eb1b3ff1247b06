package e2e

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
	"github.com/qkms/qkms/internal/sae"
	"github.com/qkms/qkms/internal/telemetry"
)

// TestHybridRing5 runs ring5 with hybrid keys on at every node (docs/hybrid.md):
//   - SAEs two hops apart get identical keys through ETSI 014, also when
//     the request requires hybrid keys (qkms_hybrid); both ends count them
//     as hybrid keys, and the intermediate node relayed them;
//   - neighbours asking for hybrid keys get 400 (fail closed);
//   - a stream diverted through nodes off its configured route (the
//     forwarding entries changed behind the controller's back) is refused
//     by the destination, which reports it to the controller through its
//     agent (QUICKS notification/event 1004).
func TestHybridRing5(t *testing.T) {
	// One route per stream: the test diverts it behind the controller's back.
	n := startNet(t, "ring5.json", nil, func(c *config.Config) { c.Hybrid.Mode = config.HybridOn; c.Keys.Multipath = config.MultipathOff })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := func(id qkd.SAEID) *sae.Client { return saeClient(t, n.Info, id) }
	a1, c1, b1 := client("SAE_A1"), client("SAE_C1"), client("SAE_B1")
	ma, mc := n.Nodes["A"].Metrics(), n.Nodes["C"].Metrics()

	var keys []sae.Key
	waitFor(t, 2*time.Minute, "hybrid enc_keys SAE_A1→SAE_C1", func() bool {
		var err error
		keys, err = a1.EncKeysHybrid(ctx, "SAE_C1", 4, 256)
		if err != nil {
			t.Logf("enc_keys: %v", err)
		}
		return err == nil
	})
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	got, err := c1.DecKeys(ctx, "SAE_A1", ids)
	if err != nil {
		t.Fatalf("dec_keys at C: %v", err)
	}
	for i := range keys {
		if !keys[i].Key.Equal(got[i].Key) {
			t.Fatalf("key %s differs between A and C", ids[i])
		}
	}
	src, dst := gauge(ma, "qkms_hybrid_keys_total", "end", "source"), gauge(mc, "qkms_hybrid_keys_total", "end", "destination")
	if src < float64(len(keys)) || dst < float64(len(keys)) {
		t.Errorf("hybrid keys counted: %v at A (source), %v at C (destination); want at least %d", src, dst, len(keys))
	}

	// Neighbours: their keys are not relayed, so not hybrid: refused.
	_, err = a1.EncKeysHybrid(ctx, "SAE_B1", 1, 256)
	var e *sae.Error
	if !errors.As(err, &e) || e.Code != 400 || !strings.Contains(e.Message, "qkms_hybrid") {
		t.Fatalf("hybrid enc_keys between neighbours = %v, want 400 %q", err, kms.MsgHybridUnavailable)
	}
	_ = b1

	// ETSI 004 between E and C (two hops): hybrid chunks, identical at
	// both ends, with the suite in the metadata.
	hybrid004(ctx, t, n.Info, "SAE_E1", "SAE_C1")

	// Divert the stream to the other side of the ring (A→E→D→C for a
	// stream routed over B, A→B→C otherwise): the entries change on the
	// nodes of the diversion; C keeps the route it was told.
	var stream relay.Entry
	for _, en := range n.Nodes["A"].Relay().Entries() {
		if en.Master == "SAE_A1" && len(en.Slaves) == 1 && en.Slaves[0] == "SAE_C1" {
			stream = en
		}
	}
	if stream.Stream == "" || len(stream.Route) < 3 {
		t.Fatalf("stream of SAE_A1→SAE_C1 at A = %+v, want a relayed one with its route", stream)
	}
	path := []qkd.NodeID{"A", "E", "D", "C"}
	if slices.Contains(stream.Route, "E") {
		path = []qkd.NodeID{"A", "B", "C"}
	}
	original := map[qkd.NodeID]relay.Entry{}
	for _, id := range stream.Route {
		original[id], _ = n.Nodes[id].Relay().Lookup(stream.Stream)
	}
	for i, node := range path {
		en := stream
		en.Prev, en.Next = "", ""
		if i > 0 {
			en.Prev = path[i-1]
		}
		if i < len(path)-1 {
			en.Next = path[i+1]
		}
		if err := n.Nodes[node].Relay().Install(en); err != nil {
			t.Fatalf("divert at %s: %v", node, err)
		}
	}
	rejected := rejectedAt(mc)
	if _, err := n.Nodes["A"].Relay().Relay(ctx, stream.Stream, 256, 2, time.Minute); err == nil {
		t.Fatal("keys relayed along a diverted path were accepted")
	}
	if r := rejectedAt(mc); r <= rejected {
		t.Errorf("qkms_hybrid_rejected_total at C = %v, want > %v", r, rejected)
	}
	waitFor(t, 30*time.Second, "the controller's notification of the rejected keys", func() bool {
		return notified(n.Controller().Notifications(), "KMS of C", "hybrid keys of key stream "+stream.Stream+" rejected", "configured route")
	})
	// Put the entries right: the stream and every link it crossed work
	// again (C burnt the pad of the refused step).
	for _, node := range path {
		if _, on := original[node]; !on {
			n.Nodes[node].Relay().Remove(stream.Stream)
		}
	}
	for id, en := range original {
		if err := n.Nodes[id].Relay().Install(en); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "hybrid keys along the configured route again", func() bool {
		_, err := n.Nodes["A"].Relay().Relay(ctx, stream.Stream, 256, 2, time.Minute)
		return err == nil
	})
}

// rejectedAt reads qkms_hybrid_rejected_total (no labels but node).
func rejectedAt(m *telemetry.Metrics) float64 {
	v, _ := m.Value("qkms_hybrid_rejected_total", nil)
	return v
}

// TestHybridRevokedNode: the operator revokes an intermediate node's ML-DSA
// certificate (qkms pki revoke-pq, the shared DIR/pki/pq/crl.pem); the
// nodes reload the list, and the destination refuses keys whose path B
// signed, until the stream takes another route.
func TestHybridRevokedNode(t *testing.T) {
	// One route per stream: the test diverts it behind the controller's back.
	n := startNet(t, "ring5.json", nil, func(c *config.Config) { c.Hybrid.Mode = config.HybridOn; c.Keys.Multipath = config.MultipathOff })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := saeOf(n.Info, "SAE_A1")
	a1, err := sae.New(nodeOf(n.Info, "A").ETSI014URL, n.Info.CA, s.Cert, s.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer a1.Close()
	waitFor(t, 2*time.Minute, "hybrid keys SAE_A1→SAE_C1", func() bool {
		_, err := a1.EncKeysHybrid(ctx, "SAE_C1", 1, 256)
		return err == nil
	})
	var stream relay.Entry
	for _, en := range n.Nodes["A"].Relay().Entries() {
		if en.Master == "SAE_A1" && len(en.Slaves) == 1 && en.Slaves[0] == "SAE_C1" {
			stream = en
		}
	}
	if len(stream.Route) < 3 {
		t.Fatalf("stream of SAE_A1→SAE_C1 = %+v, want a relayed one", stream)
	}
	mid := string(stream.Route[1]) // an intermediate node of the route
	ca, err := pki.LoadPQCA(filepath.Dir(n.Info.CA), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Wipe()
	_, _, certFile, _ := pki.PQNodeFiles(filepath.Dir(n.Info.CA), mid)
	cert, err := pki.ReadPQCertificate(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(mid, cert.Serial); err != nil {
		t.Fatal(err)
	}
	mc := n.Nodes["C"].Metrics()
	before := rejectedAt(mc)
	waitFor(t, 30*time.Second, "C refusing keys signed by the revoked intermediate node", func() bool {
		_, err := n.Nodes["A"].Relay().Relay(ctx, stream.Stream, 256, 1, time.Minute)
		return err != nil && rejectedAt(mc) > before
	})
	waitFor(t, 30*time.Second, "the controller's notification of the revoked signer", func() bool {
		return notified(n.Controller().Notifications(), "KMS of C", "rejected", "revoked")
	})
}

// hybrid004 opens an ETSI 004 stream from master (CoAP/TLS) to slave (its
// node's TCP/TLS binding) and checks chunk 0: identical at both ends, and
// the metadata names the hybrid suite.
func hybrid004(ctx context.Context, t *testing.T, info netsim.Info, master, slave qkd.SAEID) {
	t.Helper()
	cm, cs := clients004(ctx, t, info, master, slave)
	q := etsi004.QoS{KeyChunkSize: 32, Timeout: 20000, TTL: 600, MetadataMimetype: etsi004.MimeJSON}
	var om etsi004.OpenResponse
	var err error
	waitFor(t, time.Minute, "OPEN_CONNECT with a route", func() bool {
		if om, err = cm.OpenConnect(ctx, etsi004.OpenRequest{Source: string(master), Destination: string(slave), QoS: q}); err != nil {
			t.Fatal(err)
		}
		return om.Status != etsi004.StatusNoQKDConnection
	})
	os, err := cs.OpenConnect(ctx, etsi004.OpenRequest{Source: string(slave), Destination: string(master), KeyStreamID: om.KeyStreamID})
	if err != nil || os.Status != etsi004.StatusSuccessful {
		t.Fatalf("OPEN_CONNECT at the slave = %+v, %v (master: %+v)", os, err, om)
	}
	var km, ks etsi004.GetKeyResponse
	waitFor(t, time.Minute, "chunk 0 at both ends", func() bool {
		if km.Status != etsi004.StatusSuccessful || len(km.Key) == 0 {
			if km, err = cm.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: om.KeyStreamID, Index: 0, MetadataSize: 1024}); err != nil {
				t.Fatal(err)
			}
		}
		if ks.Status != etsi004.StatusSuccessful || len(ks.Key) == 0 {
			if ks, err = cs.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: om.KeyStreamID, Index: 0, MetadataSize: 1024}); err != nil {
				t.Fatal(err)
			}
		}
		return km.Status == etsi004.StatusSuccessful && ks.Status == etsi004.StatusSuccessful && len(km.Key) > 0 && len(ks.Key) > 0
	})
	if !bytes.Equal(km.Key, ks.Key) || len(km.Key) != 32 {
		t.Fatalf("chunk 0 differs between the ends (%d, %d bytes)", len(km.Key), len(ks.Key))
	}
	for _, md := range [][]byte{km.Metadata, ks.Metadata} {
		if !strings.Contains(string(md), `"hybrid":"ML-KEM-768+ML-DSA-65+xor-shake256"`) || strings.Contains(string(md), `"hops":0`) {
			t.Errorf("metadata %s: want the hybrid suite and hops ≥ 1 (not neighbours)", md)
		}
	}
}
