package hybrid

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// sealFor seals a batch of n keys from A to the given offers.
func sealFor(t testing.TB, p *testPKI, comb string, n int, offers ...*Offer) (*Header, secret.Bytes) {
	t.Helper()
	a := p.nodes["A"]
	h, r, err := Seal(p.v, SealParams{Combiner: comb, Stream: "S1", Step: "batch-1", Source: "A", SizeBits: 256,
		KeyIDs: keyIDs(n), Offers: offers, Key: a.key, Cert: a.cert}, testNow)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return h, r
}

// qkdKeys returns n relayed QKD keys of 32 bytes, as both ends hold them.
func qkdKeys(n int) []secret.Bytes {
	ks := make([]secret.Bytes, n)
	for i := range ks {
		ks[i] = secret.From(bytes.Repeat([]byte{byte(i + 1)}, 32))
	}
	return ks
}

func TestRoundTrip(t *testing.T) {
	al := Algorithms()
	for _, kem := range al.KEMs {
		for _, sig := range al.Signatures {
			for _, comb := range al.Combiners {
				t.Run(kem+"/"+sig+"/"+comb, func(t *testing.T) {
					roundTrip(t, kem, sig, comb)
				})
			}
		}
	}
}

func roundTrip(t *testing.T, kem, sig, comb string) {
	p := newTestPKI(t, sig, "A", "B")
	o, dk := p.offerFor(t, kem, "A", "B")
	defer dk.Wipe()
	ob, err := o.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	o2, err := UnmarshalOffer(ob)
	if err != nil {
		t.Fatalf("UnmarshalOffer: %v", err)
	}
	h, rS := sealFor(t, p, comb, 4, o2)
	hb, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h2, err := UnmarshalHeader(hb)
	if err != nil {
		t.Fatalf("UnmarshalHeader: %v", err)
	}
	if diff := cmp.Diff(h, h2); diff != "" {
		t.Fatalf("header round trip (-sent +received):\n%s", diff)
	}
	rD, err := Open(p.v, h2, "B", lookupOf(o.KeyID, dk), testNow)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !rS.Equal(rD) {
		t.Fatal("Open recovered another R than Seal drew")
	}
	if h2.KEM != kem || h2.SigAlg != sig || h2.Combiner != comb {
		t.Errorf("header algorithms = %s %s %s, want %s %s %s", h2.KEM, h2.SigAlg, h2.Combiner, kem, sig, comb)
	}
	keysS, err := CombineKeys(h, rS, qkdKeys(4))
	if err != nil {
		t.Fatal(err)
	}
	keysD, err := CombineKeys(h2, rD, qkdKeys(4))
	if err != nil {
		t.Fatal(err)
	}
	for i := range keysS {
		if !keysS[i].Equal(keysD[i]) || keysS[i].Len() != 32 {
			t.Errorf("key %d differs between the ends or has length %d", i, keysS[i].Len())
		}
		if keysS[i].Equal(qkdKeys(4)[i]) {
			t.Errorf("key %d is the relayed QKD key", i)
		}
	}
	if keysS[0].Equal(keysS[1]) {
		t.Error("two keys of a batch are equal")
	}
}

func TestMulticast(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B", "C")
	oB, dkB := p.offerFor(t, MLKEM768, "A", "B")
	oC, dkC := p.offerFor(t, MLKEM768, "A", "C")
	h, r := sealFor(t, p, XORSHAKE256, 2, oB, oC)
	for _, d := range []struct {
		n  qkd.NodeID
		o  *Offer
		dk *DecapKey
	}{{"B", oB, dkB}, {"C", oC, dkC}} {
		got, err := Open(p.v, h, d.n, lookupOf(d.o.KeyID, d.dk), testNow)
		if err != nil {
			t.Fatalf("Open at %s: %v", d.n, err)
		}
		if !got.Equal(r) {
			t.Errorf("Open at %s recovered another R", d.n)
		}
	}
	// B's key cannot open C's share.
	if _, err := Open(p.v, h, "C", lookupOf(oC.KeyID, dkB), testNow); !errors.Is(err, ErrUnknownOffer) {
		t.Errorf("Open at C with B's key = %v, want ErrUnknownOffer", err)
	}
}

