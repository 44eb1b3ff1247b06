package hybrid

import (
	"bytes"
	"crypto"
	"crypto/mlkem"
	"fmt"

	"github.com/qkms/qkms/internal/secret"
)

// Sizes common to both ML-KEM parameter sets (FIPS 203).
const (
	KEMSeedSize      = mlkem.SeedSize      // 64: d ‖ z
	SharedSecretSize = mlkem.SharedKeySize // 32
)

// KEM is one ML-KEM parameter set of crypto/mlkem (FIPS 203). Encapsulation
// draws its randomness from crypto/rand inside the standard library.
type KEM interface {
	Name() string
	EncapsulationKeySize() int
	CiphertextSize() int
	// GenerateKey makes a fresh decapsulation key.
	GenerateKey() (*DecapKey, error)
	// NewDecapKeyFromSeed derives the key from a 64-byte seed (d ‖ z),
	// for deterministic tests and for keys restored from storage.
	NewDecapKeyFromSeed(seed []byte) (*DecapKey, error)
	// Encapsulate makes a shared secret for the encapsulation key ek.
	Encapsulate(ek []byte) (ss secret.Bytes, ct []byte, err error)
}

// KEMByName returns the KEM named name, or an error wrapping ErrUnsupported.
func KEMByName(name string) (KEM, error) {
	switch name {
	case MLKEM768:
		return kem768, nil
	case MLKEM1024:
		return kem1024, nil
	}
	return nil, unsupported("KEM", name)
}

type mlkemKEM struct {
	name         string
	ekSize       int
	ctSize       int
	generate     func() (crypto.Decapsulator, error)
	fromSeed     func(seed []byte) (crypto.Decapsulator, error)
	newEncapsKey func(ek []byte) (crypto.Encapsulator, error)
}

var (
	kem768 = &mlkemKEM{
		name: MLKEM768, ekSize: mlkem.EncapsulationKeySize768, ctSize: mlkem.CiphertextSize768,
		generate:     func() (crypto.Decapsulator, error) { return decapsulator(mlkem.GenerateKey768()) },
		fromSeed:     func(s []byte) (crypto.Decapsulator, error) { return decapsulator(mlkem.NewDecapsulationKey768(s)) },
		newEncapsKey: func(ek []byte) (crypto.Encapsulator, error) { return encapsulator(mlkem.NewEncapsulationKey768(ek)) },
	}
	kem1024 = &mlkemKEM{
		name: MLKEM1024, ekSize: mlkem.EncapsulationKeySize1024, ctSize: mlkem.CiphertextSize1024,
		generate:     func() (crypto.Decapsulator, error) { return decapsulator(mlkem.GenerateKey1024()) },
		fromSeed:     func(s []byte) (crypto.Decapsulator, error) { return decapsulator(mlkem.NewDecapsulationKey1024(s)) },
		newEncapsKey: func(ek []byte) (crypto.Encapsulator, error) { return encapsulator(mlkem.NewEncapsulationKey1024(ek)) },
	}
)

// decapsulator and encapsulator turn a typed (key, error) pair into an
// interface without the nil-pointer-in-interface trap.
func decapsulator[K crypto.Decapsulator](k K, err error) (crypto.Decapsulator, error) {
	if err != nil {
		return nil, err
	}
	return k, nil
}

func encapsulator[K crypto.Encapsulator](k K, err error) (crypto.Encapsulator, error) {
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (k *mlkemKEM) Name() string              { return k.name }
func (k *mlkemKEM) EncapsulationKeySize() int { return k.ekSize }
func (k *mlkemKEM) CiphertextSize() int       { return k.ctSize }

func (k *mlkemKEM) GenerateKey() (*DecapKey, error) {
	dk, err := k.generate()
	if err != nil {
		return nil, fmt.Errorf("hybrid: %s key generation: %w", k.name, err)
	}
	return newDecapKey(k, dk), nil
}

func (k *mlkemKEM) NewDecapKeyFromSeed(seed []byte) (*DecapKey, error) {
	if len(seed) != KEMSeedSize {
		return nil, fmt.Errorf("%w: %s seed of %d bytes, want %d", ErrMalformed, k.name, len(seed), KEMSeedSize)
	}
	dk, err := k.fromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %s seed rejected", ErrMalformed, k.name)
	}
	return newDecapKey(k, dk), nil
}

