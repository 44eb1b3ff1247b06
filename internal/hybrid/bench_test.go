package hybrid

import (
	"fmt"
	"testing"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// benchBatch is the number of keys of one relay batch in the benchmarks.
const benchBatch = 16

func benchAlgs() []struct{ kem, sig string } {
	return []struct{ kem, sig string }{{MLKEM768, MLDSA65}, {MLKEM1024, MLDSA87}, {MLKEM768, MLDSA44}}
}

func BenchmarkSeal(b *testing.B) {
	for _, a := range benchAlgs() {
		b.Run(a.kem+"/"+a.sig, func(b *testing.B) {
			p := newTestPKI(b, a.sig, "A", "B")
			o, _ := p.offerFor(b, a.kem, "A", "B")
			sp := SealParams{Stream: "S1", Step: "batch-1", Source: "A", SizeBits: 256, KeyIDs: keyIDs(benchBatch),
				Offers: []*Offer{o}, Key: p.nodes["A"].key, Cert: p.nodes["A"].cert}
			var h *Header
			for b.Loop() {
				var r secret.Bytes
				var err error
				if h, r, err = Seal(p.v, sp, testNow); err != nil {
					b.Fatal(err)
				}
				r.Wipe()
			}
			reportSize(b, "header-B", h.Marshal)
			reportSize(b, "offer-B", o.Marshal)
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, a := range benchAlgs() {
		b.Run(a.kem+"/"+a.sig, func(b *testing.B) {
			p := newTestPKI(b, a.sig, "A", "B")
			o, dk := p.offerFor(b, a.kem, "A", "B")
			h, _ := sealFor(b, p, XORSHAKE256, benchBatch, o)
			lookup := lookupOf(o.KeyID, dk)
			for b.Loop() {
				r, err := Open(p.v, h, "B", lookup, testNow)
				if err != nil {
					b.Fatal(err)
				}
				r.Wipe()
			}
			reportSize(b, "header-B", h.Marshal)
		})
	}
}

func BenchmarkVerifyOffer(b *testing.B) {
	p := newTestPKI(b, MLDSA65, "A", "B")
	o, _ := p.offerFor(b, MLKEM768, "A", "B")
	for b.Loop() {
		if err := VerifyOffer(p.v, o, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignStep(b *testing.B) {
	for _, alg := range []string{MLDSA44, MLDSA65, MLDSA87} {
		b.Run(alg, func(b *testing.B) {
			p := newTestPKI(b, alg, "B")
			th := make([]byte, 32)
			in := PathStep{Hop: 1, Node: "B", Prev: "A", Next: "C", Cert: p.nodes["B"].cert}
			var s PathStep
			for b.Loop() {
				var err error
				if s, err = SignStep(p.nodes["B"].key, "S1", "batch-1", th, in); err != nil {
					b.Fatal(err)
				}
			}
			reportSize(b, "step-B", s.Marshal)
		})
	}
}

// BenchmarkVerifyPath checks a path of 5 hops (6 nodes), certificates cached.
func BenchmarkVerifyPath(b *testing.B) {
	for _, alg := range []string{MLDSA44, MLDSA65, MLDSA87} {
		b.Run(alg, func(b *testing.B) {
			route := []qkd.NodeID{"A", "B", "C", "D", "E", "F"}
			p := newTestPKI(b, alg, route...)
			th := make([]byte, 32)
			steps := signPath(b, p, "S1", "batch-1", th, route)
			for b.Loop() {
				if err := VerifyPath(p.v, "S1", "batch-1", th, steps, route, testNow); err != nil {
					b.Fatal(err)
				}
			}
			reportSize(b, "path-B", func() ([]byte, error) { return MarshalPath(steps) })
		})
	}
}

func BenchmarkCombine(b *testing.B) {
	r := secret.From(make([]byte, 32))
	th := make([]byte, 32)
	for _, alg := range Algorithms().Combiners {
		for _, n := range []int{32, 256} {
			b.Run(fmt.Sprintf("%s/%dB", alg, n), func(b *testing.B) {
				k := secret.From(make([]byte, n))
				b.SetBytes(int64(n))
				for b.Loop() {
					out, err := Combine(alg, k, r, th, "S1", qkd.KeyID{1})
					if err != nil {
						b.Fatal(err)
					}
					out.Wipe()
				}
			})
		}
	}
}

func reportSize(b *testing.B, unit string, enc func() ([]byte, error)) {
	buf, err := enc()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(buf)), unit)
}
