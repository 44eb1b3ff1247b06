package hybrid

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
)

// signPath has every node of route but the last sign its step, as the
// relay does along the route.
func signPath(t testing.TB, p *testPKI, stream, step string, th []byte, route []qkd.NodeID) []PathStep {
	t.Helper()
	steps := make([]PathStep, 0, len(route)-1)
	for i, n := range route[:len(route)-1] {
		var prev qkd.NodeID
		if i > 0 {
			prev = route[i-1]
		}
		s, err := SignStep(p.nodes[n].key, stream, step, th,
			PathStep{Hop: uint(i), Node: n, Prev: prev, Next: route[i+1], Cert: p.nodes[n].cert})
		if err != nil {
			t.Fatalf("SignStep(%s): %v", n, err)
		}
		steps = append(steps, s)
	}
	return steps
}

// TestVerifyPathCertificatesByReference: steps without their certificate
// verify with the ones the destination knows (certOf), and fail with
// ErrNoCertificate without one, or with ErrWrongSubject / ErrBadSignature
// when certOf gives another node's.
func TestVerifyPathCertificatesByReference(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B", "C")
	th := bytes.Repeat([]byte{7}, 32)
	route := []qkd.NodeID{"A", "B", "C"}
	steps := signPath(t, p, "S1", "batch-1", th, route)
	full, err := MarshalPath(steps)
	if err != nil {
		t.Fatal(err)
	}
	for i := range steps {
		steps[i].Cert = nil
	}
	enc, err := MarshalPath(steps)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) >= len(full)-2*4000 {
		t.Errorf("path without certificates is %d bytes, with them %d", len(enc), len(full))
	}
	got, err := UnmarshalPath(enc)
	if err != nil {
		t.Fatal(err)
	}
	known := func(n qkd.NodeID) []byte { return p.nodes[n].cert }
	if err := VerifyPathWith(p.v, "S1", "batch-1", th, got, route, testNow, known); err != nil {
		t.Fatalf("VerifyPathWith(known certificates): %v", err)
	}
	for _, tt := range []struct {
		name   string
		certOf func(qkd.NodeID) []byte
		want   error
	}{
		{"none", nil, ErrNoCertificate},
		{"B unknown", func(n qkd.NodeID) []byte {
			if n == "B" {
				return nil
			}
			return p.nodes[n].cert
		}, ErrNoCertificate},
		{"A's for everyone", func(qkd.NodeID) []byte { return p.nodes["A"].cert }, ErrWrongSubject},
	} {
		if err := VerifyPathWith(p.v, "S1", "batch-1", th, got, route, testNow, tt.certOf); !errors.Is(err, tt.want) {
			t.Errorf("%s: VerifyPathWith = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestVerifyPath(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B", "C", "D", "E")
	th := bytes.Repeat([]byte{9}, 32)
	route := []qkd.NodeID{"A", "B", "C", "D"}
	steps := signPath(t, p, "S1", "batch-1", th, route)
	enc, err := MarshalPath(steps)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalPath(enc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(steps, got); diff != "" {
		t.Fatalf("path round trip (-want +got):\n%s", diff)
	}
	if err := VerifyPath(p.v, "S1", "batch-1", th, got, route, testNow); err != nil {
		t.Fatalf("VerifyPath: %v", err)
	}

	viaE := signPath(t, p, "S1", "batch-1", th, []qkd.NodeID{"A", "E", "C", "D"})
	crl, err := IssueRevocationList(p.caKey, "qkms-ca", 1, testNow, []RevokedEntry{{"C", 3}})
	if err != nil {
		t.Fatal(err)
	}
	revoking, err := NewVerifier(p.caKey.Public(), MLDSA65, crl)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(s []PathStep) []PathStep
		route  []qkd.NodeID
		v      *Verifier
		stream string
		step   string
		th     []byte
		now    time.Time
		want   error
	}{
		{name: "missing step", mutate: func(s []PathStep) []PathStep { return s[:2] }, want: ErrPathMismatch},
		{name: "extra step", mutate: func(s []PathStep) []PathStep { return append(s, s[2]) }, want: ErrPathMismatch},
		{name: "swapped steps", mutate: func(s []PathStep) []PathStep { s[1], s[2] = s[2], s[1]; return s }, want: ErrPathMismatch},
		{name: "another path", mutate: func([]PathStep) []PathStep { return viaE }, want: ErrPathMismatch},
		{name: "another route configured", route: []qkd.NodeID{"A", "E", "C", "D"}, want: ErrPathMismatch},
		{name: "route to another destination", route: []qkd.NodeID{"A", "B", "C", "E"}, want: ErrPathMismatch},
		{name: "next changed", mutate: func(s []PathStep) []PathStep { s[1].Next = "E"; return s }, want: ErrPathMismatch},
		{name: "hop changed", mutate: func(s []PathStep) []PathStep { s[2].Hop = 5; return s }, want: ErrPathMismatch},
		{name: "E signs as B with its own certificate", mutate: func(s []PathStep) []PathStep {
			s[1] = viaE[1]
			s[1].Node = "B"
			return s
		}, want: ErrWrongSubject},
		{name: "E signs as B with B's certificate", mutate: func(s []PathStep) []PathStep {
			s[1].Sig = viaE[1].Sig
			return s
		}, want: ErrBadSignature},
		{name: "signature", mutate: func(s []PathStep) []PathStep { s[2].Sig[0] ^= 1; return s }, want: ErrBadSignature},
		{name: "another stream", stream: "S2", want: ErrBadSignature},
		{name: "another batch", step: "batch-2", want: ErrBadSignature},
		{name: "another transcript", th: bytes.Repeat([]byte{8}, 32), want: ErrBadSignature},
		{name: "short transcript hash", th: []byte{1}, want: ErrMalformed},
		{name: "revoked hop", v: revoking, want: ErrRevoked},
		{name: "expired certificates", now: testNow.Add(2 * time.Hour), want: ErrExpired},
		{name: "route of one node", route: []qkd.NodeID{"A"}, want: ErrPathMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := clonePath(steps)
			if tt.mutate != nil {
				s = tt.mutate(s)
			}
			r, v, stream, step, h, now := route, p.v, "S1", "batch-1", th, testNow
			if tt.route != nil {
				r = tt.route
			}
			if tt.v != nil {
				v = tt.v
			}
			if tt.stream != "" {
				stream = tt.stream
			}
			if tt.step != "" {
				step = tt.step
			}
			if tt.th != nil {
				h = tt.th
			}
			if !tt.now.IsZero() {
				now = tt.now
			}
			if err := VerifyPath(v, stream, step, h, s, r, now); !errors.Is(err, tt.want) {
				t.Errorf("VerifyPath = %v, want %v", err, tt.want)
			}
		})
	}
}