func (k *mlkemKEM) Encapsulate(ek []byte) (secret.Bytes, []byte, error) {
	if len(ek) != k.ekSize {
		return secret.Bytes{}, nil, fmt.Errorf("%w: %s encapsulation key of %d bytes, want %d", ErrMalformed, k.name, len(ek), k.ekSize)
	}
	e, err := k.newEncapsKey(ek)
	if err != nil {
		return secret.Bytes{}, nil, fmt.Errorf("%w: %s encapsulation key rejected", ErrMalformed, k.name)
	}
	ss, ct := e.Encapsulate()
	return secret.Adopt(ss), ct, nil
}

// DecapKey is an ML-KEM decapsulation key. It prints as [REDACTED] in fmt,
// log/slog, encoding/json and encoding/text. Its owner calls Wipe when done.
type DecapKey struct {
	redacted
	k *decapKey // nil after Wipe; behind a pointer so reflection shows no bytes
}

type decapKey struct {
	kem  *mlkemKEM
	dk   crypto.Decapsulator
	ek   []byte
	seed secret.Bytes
}

func newDecapKey(k *mlkemKEM, dk crypto.Decapsulator) *DecapKey {
	d := &decapKey{kem: k, dk: dk, ek: dk.Encapsulator().Bytes()}
	if s, ok := dk.(interface{ Bytes() []byte }); ok {
		d.seed = secret.Adopt(s.Bytes())
	}
	return &DecapKey{k: d}
}

// Algorithm returns the KEM name ("ML-KEM-768", ...), or "" after Wipe.
func (d *DecapKey) Algorithm() string {
	if d == nil || d.k == nil {
		return ""
	}
	return d.k.kem.name
}

// EncapsulationKey returns a copy of the public encapsulation key.
func (d *DecapKey) EncapsulationKey() []byte {
	if d == nil || d.k == nil {
		return nil
	}
	return bytes.Clone(d.k.ek)
}

// Decapsulate returns the shared secret in ct. As FIPS 203 specifies, a
// well-formed but wrong ciphertext yields an unrelated secret, not an error.
func (d *DecapKey) Decapsulate(ct []byte) (secret.Bytes, error) {
	if d == nil || d.k == nil {
		return secret.Bytes{}, ErrWiped
	}
	if len(ct) != d.k.kem.ctSize {
		return secret.Bytes{}, fmt.Errorf("%w: %s ciphertext of %d bytes, want %d", ErrMalformed, d.k.kem.name, len(ct), d.k.kem.ctSize)
	}
	ss, err := d.k.dk.Decapsulate(ct)
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("%w: %s ciphertext rejected", ErrMalformed, d.k.kem.name)
	}
	return secret.Adopt(ss), nil
}

// Seed returns a copy of the 64-byte seed the key derives from, to store it
// (sealed) and restore it with NewDecapKeyFromSeed. The caller wipes it.
func (d *DecapKey) Seed() (secret.Bytes, error) {
	if d == nil || d.k == nil {
		return secret.Bytes{}, ErrWiped
	}
	return d.k.seed.Clone(), nil
}

// Wipe zeroes the seed copy and drops every reference to the key. It is best
// effort: crypto/mlkem offers no way to zero its own expanded key, which the
// garbage collector frees once unreferenced.
func (d *DecapKey) Wipe() {
	if d == nil || d.k == nil {
		return
	}
	d.k.seed.Wipe()
	d.k.dk = nil
	d.k = nil
}
