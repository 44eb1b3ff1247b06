package hybrid

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"

	"github.com/qkms/qkms/internal/secret"
)

// SignatureSeedSize is the size of an ML-DSA key generation seed (FIPS 204 ξ).
const SignatureSeedSize = 32

// SignatureScheme is one ML-DSA parameter set (FIPS 204), implemented by
// github.com/cloudflare/circl. Messages are signed with a context string
// (FIPS 204 §5.2) that separates the kinds of signed objects.
type SignatureScheme interface {
	Name() string
	PublicKeySize() int
	SignatureSize() int
	// GenerateKey draws a 32-byte seed from rand (crypto/rand if nil) and
	// derives the key pair from it; it returns the encoded public key too.
	GenerateKey(rand io.Reader) (*PrivateKey, []byte, error)
	// NewKeyFromSeed derives the key pair from a 32-byte seed.
	NewKeyFromSeed(seed []byte) (*PrivateKey, error)
	// ParsePublicKey decodes an encoded public key.
	ParsePublicKey(pub []byte) (*PublicKey, error)
	// Verify reports whether sig signs msg under pub with context.
	Verify(pub, msg []byte, context string, sig []byte) bool
}

// SignerByName returns the ML-DSA parameter set named name, or an error
// wrapping ErrUnsupported.
func SignerByName(name string) (SignatureScheme, error) {
	switch name {
	case MLDSA44:
		return dsa44, nil
	case MLDSA65:
		return dsa65, nil
	case MLDSA87:
		return dsa87, nil
	}
	return nil, unsupported("signature", name)
}

// mldsa adapts one circl parameter set. circl's generic sign.Scheme signs
// deterministically only, so hedged signing goes through the package's SignTo.
type mldsa struct {
	sign.Scheme
	signTo func(sk sign.PrivateKey, msg, ctx []byte, randomized bool, sig []byte) error
	wipe   func(sk sign.PrivateKey)
}

var (
	dsa44 = &mldsa{Scheme: mldsa44.Scheme(),
		signTo: func(sk sign.PrivateKey, m, c []byte, r bool, s []byte) error {
			return mldsa44.SignTo(sk.(*mldsa44.PrivateKey), m, c, r, s)
		},
		wipe: func(sk sign.PrivateKey) { *sk.(*mldsa44.PrivateKey) = mldsa44.PrivateKey{} },
	}
	dsa65 = &mldsa{Scheme: mldsa65.Scheme(),
		signTo: func(sk sign.PrivateKey, m, c []byte, r bool, s []byte) error {
			return mldsa65.SignTo(sk.(*mldsa65.PrivateKey), m, c, r, s)
		},
		wipe: func(sk sign.PrivateKey) { *sk.(*mldsa65.PrivateKey) = mldsa65.PrivateKey{} },
	}
	dsa87 = &mldsa{Scheme: mldsa87.Scheme(),
		signTo: func(sk sign.PrivateKey, m, c []byte, r bool, s []byte) error {
			return mldsa87.SignTo(sk.(*mldsa87.PrivateKey), m, c, r, s)
		},
		wipe: func(sk sign.PrivateKey) { *sk.(*mldsa87.PrivateKey) = mldsa87.PrivateKey{} },
	}
)

func (s *mldsa) GenerateKey(r io.Reader) (*PrivateKey, []byte, error) {
	if r == nil {
		r = rand.Reader
	}
	seed, err := secret.Random(r, SignatureSeedSize)
	if err != nil {
		return nil, nil, fmt.Errorf("hybrid: %s key generation: %w", s.Name(), err)
	}
	defer seed.Wipe()
	k, err := s.NewKeyFromSeed(seed.Expose())
	if err != nil {
		return nil, nil, err
	}
	return k, k.Public(), nil
}

func (s *mldsa) NewKeyFromSeed(seed []byte) (*PrivateKey, error) {
	if len(seed) != SignatureSeedSize {
		return nil, fmt.Errorf("%w: %s seed of %d bytes, want %d", ErrMalformed, s.Name(), len(seed), SignatureSeedSize)
	}
	_, sk := s.DeriveKey(seed)
	return newPrivateKey(s, sk, secret.From(seed))
}

