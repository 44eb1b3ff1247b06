package hybrid

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/qkms/qkms/internal/qkd"
)

// reencode decodes a valid encoding into a generic map, lets edit change
// it, and encodes it again deterministically.
func reencode(t *testing.T, enc []byte, edit func(m map[int]any)) []byte {
	t.Helper()
	var m map[int]any
	if err := cbor.Unmarshal(enc, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := encMode.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func validEncodings(t *testing.T) (offer, header, step []byte) {
	p := newTestPKI(t, MLDSA44, "A", "B")
	o, _ := p.offerFor(t, MLKEM768, "A", "B")
	h, _ := sealFor(t, p, XORSHAKE256, 2, o)
	s := signPath(t, p, "S1", "b", make([]byte, 32), []qkd.NodeID{"A", "B"})[0]
	var err error
	if offer, err = o.Marshal(); err != nil {
		t.Fatal(err)
	}
	if header, err = h.Marshal(); err != nil {
		t.Fatal(err)
	}
	if step, err = s.Marshal(); err != nil {
		t.Fatal(err)
	}
	return offer, header, step
}

func TestDecodersAreStrict(t *testing.T) {
	offer, header, step := validEncodings(t)
	decoders := map[string]func([]byte) error{
		"offer":  func(b []byte) error { _, err := UnmarshalOffer(b); return err },
		"header": func(b []byte) error { _, err := UnmarshalHeader(b); return err },
		"step":   func(b []byte) error { _, err := UnmarshalPathStep(b); return err },
	}
	valid := map[string][]byte{"offer": offer, "header": header, "step": step}
	for kind, dec := range decoders {
		enc := valid[kind]
		if err := dec(enc); err != nil {
			t.Fatalf("%s: valid encoding rejected: %v", kind, err)
		}
		// Every step's Hop is 0 (key 1, value 0x00); a header's KEM and an
		// offer's stream are text; all three have a key 1.
		var nonShortest []byte
		if kind == "step" {
			nonShortest = append([]byte{enc[0], 0x01, 0x18, 0x00}, enc[3:]...)
		} else {
			nonShortest = append([]byte{enc[0], 0x18, 0x01}, enc[2:]...)
		}
		tests := map[string][]byte{
			"trailing byte": append(bytes.Clone(enc), 0),
			"truncated":     enc[:len(enc)-1],
			"unknown key":   reencode(t, enc, func(m map[int]any) { m[99] = 1 }),
			"missing key":   reencode(t, enc, func(m map[int]any) { delete(m, 2) }),
			"non-shortest":  nonShortest,
			"empty":         nil,
			"not a map":     {0x80},
		}
		for name, in := range tests {
			if err := dec(in); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s, %s: err = %v, want ErrMalformed", kind, name, err)
			}
		}
	}
}

func TestDecoderLimits(t *testing.T) {
	offer, header, step := validEncodings(t)
	big := func(n int) []byte { return bytes.Repeat([]byte{1}, n) }
	tests := []struct {
		name string
		dec  func([]byte) error
		in   []byte
	}{
		{"offer with a 2049-byte key", decOffer, reencode(t, offer, func(m map[int]any) { m[6] = big(MaxKeyBytes + 1) })},
		{"offer with a 8193-byte certificate", decOffer, reencode(t, offer, func(m map[int]any) { m[8] = big(MaxCertBytes + 1) })},
		{"offer with a 5121-byte signature", decOffer, reencode(t, offer, func(m map[int]any) { m[9] = big(MaxSigBytes + 1) })},
		{"offer with a long stream name", decOffer, reencode(t, offer, func(m map[int]any) { m[1] = string(big(maxName + 1)) })},
		{"header with a 2049-byte ciphertext", decHeader, reencode(t, header, func(m map[int]any) {
			m[9].([]any)[0].(map[any]any)[uint64(4)] = big(MaxKeyBytes + 1)
		})},
		{"header with 16385 key IDs", decHeader, reencode(t, header, func(m map[int]any) { m[8] = keyIDs(MaxKeyIDs + 1) })},
		{"header with 65 recipients", decHeader, reencode(t, header, func(m map[int]any) {
			r := m[9].([]any)
			for range MaxRecipients {
				r = append(r, r[0])
			}
			m[9] = r
		})},
		{"header with a 17-byte key ID", decHeader, reencode(t, header, func(m map[int]any) { m[8] = [][]byte{big(17)} })},
		{"header with a key size of 7 bits", decHeader, reencode(t, header, func(m map[int]any) { m[7] = 7 })},
		{"step with a 8193-byte certificate", decStep, reencode(t, step, func(m map[int]any) { m[5] = big(MaxCertBytes + 1) })},
		{"step with hop 64", decStep, reencode(t, step, func(m map[int]any) { m[1], m[3] = MaxPathSteps, "A" })},
		{"path of 65 steps", decPath, func() []byte {
			var s PathStep
			if err := cbor.Unmarshal(step, &s); err != nil {
				t.Fatal(err)
			}
			b, err := MarshalPath(slices.Repeat([]PathStep{s}, MaxPathSteps+1))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}()},
	}
	for _, tt := range tests {
		if err := tt.dec(tt.in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", tt.name, err)
		}
	}
}

func decOffer(b []byte) error  { _, err := UnmarshalOffer(b); return err }
func decHeader(b []byte) error { _, err := UnmarshalHeader(b); return err }
func decStep(b []byte) error   { _, err := UnmarshalPathStep(b); return err }
func decPath(b []byte) error   { _, err := UnmarshalPath(b); return err }
