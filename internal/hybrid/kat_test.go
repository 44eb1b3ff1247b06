package hybrid

import (
	"bytes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha3"
	"encoding/hex"
	"testing"

	"github.com/cloudflare/circl/kem"
	circl1024 "github.com/cloudflare/circl/kem/mlkem/mlkem1024"
	circl768 "github.com/cloudflare/circl/kem/mlkem/mlkem768"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

type combinerKAT struct {
	name, k, r, th, stream, keyID, xor, kdf string
}

// The vectors below were computed independently of this package's Go code
// by testdata/kat.py (Python hashlib SHAKE256 and SHA3-256, hmac, and an
// HKDF written there from RFC 5869 and checked against its Appendix A.1);
// they are its output, pasted unchanged.
var combinerKATs = []combinerKAT{
	{"32-byte key", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", "3aadc1c59e8ae981d8d31fbc218a0bbf23356c10a32ae39b2cfb55d18afcff68", "A>B", "00112233445566778899aabbccddeeff",
		"ec779ab9a26caa2713a0073c73c63e94923ca072168b3b550fe47f17fdd6bbd3",
		"c7db80147a49cd49b71311cbc40e2b1fe1da7691fd31225ae5ba9000b61fe2f9"},
	{"1-byte key, empty stream", "ff", "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "", "00000000000000000000000000000000",
		"d6",
		"cc"},
	{"100-byte key, UTF-8 stream", "00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b9299a0a7aeb5", "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f", "b89b5a70355ef2c062a6dbaeaaa5d02b46491839cde3de42757c886b5ce44f61", "stréam-ü", "6ba7b8109dad11d180b400c04fd430c8",
		"933ac7d4b6200158545a78c0fd113e89c2197adeab16cfb4fe88770fe24ec6de0d500a4cc78b9f349670f280ea03e38edaa4e77fb3b675c2019dc6b1ba1876f8060c9f65f89ae0f93f4002bd42d92aafe7e601533ccd0ad1b6a3a4cdb7be3c2ec4473e55",
		"e3f2607ea26f4e00e8f86a8b74a40e4820fcb1f35723ec2821c68d76fc55efb9353dee4fb8a6df9805c9d32b5e419b2c7d5071026152a69e69a067782f7e93edb2ec5e85853e5a937c02a09db70dd07ce1705bf79740bf79bd86b2b5fde3009dc164d0f3"},
}

// 8160-byte key: SHA3-256 of the xor-shake256 and hkdf-sha3-256 outputs
const bigXOR, bigKDF = "a9b80abd79cd8cc429cff16aa9cfa0f2c60db748c8d0220687267267673f64de", "f9b749fb9b72f93e5ffea193aa69517495948a62ef538946441b97c783469f85"
const bigTH = "b3ff06921e816ace25cf741c8d8dba8da111fbf22b3a264d792126c266e169a0"

// wrap: ss, H0, R, Wrap = R XOR SHAKE256(encode("qkms-wrap-v1", ss, H0))[:32]
const wrapSS, wrapH0, wrapR, wrapWant = "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f", "2d034117cac94b1ea520dae4d85b5f68e42d59adbc109d708557a3f75f9b093b", "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", "01ded6dd4635b5f035c175062d0f49973c0fc9aaf360127d1a8724fbe8a7056d"

// path message: SHA3-256(encode("A>C", "batch-7", TH, u64(1), "B", "A", "C"))
const pathTH, pathMsgHash = "2536f7ff02733c7380555c2d334d8a815fe27e383c4462af211f80cb171a512b", "abcb725b66e17b6922a9fcd0510801c7b3488c3b8a59bda80d5f4fbb61af3256"

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kid(t *testing.T, s string) qkd.KeyID {
	var id qkd.KeyID
	copy(id[:], unhex(t, s))
	return id
}

func TestCombinerKnownAnswers(t *testing.T) {
	for _, v := range combinerKATs {
		for _, c := range []struct{ alg, want string }{{XORSHAKE256, v.xor}, {HKDFSHA3256, v.kdf}} {
			t.Run(c.alg+"/"+v.name, func(t *testing.T) {
				got, err := Combine(c.alg, secret.From(unhex(t, v.k)), secret.From(unhex(t, v.r)),
					unhex(t, v.th), v.stream, kid(t, v.keyID))
				if err != nil {
					t.Fatal(err)
				}
				if h := hex.EncodeToString(got.Expose()); h != c.want {
					t.Errorf("Combine(%s, %s) = %s, want %s", c.alg, v.name, h, c.want)
				}
			})
		}
	}
}

func TestCombinerKnownAnswersLargest(t *testing.T) {
	k := make([]byte, maxHKDFBytes)
	for i := range k {
		k[i] = byte(i)
	}
	r := make([]byte, 32)
	for i := range r {
		r[i] = byte(0x40 + i)
	}
	for _, c := range []struct{ alg, want string }{{XORSHAKE256, bigXOR}, {HKDFSHA3256, bigKDF}} {
		got, err := Combine(c.alg, secret.From(k), secret.From(r), unhex(t, bigTH), "big",
			kid(t, "f0e0d0c0b0a090807060504030201000"))
		if err != nil {
			t.Fatal(err)
		}
		if h := sha3.Sum256(got.Expose()); hex.EncodeToString(h[:]) != c.want {
			t.Errorf("SHA3-256(Combine(%s, 8160 bytes)) = %x, want %s", c.alg, h, c.want)
		}
	}
	if _, err := Combine(HKDFSHA3256, secret.Make(maxHKDFBytes+1), secret.From(r), unhex(t, bigTH), "", qkd.KeyID{}); err == nil {
		t.Errorf("Combine(%s, %d bytes) succeeded, want an error", HKDFSHA3256, maxHKDFBytes+1)
	}
}

func TestWrapKnownAnswer(t *testing.T) {
	w := wrapMask(secret.From(unhex(t, wrapSS)), unhex(t, wrapH0))
	for i, b := range unhex(t, wrapR) {
		w[i] ^= b
	}
	if got := hex.EncodeToString(w); got != wrapWant {
		t.Errorf("wrap = %s, want %s", got, wrapWant)
	}
}

func TestPathMessageKnownAnswer(t *testing.T) {
	m := pathMessage("A>C", "batch-7", unhex(t, pathTH), &PathStep{Hop: 1, Node: "B", Prev: "A", Next: "C"})
	if h := sha3.Sum256(m); hex.EncodeToString(h[:]) != pathMsgHash {
		t.Errorf("SHA3-256(path message) = %x, want %s", h, pathMsgHash)
	}
}

// Both combiners need both inputs: changing only the QKD key, or only R,
// or the binding (transcript, stream, key ID), changes the output.
func TestCombinerDependsOnEveryInput(t *testing.T) {
	k, r, th := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	for _, alg := range Algorithms().Combiners {
		base, err := Combine(alg, secret.From(k), secret.From(r), th, "s", qkd.KeyID{1})
		if err != nil {
			t.Fatal(err)
		}
		other := func(b []byte) []byte { c := bytes.Clone(b); c[31] ^= 0x80; return c }
		variants := []struct {
			name     string
			k, r, th []byte
			stream   string
			id       qkd.KeyID
		}{
			{"QKD key", other(k), r, th, "s", qkd.KeyID{1}},
			{"R", k, other(r), th, "s", qkd.KeyID{1}},
			{"transcript hash", k, r, other(th), "s", qkd.KeyID{1}},
			{"stream", k, r, th, "t", qkd.KeyID{1}},
			{"key ID", k, r, th, "s", qkd.KeyID{2}},
		}
		for _, v := range variants {
			got, err := Combine(alg, secret.From(v.k), secret.From(v.r), v.th, v.stream, v.id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Equal(base) {
				t.Errorf("%s: output does not depend on the %s", alg, v.name)
			}
		}
	}
}

// The ML-KEM of crypto/mlkem and circl's derive the same keys from one seed
// and agree on derandomized encapsulation (FIPS 203 Encaps_internal): a
// cross-implementation known-answer test. want pins the SHA3-256 of the
// encapsulation key and of the ciphertext both produce.
func TestMLKEMCrossImplementation(t *testing.T) {
	seed := make([]byte, KEMSeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	m := bytes.Repeat([]byte{0x42}, 32)
	tests := []struct {
		name   string
		circl  kem.Scheme
		encaps func(dk *DecapKey) (ss, ct []byte, err error)
		wantEK string
		wantCT string
	}{
		{MLKEM768, circl768.Scheme(), func(dk *DecapKey) ([]byte, []byte, error) {
			ek, err := mlkem.NewEncapsulationKey768(dk.EncapsulationKey())
			if err != nil {
				return nil, nil, err
			}
			return mlkemtest.Encapsulate768(ek, m)
		}, wantEK768, wantCT768},
		{MLKEM1024, circl1024.Scheme(), func(dk *DecapKey) ([]byte, []byte, error) {
			ek, err := mlkem.NewEncapsulationKey1024(dk.EncapsulationKey())
			if err != nil {
				return nil, nil, err
			}
			return mlkemtest.Encapsulate1024(ek, m)
		}, wantEK1024, wantCT1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := KEMByName(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			dk, err := k.NewDecapKeyFromSeed(seed)
			if err != nil {
				t.Fatal(err)
			}
			pk, sk := tt.circl.DeriveKeyPair(seed)
			circlEK, err := pk.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dk.EncapsulationKey(), circlEK) {
				t.Fatal("crypto/mlkem and circl derive different encapsulation keys from one seed")
			}
			if h := sha3.Sum256(circlEK); hex.EncodeToString(h[:]) != tt.wantEK {
				t.Errorf("SHA3-256(encapsulation key) = %x, want %s", h, tt.wantEK)
			}
			ss, ct, err := tt.encaps(dk)
			if err != nil {
				t.Fatal(err)
			}
			circlCT, circlSS, err := tt.circl.EncapsulateDeterministically(pk, m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ct, circlCT) || !bytes.Equal(ss, circlSS) {
				t.Fatal("crypto/mlkem and circl encapsulate differently")
			}
			if h := sha3.Sum256(ct); hex.EncodeToString(h[:]) != tt.wantCT {
				t.Errorf("SHA3-256(ciphertext) = %x, want %s", h, tt.wantCT)
			}
			got, err := dk.Decapsulate(circlCT)
			if err != nil {
				t.Fatal(err)
			}
			circlGot, err := tt.circl.Decapsulate(sk, ct)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Expose(), ss) || !bytes.Equal(circlGot, ss) {
				t.Error("decapsulation disagrees with encapsulation")
			}
		})
	}
}

// Pinned from the two implementations above once they agreed (seed 00..3f,
// message 42..42); the external vectors are in acvp_test.go.
const (
	wantEK768  = "a24e16d8f8f9383a95b77050f4d9fd2f5733eec1d63ef3c23ebf9918173669a7"
	wantCT768  = "e9a0824664dba3f8f3c86ecb43a0c889030947ff01d276d04d46c204b62fc221"
	wantEK1024 = "61349e5c131a7e116a0463861d7d18663c5627c38c7147ddaadfd48acd7a4535"
	wantCT1024 = "332ad96959499e023f53a96dcb106525deb6a3fbcb674324fe432acca9b3d545"
)