func TestOpenRejects(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B", "C")
	o, dk := p.offerFor(t, MLKEM768, "A", "B")
	h, _ := sealFor(t, p, XORSHAKE256, 3, o)
	enc, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte) { b[len(b)/2] ^= 1 }
	tests := []struct {
		name   string
		mutate func(h *Header)
		want   error
	}{
		{"KEM", func(h *Header) { h.KEM = MLKEM1024 }, ErrBadSignature},
		{"signature algorithm", func(h *Header) { h.SigAlg = MLDSA87 }, ErrBadSignature},
		{"combiner", func(h *Header) { h.Combiner = HKDFSHA3256 }, ErrBadSignature},
		{"stream", func(h *Header) { h.Stream = "S2" }, ErrBadSignature},
		{"step", func(h *Header) { h.Step = "batch-2" }, ErrBadSignature},
		{"source", func(h *Header) { h.Source = "C" }, ErrWrongSubject},
		{"size", func(h *Header) { h.SizeBits = 512 }, ErrBadSignature},
		{"key ID", func(h *Header) { h.KeyIDs[1][3] ^= 1 }, ErrBadSignature},
		{"key ID dropped", func(h *Header) { h.KeyIDs = h.KeyIDs[:2] }, ErrBadSignature},
		{"key ID repeated", func(h *Header) { h.KeyIDs[1] = h.KeyIDs[0] }, ErrMalformed},
		{"recipient", func(h *Header) { h.Recipients[0].Dest = "C" }, ErrBadSignature},
		{"offer key ID", func(h *Header) { h.Recipients[0].OfferKeyID = "x" }, ErrBadSignature},
		{"encapsulation key hash", func(h *Header) { flip(h.Recipients[0].EKHash) }, ErrBadSignature},
		{"ciphertext", func(h *Header) { flip(h.Recipients[0].CT) }, ErrBadSignature},
		{"wrap", func(h *Header) { flip(h.Recipients[0].Wrap) }, ErrBadSignature},
		{"wrap length", func(h *Header) { h.Recipients[0].Wrap = h.Recipients[0].Wrap[:31] }, ErrMalformed},
		{"signature", func(h *Header) { flip(h.Sig) }, ErrBadSignature},
		{"signature length", func(h *Header) { h.Sig = h.Sig[:100] }, ErrBadSignature},
		{"certificate of another node", func(h *Header) { h.Cert = p.nodes["C"].cert }, ErrWrongSubject},
		{"certificate and source of another node", func(h *Header) { h.Cert, h.Source = p.nodes["C"].cert, "C" }, ErrBadSignature},
		{"certificate", func(h *Header) { flip(h.Cert) }, ErrBadSignature},
		{"certificate truncated", func(h *Header) { h.Cert = h.Cert[:100] }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := UnmarshalHeader(enc)
			if err != nil {
				t.Fatal(err)
			}
			tt.mutate(h)
			r, err := Open(p.v, h, "B", lookupOf(o.KeyID, dk), testNow)
			if !errors.Is(err, tt.want) {
				t.Errorf("Open(tampered %s) = %v, want %v", tt.name, err, tt.want)
			}
			if r.Len() != 0 {
				t.Errorf("Open(tampered %s) returned a secret", tt.name)
			}
		})
	}
}

