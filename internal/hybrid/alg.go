package hybrid

import (
	"fmt"
	"slices"
)

// Algorithm names as they travel in configuration and messages
// (docs/hybrid.md, Crypto agility).
const (
	MLKEM768  = "ML-KEM-768"  // FIPS 203, category 3
	MLKEM1024 = "ML-KEM-1024" // FIPS 203, category 5

	MLDSA44 = "ML-DSA-44" // FIPS 204, category 2
	MLDSA65 = "ML-DSA-65" // FIPS 204, category 3
	MLDSA87 = "ML-DSA-87" // FIPS 204, category 5

	XORSHAKE256 = "xor-shake256"  // K_qkd XOR SHAKE256(R, transcript, ...)
	HKDFSHA3256 = "hkdf-sha3-256" // HKDF-SHA3-256(K_qkd ‖ R, transcript, ...)

	DefaultKEM       = MLKEM768
	DefaultSignature = MLDSA65
	DefaultCombiner  = XORSHAKE256
)

// AlgorithmList names the supported algorithms of each kind, defaults first.
type AlgorithmList struct {
	KEMs       []string
	Signatures []string
	Combiners  []string
}

// Algorithms lists the supported algorithm names (for capabilities).
func Algorithms() AlgorithmList {
	return AlgorithmList{
		KEMs:       []string{MLKEM768, MLKEM1024},
		Signatures: []string{MLDSA65, MLDSA44, MLDSA87},
		Combiners:  []string{XORSHAKE256, HKDFSHA3256},
	}
}

// Supports reports whether name is a supported algorithm of any kind.
func (l AlgorithmList) Supports(name string) bool {
	return slices.Contains(l.KEMs, name) || slices.Contains(l.Signatures, name) ||
		slices.Contains(l.Combiners, name)
}

// maxAlgName bounds algorithm names in messages and in error texts.
const maxAlgName = 32

// unsupported wraps ErrUnsupported with the kind and (bounded) name.
func unsupported(kind, name string) error {
	if len(name) > maxAlgName {
		name = name[:maxAlgName] + "..."
	}
	return fmt.Errorf("%w: %s %q", ErrUnsupported, kind, name)
}
