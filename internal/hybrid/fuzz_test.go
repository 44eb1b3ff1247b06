package hybrid

import (
	"bytes"
	"testing"

	"github.com/qkms/qkms/internal/qkd"
)

// Every decoder of network input: never panics, and what it accepts
// encodes back to exactly the input.

type fuzzSeeds struct {
	offer, header, step, path, certPEM []byte
}

func newFuzzSeeds(f *testing.F) fuzzSeeds {
	p := newTestPKI(f, MLDSA44, "A", "B")
	o, _ := p.offerFor(f, MLKEM768, "A", "B")
	h, _ := sealFor(f, p, HKDFSHA3256, 2, o)
	steps := signPath(f, p, "S1", "b", make([]byte, 32), []qkd.NodeID{"A", "B"})
	c, err := ParseCertificate(p.nodes["A"].cert)
	if err != nil {
		f.Fatal(err)
	}
	var s fuzzSeeds
	for _, e := range []struct {
		dst *[]byte
		enc func() ([]byte, error)
	}{{&s.offer, o.Marshal}, {&s.header, h.Marshal}, {&s.step, steps[0].Marshal},
		{&s.path, func() ([]byte, error) { return MarshalPath(steps) }}, {&s.certPEM, c.EncodePEM}} {
		if *e.dst, err = e.enc(); err != nil {
			f.Fatal(err)
		}
	}
	return s
}

func addSeeds(f *testing.F, valid []byte) {
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x01, 0x60})
}

func FuzzUnmarshalOffer(f *testing.F) {
	addSeeds(f, newFuzzSeeds(f).offer)
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := UnmarshalOffer(b)
		if err != nil {
			return
		}
		if again, err := o.Marshal(); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted offer re-encodes differently (%v)", err)
		}
	})
}

func FuzzUnmarshalHeader(f *testing.F) {
	addSeeds(f, newFuzzSeeds(f).header)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := UnmarshalHeader(b)
		if err != nil {
			return
		}
		if again, err := h.Marshal(); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted header re-encodes differently (%v)", err)
		}
		if _, err := h.TranscriptHash(); err != nil {
			t.Fatalf("TranscriptHash of an accepted header: %v", err)
		}
	})
}

func FuzzUnmarshalPathStep(f *testing.F) {
	addSeeds(f, newFuzzSeeds(f).step)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalPathStep(b)
		if err != nil {
			return
		}
		if again, err := s.Marshal(); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted path step re-encodes differently (%v)", err)
		}
	})
}

func FuzzUnmarshalPath(f *testing.F) {
	addSeeds(f, newFuzzSeeds(f).path)
	f.Fuzz(func(t *testing.T, b []byte) {
		steps, err := UnmarshalPath(b)
		if err != nil {
			return
		}
		if again, err := MarshalPath(steps); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted path re-encodes differently (%v)", err)
		}
	})
}

func FuzzParseCertificatePEM(f *testing.F) {
	s := newFuzzSeeds(f)
	f.Add(s.certPEM)
	f.Add(append([]byte("text before\n"), s.certPEM...))
	f.Add(bytes.Replace(s.certPEM, []byte("CERTIFICATE"), []byte("PRIVATE KEY"), 2))
	f.Add([]byte("-----BEGIN QKMS ML-DSA CERTIFICATE-----\noA==\n-----END QKMS ML-DSA CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCertificatePEM(b)
		if err != nil {
			return
		}
		der, err := decodePEM(b, PEMCertificate)
		if err != nil {
			t.Fatalf("ParseCertificatePEM accepted what decodePEM refuses: %v", err)
		}
		again, err := c.Marshal()
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("accepted certificate re-encodes differently (%v)", err)
		}
		p, err := c.EncodePEM()
		if err != nil {
			t.Fatal(err)
		}
		if c2, err := ParseCertificatePEM(p); err != nil || c2.Serial != c.Serial || c2.Subject != c.Subject {
			t.Fatalf("EncodePEM output does not parse back: %v", err)
		}
	})
}
