package hybrid

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
)

func TestCertificate(t *testing.T) {
	for _, alg := range Algorithms().Signatures {
		t.Run(alg, func(t *testing.T) {
			p := newTestPKI(t, alg, "A")
			c, err := ParseCertificate(p.nodes["A"].cert)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Verify(p.caKey.Public(), alg, testNow); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			pemBytes, err := c.EncodePEM()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN "+PEMCertificate+"-----\n")) {
				t.Errorf("PEM starts %q", pemBytes[:40])
			}
			c2, err := ParseCertificatePEM(append([]byte("comment\n"), pemBytes...))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c, c2); diff != "" {
				t.Errorf("PEM round trip (-want +got):\n%s", diff)
			}
			got, err := p.v.VerifyCert(p.nodes["A"].cert, testNow)
			if err != nil || got.Subject != "A" || got.Alg != alg {
				t.Errorf("VerifyCert = %+v, %v", got, err)
			}
		})
	}
}

func TestCertificateVerifyRejects(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A")
	other := newTestPKI(t, MLDSA65)
	other.caKey, _ = dsa65.NewKeyFromSeed(seedFor("another CA"))
	c, err := ParseCertificate(p.nodes["A"].cert)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(c *Certificate)
		caPub  []byte
		caAlg  string
		now    time.Time
		want   error
	}{
		{"at NotBefore", func(*Certificate) {}, nil, MLDSA65, c.NotBefore, nil},
		{"at NotAfter", func(*Certificate) {}, nil, MLDSA65, c.NotAfter, nil},
		{"after NotAfter", func(*Certificate) {}, nil, MLDSA65, c.NotAfter.Add(time.Second), ErrExpired},
		{"before NotBefore", func(*Certificate) {}, nil, MLDSA65, c.NotBefore.Add(-time.Second), ErrExpired},
		{"other CA", func(*Certificate) {}, other.caKey.Public(), MLDSA65, testNow, ErrBadSignature},
		{"CA algorithm", func(*Certificate) {}, nil, MLDSA87, testNow, ErrMalformed},
		{"unknown CA algorithm", func(*Certificate) {}, nil, "RSA", testNow, ErrUnsupported},
		{"subject", func(c *Certificate) { c.Subject = "B" }, nil, MLDSA65, testNow, ErrBadSignature},
		{"serial", func(c *Certificate) { c.Serial++ }, nil, MLDSA65, testNow, ErrBadSignature},
		{"issuer", func(c *Certificate) { c.Issuer = "x" }, nil, MLDSA65, testNow, ErrBadSignature},
		{"algorithm", func(c *Certificate) { c.Alg = MLDSA44 }, nil, MLDSA65, testNow, ErrMalformed},
		{"unknown algorithm", func(c *Certificate) { c.Alg = "ML-DSA-99" }, nil, MLDSA65, testNow, ErrUnsupported},
		{"public key", func(c *Certificate) { c.PublicKey[9] ^= 1 }, nil, MLDSA65, testNow, ErrBadSignature},
		{"validity", func(c *Certificate) { c.NotAfter = c.NotAfter.Add(time.Hour) }, nil, MLDSA65, testNow, ErrBadSignature},
		{"version", func(c *Certificate) { c.Version = 2 }, nil, MLDSA65, testNow, ErrMalformed},
		{"signature", func(c *Certificate) { c.Signature[0] ^= 1 }, nil, MLDSA65, testNow, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c2 := *c
			c2.PublicKey, c2.Signature = bytes.Clone(c.PublicKey), bytes.Clone(c.Signature)
			tt.mutate(&c2)
			caPub := tt.caPub
			if caPub == nil {
				caPub = p.caKey.Public()
			}
			if err := c2.Verify(caPub, tt.caAlg, tt.now); !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestIssueCertificateRejects(t *testing.T) {
	p := newTestPKI(t, MLDSA65)
	pub := p.caKey.Public()
	tests := []struct {
		name             string
		subject, alg     string
		pub              []byte
		notBefore, after time.Time
		want             error
	}{
		{"no subject", "", MLDSA65, pub, testNow, testNow.Add(time.Hour), ErrMalformed},
		{"wrong key size", "A", MLDSA44, pub, testNow, testNow.Add(time.Hour), ErrMalformed},
		{"unknown algorithm", "A", "Ed25519", pub, testNow, testNow.Add(time.Hour), ErrUnsupported},
		{"empty period", "A", MLDSA65, pub, testNow, testNow, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := IssueCertificate(p.caKey, "qkms-ca", tt.subject, tt.alg, tt.pub, 1, tt.notBefore, tt.after)
			if !errors.Is(err, tt.want) {
				t.Errorf("IssueCertificate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRevocationList(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B")
	l, err := IssueRevocationList(p.caKey, "qkms-ca", 3, testNow,
		[]RevokedEntry{{"B", 2}, {"A", 9}, {"B", 2}, {"A", 1}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []RevokedEntry{{"A", 1}, {"A", 9}, {"B", 2}}; !cmp.Equal(l.Revoked, want) {
		t.Errorf("Revoked = %v, want %v (sorted, no repeats)", l.Revoked, want)
	}
	for _, tt := range []struct {
		subject string
		serial  uint64
		want    bool
	}{{"A", 1, true}, {"A", 2, false}, {"B", 2, true}, {"C", 1, false}} {
		if got := l.IsRevoked(tt.subject, tt.serial); got != tt.want {
			t.Errorf("IsRevoked(%s, %d) = %v, want %v", tt.subject, tt.serial, got, tt.want)
		}
	}
	if err := l.Verify(p.caKey.Public(), MLDSA65); err != nil {
		t.Fatal(err)
	}
	pemBytes, err := l.EncodePEM()
	if err != nil {
		t.Fatal(err)
	}
	l2, err := ParseRevocationListPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(l, l2); diff != "" {
		t.Errorf("PEM round trip (-want +got):\n%s", diff)
	}
	l2.Number++
	if err := l2.Verify(p.caKey.Public(), MLDSA65); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify(tampered) = %v, want ErrBadSignature", err)
	}
	if _, err := ParseRevocationListPEM(bytes.ReplaceAll(pemBytes, []byte("REVOCATION LIST"), []byte("CERTIFICATE"))); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseRevocationListPEM(certificate block) = %v, want ErrMalformed", err)
	}
	empty, err := IssueRevocationList(p.caKey, "qkms-ca", 1, testNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := empty.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRevocationList(enc); err != nil {
		t.Errorf("ParseRevocationList(empty list) = %v", err)
	}
}

func TestVerifier(t *testing.T) {
	p := newTestPKI(t, MLDSA65, "A", "B")
	crl1, err := IssueRevocationList(p.caKey, "qkms-ca", 1, testNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	crl2, err := IssueRevocationList(p.caKey, "qkms-ca", 2, testNow, []RevokedEntry{{"B", 2}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(p.caKey.Public(), MLDSA65, crl1)
	if err != nil {
		t.Fatal(err)
	}
	certB := p.nodes["B"].cert
	if _, err := v.VerifyCert(certB, testNow); err != nil {
		t.Fatalf("VerifyCert(B) = %v", err)
	}
	// A cached certificate is still checked for revocation and time.
	if err := v.SetRevocationList(crl2); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyCert(certB, testNow); !errors.Is(err, ErrRevoked) {
		t.Errorf("VerifyCert(revoked B) = %v, want ErrRevoked", err)
	}
	if _, err := v.VerifyCert(p.nodes["A"].cert, testNow.Add(3*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("VerifyCert(expired A) = %v, want ErrExpired", err)
	}
	if err := v.SetRevocationList(crl1); !errors.Is(err, ErrStaleRevocationList) {
		t.Errorf("SetRevocationList(older) = %v, want ErrStaleRevocationList", err)
	}
	forged := *crl2
	forged.Revoked = nil
	if err := v.SetRevocationList(&forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("SetRevocationList(forged) = %v, want ErrBadSignature", err)
	}
	bad := bytes.Clone(certB)
	bad[len(bad)-5] ^= 1
	if _, err := v.VerifyCert(bad, testNow); !errors.Is(err, ErrBadSignature) {
		t.Errorf("VerifyCert(bad signature) = %v, want ErrBadSignature", err)
	}
	if _, err := v.VerifyCert(bad, testNow); !errors.Is(err, ErrBadSignature) {
		t.Errorf("VerifyCert(bad signature, again) = %v, want ErrBadSignature (never cached)", err)
	}
	got, err := v.VerifyCert(p.nodes["A"].cert, testNow)
	if err != nil {
		t.Fatal(err)
	}
	got.PublicKey[0] ^= 1 // the caller's copy
	if _, err := v.VerifyCert(p.nodes["A"].cert, testNow); err != nil {
		t.Errorf("VerifyCert after the caller changed its copy = %v", err)
	}
}

// Run with -race: lookups, cache fills and a revocation list update at once.
func TestVerifierConcurrent(t *testing.T) {
	p := newTestPKI(t, MLDSA44, "A", "B", "C")
	crl, err := IssueRevocationList(p.caKey, "qkms-ca", 1, testNow, []RevokedEntry{{"C", 3}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := p.v.SetRevocationList(crl); err != nil {
			t.Error(err)
		}
	})
	for range 8 {
		wg.Go(func() {
			for range 20 {
				for _, n := range []qkd.NodeID{"A", "B", "C"} {
					_, err := p.v.VerifyCert(p.nodes[n].cert, testNow)
					if err != nil && (n != "C" || !errors.Is(err, ErrRevoked)) {
						t.Errorf("VerifyCert(%s) = %v", n, err)
					}
				}
			}
		})
	}
	wg.Wait()
	if _, err := p.v.VerifyCert(p.nodes["C"].cert, testNow); !errors.Is(err, ErrRevoked) {
		t.Errorf("VerifyCert(C) after the update = %v, want ErrRevoked", err)
	}
}

func TestPrivateKeyEncoding(t *testing.T) {
	for _, alg := range Algorithms().Signatures {
		t.Run(alg, func(t *testing.T) {
			s, _ := SignerByName(alg)
			k, pub, err := s.GenerateKey(nil)
			if err != nil {
				t.Fatal(err)
			}
			pemKey, err := EncodePrivateKeyPEM(k)
			if err != nil {
				t.Fatal(err)
			}
			defer pemKey.Wipe()
			k2, err := ParsePrivateKeyPEM(pemKey.Expose())
			if err != nil {
				t.Fatal(err)
			}
			// The expanded form (no seed) loads too.
			raw, err := k.k.sk.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			expanded, err := encMode.Marshal(privateKeyWire{Alg: alg, Key: raw})
			if err != nil {
				t.Fatal(err)
			}
			k3, err := ParsePrivateKey(expanded)
			if err != nil {
				t.Fatal(err)
			}
			for i, key := range []*PrivateKey{k2, k3} {
				sig, err := key.Sign([]byte("m"), "ctx")
				if err != nil {
					t.Fatal(err)
				}
				if !s.Verify(pub, []byte("m"), "ctx", sig) || !bytes.Equal(key.Public(), pub) {
					t.Errorf("restored key %d does not sign for the original public key", i)
				}
			}
			again, err := MarshalPrivateKey(k3)
			if err != nil || !bytes.Equal(again.Expose(), expanded) {
				t.Errorf("MarshalPrivateKey(expanded key) changed its encoding: %v", err)
			}
		})
	}
}

func TestParsePrivateKeyRejects(t *testing.T) {
	mk := func(w privateKeyWire) []byte { b, _ := encMode.Marshal(w); return b }
	seed := make([]byte, 32)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"garbage", []byte{0xff, 0x00}, ErrMalformed},
		{"unknown algorithm", mk(privateKeyWire{Alg: "ML-DSA-1", Seed: seed}), ErrUnsupported},
		{"neither", mk(privateKeyWire{Alg: MLDSA65}), ErrMalformed},
		{"both", mk(privateKeyWire{Alg: MLDSA65, Seed: seed, Key: seed}), ErrMalformed},
		{"short seed", mk(privateKeyWire{Alg: MLDSA65, Seed: seed[:31]}), ErrMalformed},
		{"short key", mk(privateKeyWire{Alg: MLDSA65, Key: seed}), ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := ParsePrivateKey(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("ParsePrivateKey(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := ParsePrivateKeyPEM([]byte("-----BEGIN QKMS ML-DSA CERTIFICATE-----\n-----END QKMS ML-DSA CERTIFICATE-----\n")); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParsePrivateKeyPEM(certificate) = %v, want ErrMalformed", err)
	}
}

func TestSignatures(t *testing.T) {
	for _, alg := range Algorithms().Signatures {
		s, _ := SignerByName(alg)
		k, err := s.NewKeyFromSeed(seedFor(alg))
		if err != nil {
			t.Fatal(err)
		}
		d1, _ := k.SignDeterministic([]byte("m"), "c")
		d2, _ := k.SignDeterministic([]byte("m"), "c")
		h1, _ := k.Sign([]byte("m"), "c")
		h2, _ := k.Sign([]byte("m"), "c")
		if !bytes.Equal(d1, d2) || bytes.Equal(h1, h2) || len(d1) != s.SignatureSize() {
			t.Errorf("%s: deterministic signatures equal = %v, hedged equal = %v", alg, bytes.Equal(d1, d2), bytes.Equal(h1, h2))
		}
		pub := k.Public()
		for _, sig := range [][]byte{d1, h1} {
			if !s.Verify(pub, []byte("m"), "c", sig) {
				t.Errorf("%s: signature does not verify", alg)
			}
			if s.Verify(pub, []byte("m"), "qkms-cert-v1", sig) || s.Verify(pub, []byte("m"), "", sig) {
				t.Errorf("%s: signature verifies under another context", alg)
			}
			if s.Verify(pub, []byte("n"), "c", sig) || s.Verify(pub[:10], []byte("m"), "c", sig) {
				t.Errorf("%s: signature verifies for another message or key", alg)
			}
		}
		k.Wipe()
		if _, err := k.Sign([]byte("m"), "c"); !errors.Is(err, ErrWiped) || k.Public() != nil {
			t.Errorf("%s: Sign after Wipe = %v, want ErrWiped", alg, err)
		}
	}
	if _, err := SignerByName("ML-DSA-66"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("SignerByName(ML-DSA-66) = %v, want ErrUnsupported", err)
	}
}

func TestKEMs(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, KEMSeedSize)
	for _, name := range Algorithms().KEMs {
		k, err := KEMByName(name)
		if err != nil {
			t.Fatal(err)
		}
		dk, err := k.NewDecapKeyFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		s, err := dk.Seed()
		if err != nil || !bytes.Equal(s.Expose(), seed) {
			t.Errorf("%s: Seed() = %v, want the seed", name, err)
		}
		ss, ct, err := k.Encapsulate(dk.EncapsulationKey())
		if err != nil || len(ct) != k.CiphertextSize() || len(dk.EncapsulationKey()) != k.EncapsulationKeySize() {
			t.Fatalf("%s: Encapsulate = %v", name, err)
		}
		got, err := dk.Decapsulate(ct)
		if err != nil || !got.Equal(ss) || ss.Len() != SharedSecretSize {
			t.Errorf("%s: Decapsulate = %v, secrets equal %v", name, err, got.Equal(ss))
		}
		if _, err := dk.Decapsulate(ct[1:]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decapsulate(short) = %v, want ErrMalformed", name, err)
		}
		badEK := bytes.Repeat([]byte{0xff}, k.EncapsulationKeySize()) // coefficients ≥ q
		if _, _, err := k.Encapsulate(badEK); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Encapsulate(invalid key) = %v, want ErrMalformed", name, err)
		}
		if _, err := k.NewDecapKeyFromSeed(seed[:32]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: NewDecapKeyFromSeed(32 bytes) = %v, want ErrMalformed", name, err)
		}
		dk.Wipe()
		if _, err := dk.Decapsulate(ct); !errors.Is(err, ErrWiped) || dk.EncapsulationKey() != nil || dk.Algorithm() != "" {
			t.Errorf("%s: Decapsulate after Wipe = %v, want ErrWiped", name, err)
		}
		dk.Wipe() // twice is fine
	}
	if _, err := KEMByName("X25519"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("KEMByName(X25519) = %v, want ErrUnsupported", err)
	}
	if _, err := CombinerByName("xor"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("CombinerByName(xor) = %v, want ErrUnsupported", err)
	}
}
