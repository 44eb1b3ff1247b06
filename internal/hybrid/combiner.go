package hybrid

import (
	"crypto/hkdf"
	"crypto/sha3"
	"crypto/subtle"
	"fmt"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Labels of the combiners and of the wrap of R (doc.go).
const (
	labelCombinerXOR = "qkms-combiner-xor-v1"
	labelCombinerKDF = "qkms-combiner-kdf-v1"
	labelWrap        = "qkms-wrap-v1"
	maxHKDFBytes     = 255 * 32 // RFC 5869: L ≤ 255·HashLen
)

// Combiner makes an application key from a relayed QKD key and the hybrid
// secret R, bound to the header's transcript hash, the stream and the key
// ID. Its output has the length of the QKD key; without R, or without the
// QKD key, the output is unpredictable.
type Combiner interface {
	Name() string
	Combine(qkdKey, r secret.Bytes, transcriptHash []byte, stream string, keyID qkd.KeyID) (secret.Bytes, error)
}

// CombinerByName returns the combiner named name, or an error wrapping
// ErrUnsupported.
func CombinerByName(name string) (Combiner, error) {
	switch name {
	case XORSHAKE256:
		return xorSHAKE256{}, nil
	case HKDFSHA3256:
		return hkdfSHA3256{}, nil
	}
	return nil, unsupported("combiner", name)
}

// Combine runs the combiner named name (see Combiner).
func Combine(name string, qkdKey, r secret.Bytes, transcriptHash []byte, stream string, keyID qkd.KeyID) (secret.Bytes, error) {
	c, err := CombinerByName(name)
	if err != nil {
		return secret.Bytes{}, err
	}
	return c.Combine(qkdKey, r, transcriptHash, stream, keyID)
}

func checkCombineInputs(qkdKey, r secret.Bytes, th []byte) error {
	if qkdKey.Len() == 0 || r.Len() != hybridSecretSize || len(th) != hashSize {
		return fmt.Errorf("%w: combiner inputs of %d, %d and %d bytes (want >0, %d, %d)",
			ErrMalformed, qkdKey.Len(), r.Len(), len(th), hybridSecretSize, hashSize)
	}
	return nil
}

// xorSHAKE256: K_app = K_qkd XOR SHAKE256(encode(label, R, TH, stream, keyID))[:len(K_qkd)].
type xorSHAKE256 struct{}

func (xorSHAKE256) Name() string { return XORSHAKE256 }

func (xorSHAKE256) Combine(qkdKey, r secret.Bytes, th []byte, stream string, keyID qkd.KeyID) (secret.Bytes, error) {
	if err := checkCombineInputs(qkdKey, r, th); err != nil {
		return secret.Bytes{}, err
	}
	in := encodeFields([]byte(labelCombinerXOR), r.Expose(), th, []byte(stream), keyID[:])
	defer secret.Wipe(in)
	out := sha3.SumSHAKE256(in, qkdKey.Len())
	subtle.XORBytes(out, out, qkdKey.Expose())
	return secret.Adopt(out), nil
}

// hkdfSHA3256: HKDF-SHA3-256(IKM = K_qkd ‖ R, salt = TH, info = encode(label, stream, keyID), L = len(K_qkd)).
type hkdfSHA3256 struct{}

func (hkdfSHA3256) Name() string { return HKDFSHA3256 }

func (hkdfSHA3256) Combine(qkdKey, r secret.Bytes, th []byte, stream string, keyID qkd.KeyID) (secret.Bytes, error) {
	if err := checkCombineInputs(qkdKey, r, th); err != nil {
		return secret.Bytes{}, err
	}
	if qkdKey.Len() > maxHKDFBytes {
		return secret.Bytes{}, fmt.Errorf("%w: %s output of %d bytes exceeds %d", ErrMalformed, HKDFSHA3256, qkdKey.Len(), maxHKDFBytes)
	}
	ikm := make([]byte, 0, qkdKey.Len()+r.Len())
	ikm = append(append(ikm, qkdKey.Expose()...), r.Expose()...)
	defer secret.Wipe(ikm)
	info := encodeFields([]byte(labelCombinerKDF), []byte(stream), keyID[:])
	out, err := hkdf.Key(sha3.New256, ikm, th, string(info), qkdKey.Len())
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("hybrid: %s: %w", HKDFSHA3256, err)
	}
	return secret.Adopt(out), nil
}

// wrapMask is SHAKE256(encode("qkms-wrap-v1", ss, H0))[:32], the pad that
// hides R from everyone but the destination holding ss.
func wrapMask(ss secret.Bytes, bindingHash []byte) []byte {
	in := encodeFields([]byte(labelWrap), ss.Expose(), bindingHash)
	defer secret.Wipe(in)
	return sha3.SumSHAKE256(in, hybridSecretSize)
}
