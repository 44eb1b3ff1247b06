package hybrid

import (
	"bytes"
	"encoding/binary"
	"encoding/pem"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Limits on decoded network input (hybrid messages come from other nodes).
const (
	MaxKeyBytes      = 2 << 10  // encapsulation key or ciphertext
	MaxCertBytes     = 8 << 10  // encoded certificate
	MaxSigBytes      = 5 << 10  // signature
	MaxPathSteps     = 64       // steps in a forwarding path
	MaxKeyIDs        = 16384    // key IDs in one header
	MaxRecipients    = 64       // destinations of one header (multicast)
	MaxRevoked       = 1 << 16  // entries of a revocation list
	MaxSizeBits      = 1 << 16  // bits per key in a header (8 KiB)
	maxName          = 256      // stream, step, node ID, offer key ID, subject
	maxOfferBytes    = 16 << 10 // whole encoded offer
	maxStepBytes     = 16 << 10 // whole encoded path step
	maxPathBytes     = MaxPathSteps*maxStepBytes + 16
	maxHeaderBytes   = 512 << 10
	maxCRLBytes      = 4 << 20
	hybridSecretSize = 32 // R
	hashSize         = 32 // SHA3-256
)

var (
	encMode = mustEncMode()
	decMode = mustDecMode()
)

func mustEncMode() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}

func mustDecMode() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   6,
		MaxArrayElements:  max(MaxKeyIDs, MaxRevoked),
		MaxMapPairs:       16,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}

// marshal encodes v in Core Deterministic Encoding (RFC 8949 §4.2.1).
func marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("hybrid: encoding %T: %w", v, err)
	}
	return b, nil
}

// unmarshalStrict decodes data (at most limit bytes) into v and accepts it
// only if it is the deterministic encoding of the result: trailing data,
// unknown or missing keys, non-shortest integers, unsorted maps and the
// like are all ErrMalformed. A decoded value therefore has one encoding,
// the one its signature covers.
func unmarshalStrict(data []byte, v any, limit int) error {
	if len(data) > limit {
		return fmt.Errorf("%w: %T of %d bytes exceeds %d", ErrMalformed, v, len(data), limit)
	}
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrMalformed, v, err)
	}
	again, err := encMode.Marshal(v)
	if err != nil || !bytes.Equal(again, data) {
		return fmt.Errorf("%w: %T is not in deterministic encoding", ErrMalformed, v)
	}
	return nil
}

// encodeFields is the unambiguous concatenation used inside hashes and
// signed messages: each field as a 4-byte big-endian length then its bytes.
func encodeFields(fields ...[]byte) []byte {
	n := 0
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// u64 is the 8-byte big-endian form of an integer field of encodeFields.
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// decodePEM returns the bytes of the one block of type typ in b. Text around
// the block is allowed (as in other PEM files) but not another block, nor
// headers.
func decodePEM(b []byte, typ string) ([]byte, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block %q", ErrMalformed, typ)
	}
	if block.Type != typ || len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: PEM block is not a plain %q", ErrMalformed, typ)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, fmt.Errorf("%w: more than one PEM block", ErrMalformed)
	}
	return block.Bytes, nil
}

func checkLen(what string, b []byte, lo, hi int) error {
	if len(b) < lo || len(b) > hi {
		return fmt.Errorf("%w: %s of %d bytes (want %d to %d)", ErrMalformed, what, len(b), lo, hi)
	}
	return nil
}

func checkName(what, s string) error {
	if s == "" || len(s) > maxName {
		return fmt.Errorf("%w: %s empty or longer than %d bytes", ErrMalformed, what, maxName)
	}
	return nil
}