func TestOpenRefusesCertificates(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B")
	o, dk := p.offerFor(t, MLKEM768, "A", "B")
	h, _ := sealFor(t, p, XORSHAKE256, 1, o)

	crl, err := IssueRevocationList(p.caKey, "qkms-ca", 1, testNow, []RevokedEntry{{"A", 1}})
	if err != nil {
		t.Fatal(err)
	}
	revoking, err := NewVerifier(p.caKey.Public(), MLDSA65, crl)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := newTestPKI(t, MLDSA44)
	tests := []struct {
		name string
		v    *Verifier
		now  time.Time
		want error
	}{
		{"expired", p.v, testNow.Add(2 * time.Hour), ErrExpired},
		{"not yet valid", p.v, testNow.Add(-2 * time.Hour), ErrExpired},
		{"revoked", revoking, testNow, ErrRevoked},
		{"other CA", otherCA.v, testNow, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(tt.v, h, "B", lookupOf(o.KeyID, dk), tt.now); !errors.Is(err, tt.want) {
				t.Errorf("Open = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOpenRecipientAndKey(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B", "C")
	o, dk := p.offerFor(t, MLKEM768, "A", "B")
	h, _ := sealFor(t, p, XORSHAKE256, 1, o)
	other, err := kem768.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other1024, err := kem1024.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		self   qkd.NodeID
		lookup DecapKeyLookup
		want   error
	}{
		{"not a recipient", "C", lookupOf(o.KeyID, dk), ErrNotRecipient},
		{"unknown offer", "B", lookupOf("other", dk), ErrUnknownOffer},
		{"another key", "B", lookupOf(o.KeyID, other), ErrUnknownOffer},
		{"another KEM", "B", lookupOf(o.KeyID, other1024), ErrUnknownOffer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(p.v, h, tt.self, tt.lookup, testNow); !errors.Is(err, tt.want) {
				t.Errorf("Open = %v, want %v", err, tt.want)
			}
		})
	}
}

// A header signed properly but naming an algorithm this node lacks is
// ErrUnsupported, not a signature failure.
func TestOpenUnsupported(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B")
	o, dk := p.offerFor(t, MLKEM768, "A", "B")
	for _, tt := range []struct {
		name   string
		mutate func(h *Header)
	}{
		{"KEM", func(h *Header) { h.KEM = "ML-KEM-512" }},
		{"combiner", func(h *Header) { h.Combiner = "xor-md5" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := sealFor(t, p, XORSHAKE256, 1, o)
			tt.mutate(h)
			body, err := h.body()
			if err != nil {
				t.Fatal(err)
			}
			if h.Sig, err = p.nodes["A"].key.Sign(body, contextHybridHeader); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(p.v, h, "B", lookupOf(o.KeyID, dk), testNow); !errors.Is(err, ErrUnsupported) {
				t.Errorf("Open = %v, want ErrUnsupported", err)
			}
		})
	}
}

func TestSealRejects(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B", "C")
	o, _ := p.offerFor(t, MLKEM768, "A", "B")
	oC, _ := p.offerFor(t, MLKEM1024, "A", "C")
	fromC, _ := p.offerFor(t, MLKEM768, "C", "B")
	tampered := *o
	tampered.Expires++
	good := func() SealParams {
		a := p.nodes["A"]
		return SealParams{Stream: "S1", Step: "b", Source: "A", SizeBits: 256, KeyIDs: keyIDs(2),
			Offers: []*Offer{o}, Key: a.key, Cert: a.cert}
	}
	tests := []struct {
		name   string
		mutate func(*SealParams)
		now    time.Time
		want   error
	}{
		{"combiner", func(s *SealParams) { s.Combiner = "xor" }, testNow, ErrUnsupported},
		{"no offer", func(s *SealParams) { s.Offers = nil }, testNow, ErrMalformed},
		{"tampered offer", func(s *SealParams) { s.Offers = []*Offer{&tampered} }, testNow, ErrBadSignature},
		{"offer to another source", func(s *SealParams) { s.Offers = []*Offer{fromC} }, testNow, ErrMalformed},
		{"mixed KEMs", func(s *SealParams) { s.Offers = []*Offer{o, oC} }, testNow, ErrMalformed},
		{"repeated destination", func(s *SealParams) { s.Offers = []*Offer{o, o} }, testNow, ErrMalformed},
		{"expired offer", func(*SealParams) {}, testNow.Add(2 * time.Minute), ErrOfferExpired},
		{"certificate of another node", func(s *SealParams) { s.Cert = p.nodes["C"].cert }, testNow, ErrWrongSubject},
		{"key of another node", func(s *SealParams) { s.Key = p.nodes["C"].key }, testNow, ErrWrongSubject},
		{"no key IDs", func(s *SealParams) { s.KeyIDs = nil }, testNow, ErrMalformed},
		{"size not bytes", func(s *SealParams) { s.SizeBits = 255 }, testNow, ErrMalformed},
		{"size too large for HKDF", func(s *SealParams) { s.Combiner, s.SizeBits = HKDFSHA3256, MaxSizeBits }, testNow, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := good()
			tt.mutate(&sp)
			h, r, err := Seal(p.v, sp, tt.now)
			if !errors.Is(err, tt.want) || h != nil || r.Len() != 0 {
				t.Errorf("Seal = %v, %v, want %v", h, err, tt.want)
			}
		})
	}
}