func clonePath(steps []PathStep) []PathStep {
	s := slices.Clone(steps)
	for i := range s {
		s[i].Sig = bytes.Clone(s[i].Sig)
	}
	return s
}

// The header's transcript hash binds the path to the batch end to end.
func TestPathWithHeader(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B", "C")
	o, dk := p.offerFor(t, MLKEM768, "A", "C")
	h, r := sealFor(t, p, XORSHAKE256, 2, o)
	th, err := h.TranscriptHash()
	if err != nil {
		t.Fatal(err)
	}
	route := []qkd.NodeID{"A", "B", "C"}
	steps := signPath(t, p, h.Stream, h.Step, th, route)
	rD, err := Open(p.v, h, "C", lookupOf(o.KeyID, dk), testNow)
	if err != nil || !rD.Equal(r) {
		t.Fatalf("Open = %v", err)
	}
	thD, err := h.TranscriptHash()
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyPath(p.v, h.Stream, h.Step, thD, steps, route, testNow); err != nil {
		t.Errorf("VerifyPath = %v", err)
	}
}

func TestSignStepRejects(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A")
	k, c := p.nodes["A"].key, p.nodes["A"].cert
	th := make([]byte, 32)
	tests := []struct {
		name string
		s    PathStep
		th   []byte
	}{
		{"hop 0 with a previous node", PathStep{Hop: 0, Node: "A", Prev: "Z", Next: "B", Cert: c}, th},
		{"hop 1 without a previous node", PathStep{Hop: 1, Node: "A", Next: "B", Cert: c}, th},
		{"no next", PathStep{Node: "A", Cert: c}, th},
		{"short hash", PathStep{Node: "A", Next: "B", Cert: c}, th[:31]},
	}
	for _, tt := range tests {
		if _, err := SignStep(k, "S", "b", tt.th, tt.s); !errors.Is(err, ErrMalformed) {
			t.Errorf("SignStep(%s) = %v, want ErrMalformed", tt.name, err)
		}
	}
}
