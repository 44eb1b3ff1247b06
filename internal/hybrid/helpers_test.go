package hybrid

import (
	"bytes"
	"crypto/sha3"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// testNow is the clock of every test: certificates are valid an hour
// around it.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type testNode struct {
	key  *PrivateKey
	cert []byte
}

type testPKI struct {
	caKey *PrivateKey
	v     *Verifier
	nodes map[qkd.NodeID]testNode
	alg   string
}

// seedFor derives a deterministic 32-byte seed from a label.
func seedFor(label string) []byte {
	s := sha3.Sum256([]byte("qkms hybrid test " + label))
	return s[:]
}

// newTestPKI makes a CA and one key and certificate of parameter set alg per
// node, all from fixed seeds.
func newTestPKI(t testing.TB, alg string, nodes ...qkd.NodeID) *testPKI {
	t.Helper()
	s, err := SignerByName(alg)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := s.NewKeyFromSeed(seedFor("ca " + alg))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(ca.Public(), alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{caKey: ca, v: v, nodes: map[qkd.NodeID]testNode{}, alg: alg}
	for i, n := range nodes {
		p.nodes[n] = p.issue(t, n, alg, uint64(i+1), testNow.Add(-time.Hour), testNow.Add(time.Hour))
	}
	return p
}

// issue makes a node key of parameter set alg and its certificate.
func (p *testPKI) issue(t testing.TB, n qkd.NodeID, alg string, serial uint64, nb, na time.Time) testNode {
	t.Helper()
	s, err := SignerByName(alg)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.NewKeyFromSeed(seedFor("node " + string(n) + " " + alg))
	if err != nil {
		t.Fatal(err)
	}
	c, err := IssueCertificate(p.caKey, "qkms-ca", string(n), alg, k.Public(), serial, nb, na)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return testNode{key: k, cert: enc}
}

// offerFor makes dest's signed offer to source.
func (p *testPKI) offerFor(t testing.TB, kem string, source, dest qkd.NodeID) (*Offer, *DecapKey) {
	t.Helper()
	n := p.nodes[dest]
	o, dk, err := NewOffer(OfferParams{KEM: kem, Stream: "S1", Source: source, Dest: dest,
		Expires: testNow.Add(time.Minute), Key: n.key, Cert: n.cert, Rand: bytes.NewReader(seedFor("offer " + string(dest)))})
	if err != nil {
		t.Fatalf("NewOffer(%s, %s → %s): %v", kem, dest, source, err)
	}
	return o, dk
}

// keyIDs returns n distinct key IDs.
func keyIDs(n int) []qkd.KeyID {
	ids := make([]qkd.KeyID, n)
	for i := range ids {
		ids[i][0], ids[i][1], ids[i][15] = byte(i>>8), byte(i), 0xaa
	}
	return ids
}

// lookupOf returns a DecapKeyLookup knowing exactly one key.
func lookupOf(id string, dk *DecapKey) DecapKeyLookup {
	return func(k string) *DecapKey {
		if k == id {
			return dk
		}
		return nil
	}
}
