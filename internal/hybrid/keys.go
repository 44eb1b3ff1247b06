package hybrid

import (
	"encoding/pem"
	"fmt"

	"github.com/qkms/qkms/internal/secret"
)

// privateKeyWire is the stored form of an ML-DSA private key: the algorithm
// and either the 32-byte seed (keys made here) or the expanded private key.
type privateKeyWire struct {
	Alg  string `cbor:"1,keyasint"`
	Seed []byte `cbor:"2,keyasint,omitempty"`
	Key  []byte `cbor:"3,keyasint,omitempty"`
}

const maxPrivateKeyBytes = 8 << 10

// MarshalPrivateKey encodes k for storage (doc.go). The caller wipes the result.
func MarshalPrivateKey(k *PrivateKey) (secret.Bytes, error) {
	if k == nil || k.k == nil {
		return secret.Bytes{}, ErrWiped
	}
	w := privateKeyWire{Alg: k.Algorithm()}
	if k.k.seed.Len() > 0 {
		w.Seed = k.k.seed.Expose()
	} else {
		raw, err := k.k.sk.MarshalBinary()
		if err != nil {
			return secret.Bytes{}, fmt.Errorf("hybrid: encoding %s private key failed", w.Alg)
		}
		defer secret.Wipe(raw)
		w.Key = raw
	}
	b, err := encMode.Marshal(w)
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("hybrid: encoding %s private key failed", w.Alg)
	}
	return secret.Adopt(b), nil
}

// ParsePrivateKey decodes the output of MarshalPrivateKey.
func ParsePrivateKey(b []byte) (*PrivateKey, error) {
	var w privateKeyWire
	// No unmarshalStrict here: its error would describe the bytes.
	if len(b) > maxPrivateKeyBytes || decMode.Unmarshal(b, &w) != nil {
		return nil, fmt.Errorf("%w: private key encoding", ErrMalformed)
	}
	defer secret.Wipe(w.Seed)
	defer secret.Wipe(w.Key)
	s, err := SignerByName(w.Alg)
	if err != nil {
		return nil, err
	}
	switch {
	case len(w.Seed) > 0 && len(w.Key) == 0:
		return s.NewKeyFromSeed(w.Seed)
	case len(w.Key) > 0 && len(w.Seed) == 0:
		return s.(*mldsa).parsePrivateKey(w.Key)
	}
	return nil, fmt.Errorf("%w: private key needs exactly one of seed and key", ErrMalformed)
}

// EncodePrivateKeyPEM returns k as a "QKMS ML-DSA PRIVATE KEY" PEM block.
// The caller wipes the result.
func EncodePrivateKeyPEM(k *PrivateKey) (secret.Bytes, error) {
	b, err := MarshalPrivateKey(k)
	if err != nil {
		return secret.Bytes{}, err
	}
	defer b.Wipe()
	return secret.Adopt(pem.EncodeToMemory(&pem.Block{Type: PEMPrivateKey, Bytes: b.Expose()})), nil
}

// ParsePrivateKeyPEM decodes a "QKMS ML-DSA PRIVATE KEY" PEM block. The
// caller still owns (and wipes) b.
func ParsePrivateKeyPEM(b []byte) (*PrivateKey, error) {
	der, err := decodePEM(b, PEMPrivateKey)
	if err != nil {
		return nil, err
	}
	defer secret.Wipe(der)
	return ParsePrivateKey(der)
}