func TestVerifyOfferRejects(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B", "C")
	o, _ := p.offerFor(t, MLKEM768, "A", "B")
	tests := []struct {
		name   string
		mutate func(o *Offer)
		want   error
	}{
		{"stream", func(o *Offer) { o.Stream = "S2" }, ErrBadSignature},
		{"source", func(o *Offer) { o.Source = "C" }, ErrBadSignature},
		{"destination", func(o *Offer) { o.Dest = "C" }, ErrWrongSubject},
		{"KEM", func(o *Offer) { o.KEM = MLKEM1024 }, ErrBadSignature},
		{"key ID", func(o *Offer) { o.KeyID = "00" }, ErrBadSignature},
		{"encapsulation key", func(o *Offer) { o.EncapKey[5] ^= 1 }, ErrBadSignature},
		{"expiry", func(o *Offer) { o.Expires += 1000 }, ErrBadSignature},
		{"certificate of another node", func(o *Offer) { o.Cert = p.nodes["C"].cert }, ErrWrongSubject},
		{"signature", func(o *Offer) { o.Sig[7] ^= 1 }, ErrBadSignature},
		{"no signature", func(o *Offer) { o.Sig = nil }, ErrMalformed},
		{"source is destination", func(o *Offer) { o.Source = o.Dest }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *o
			c.EncapKey, c.Sig = bytes.Clone(o.EncapKey), bytes.Clone(o.Sig)
			tt.mutate(&c)
			if err := VerifyOffer(p.v, &c, testNow); !errors.Is(err, tt.want) {
				t.Errorf("VerifyOffer = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		err := VerifyOffer(p.v, o, testNow.Add(61*time.Second))
		if !errors.Is(err, ErrOfferExpired) || !errors.Is(err, ErrExpired) {
			t.Errorf("VerifyOffer = %v, want ErrOfferExpired (an ErrExpired)", err)
		}
	})
	t.Run("unsupported KEM", func(t *testing.T) {
		c := *o
		c.KEM = "ML-KEM-512"
		if err := SignOffer(&c, p.nodes["B"].key, c.Cert); err != nil {
			t.Fatal(err)
		}
		if err := VerifyOffer(p.v, &c, testNow); !errors.Is(err, ErrUnsupported) {
			t.Errorf("VerifyOffer = %v, want ErrUnsupported", err)
		}
	})
}

func TestCombineKeysChecks(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B")
	o, _ := p.offerFor(t, MLKEM768, "A", "B")
	h, r := sealFor(t, p, XORSHAKE256, 2, o)
	short := []secret.Bytes{secret.Make(32), secret.Make(16)}
	for _, tt := range []struct {
		name string
		keys []secret.Bytes
	}{{"count", qkdKeys(3)}, {"length", short}} {
		if got, err := CombineKeys(h, r, tt.keys); !errors.Is(err, ErrMalformed) || got != nil {
			t.Errorf("CombineKeys(%s) = %v, want ErrMalformed", tt.name, err)
		}
	}
}

func TestErrorsCarryNoSecrets(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B")
	o, dk := p.offerFor(t, MLKEM768, "A", "B")
	h, r := sealFor(t, p, XORSHAKE256, 1, o)
	seed, _ := dk.Seed()
	secrets := [][]byte{r.Expose(), seed.Expose()}
	h.Recipients[0].Wrap[0] ^= 1
	_, err1 := Open(p.v, h, "B", lookupOf(o.KeyID, dk), testNow)
	_, err2 := Combine(XORSHAKE256, secret.Make(0), r, make([]byte, 32), "s", qkd.KeyID{})
	_, err3 := kem768.NewDecapKeyFromSeed(seed.Expose()[:63])
	_, err4 := ParsePrivateKey(append([]byte{0xa2, 0x01}, seed.Expose()...))
	for _, err := range []error{err1, err2, err3, err4} {
		if err == nil {
			t.Fatal("expected an error")
		}
		for _, s := range secrets {
			if bytes.Contains([]byte(err.Error()), []byte(fmt.Sprintf("%x", s[:8]))) {
				t.Errorf("error %q shows key bytes", err)
			}
		}
	}
}