// parsePrivateKey decodes a full (expanded) private key encoding.
func (s *mldsa) parsePrivateKey(b []byte) (*PrivateKey, error) {
	sk, err := s.UnmarshalBinaryPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s private key rejected", ErrMalformed, s.Name())
	}
	return newPrivateKey(s, sk, secret.Bytes{})
}

func (s *mldsa) ParsePublicKey(pub []byte) (*PublicKey, error) {
	pk, err := s.UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %s public key of %d bytes, want %d", ErrMalformed, s.Name(), len(pub), s.PublicKeySize())
	}
	return &PublicKey{s: s, raw: bytes.Clone(pub), pk: pk}, nil
}

func (s *mldsa) Verify(pub, msg []byte, context string, sig []byte) bool {
	pk, err := s.ParsePublicKey(pub)
	if err != nil {
		return false
	}
	return pk.Verify(msg, context, sig)
}

// PublicKey is a parsed ML-DSA public key; parsing expands the public
// matrix once, so verifying many signatures by one key is cheaper with it.
type PublicKey struct {
	s   *mldsa
	raw []byte
	pk  sign.PublicKey
}

// Algorithm returns the parameter set name.
func (p *PublicKey) Algorithm() string { return p.s.Name() }

// Bytes returns a copy of the encoded key.
func (p *PublicKey) Bytes() []byte { return bytes.Clone(p.raw) }

// Verify reports whether sig signs msg with context under p.
func (p *PublicKey) Verify(msg []byte, context string, sig []byte) bool {
	if len(sig) != p.s.SignatureSize() || len(context) > 255 {
		return false
	}
	return p.s.Scheme.Verify(p.pk, msg, sig, &sign.SignatureOpts{Context: context})
}

// PrivateKey is an ML-DSA private key. It prints as [REDACTED] in fmt,
// log/slog, encoding/json and encoding/text; MarshalPrivateKey encodes it
// for storage. Its owner calls Wipe when done.
type PrivateKey struct {
	redacted
	k *privateKey // nil after Wipe; behind a pointer so reflection shows no bytes
}

type privateKey struct {
	s    *mldsa
	sk   sign.PrivateKey
	pub  []byte
	seed secret.Bytes // empty if the key was loaded in expanded form
}

func newPrivateKey(s *mldsa, sk sign.PrivateKey, seed secret.Bytes) (*PrivateKey, error) {
	pub, err := sk.Public().(sign.PublicKey).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("hybrid: %s public key: %w", s.Name(), err)
	}
	return &PrivateKey{k: &privateKey{s: s, sk: sk, pub: pub, seed: seed}}, nil
}

// Algorithm returns the parameter set name ("ML-DSA-65", ...), or "" after Wipe.
func (k *PrivateKey) Algorithm() string {
	if k == nil || k.k == nil {
		return ""
	}
	return k.k.s.Name()
}

// Public returns a copy of the encoded public key.
func (k *PrivateKey) Public() []byte {
	if k == nil || k.k == nil {
		return nil
	}
	return bytes.Clone(k.k.pub)
}

// Sign returns a hedged (randomized, FIPS 204 default) signature of msg with
// context; the randomness comes from crypto/rand inside circl.
func (k *PrivateKey) Sign(msg []byte, context string) ([]byte, error) {
	return k.sign(msg, context, true)
}

// SignDeterministic returns the deterministic FIPS 204 signature of msg with
// context, for known-answer tests.
func (k *PrivateKey) SignDeterministic(msg []byte, context string) ([]byte, error) {
	return k.sign(msg, context, false)
}

func (k *PrivateKey) sign(msg []byte, context string, randomized bool) ([]byte, error) {
	if k == nil || k.k == nil {
		return nil, ErrWiped
	}
	sig := make([]byte, k.k.s.SignatureSize())
	if err := k.k.s.signTo(k.k.sk, msg, []byte(context), randomized, sig); err != nil {
		return nil, fmt.Errorf("hybrid: %s signing: %w", k.k.s.Name(), err)
	}
	return sig, nil
}

// Wipe zeroes the key (circl keeps it in arrays that can be overwritten)
// and its seed, and makes k unusable.
func (k *PrivateKey) Wipe() {
	if k == nil || k.k == nil {
		return
	}
	k.k.s.wipe(k.k.sk)
	k.k.seed.Wipe()
	k.k = nil
}
