package hybrid

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// Offer is the destination's signed ML-KEM encapsulation key for a key
// stream (D → S). The source encapsulates to it in Seal.
type Offer struct {
	Stream   string     `cbor:"1,keyasint"`
	Source   qkd.NodeID `cbor:"2,keyasint"`
	Dest     qkd.NodeID `cbor:"3,keyasint"` // the signer
	KEM      string     `cbor:"4,keyasint"`
	KeyID    string     `cbor:"5,keyasint"` // names the decapsulation key at Dest
	EncapKey []byte     `cbor:"6,keyasint"`
	Expires  int64      `cbor:"7,keyasint"` // Unix ms
	Cert     []byte     `cbor:"8,keyasint"` // Dest's encoded certificate
	Sig      []byte     `cbor:"9,keyasint,omitempty"`
}

// OfferParams are the inputs of NewOffer.
type OfferParams struct {
	KEM     string // "" = DefaultKEM
	Stream  string
	Source  qkd.NodeID
	Dest    qkd.NodeID // this node
	Expires time.Time
	Key     *PrivateKey // Dest's signing key
	Cert    []byte      // Dest's encoded certificate
	Rand    io.Reader   // for the key ID; nil = crypto/rand
}

// NewOffer makes a decapsulation key and the signed offer of its
// encapsulation key. The caller keeps the key under o.KeyID and wipes it
// when the offer expires.
func NewOffer(p OfferParams) (*Offer, *DecapKey, error) {
	name := p.KEM
	if name == "" {
		name = DefaultKEM
	}
	kem, err := KEMByName(name)
	if err != nil {
		return nil, nil, err
	}
	id, err := NewOfferKeyID(p.Rand)
	if err != nil {
		return nil, nil, err
	}
	dk, err := kem.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	o := &Offer{Stream: p.Stream, Source: p.Source, Dest: p.Dest, KEM: name, KeyID: id,
		EncapKey: dk.EncapsulationKey(), Expires: p.Expires.UnixMilli()}
	if err := SignOffer(o, p.Key, p.Cert); err != nil {
		dk.Wipe()
		return nil, nil, err
	}
	return o, dk, nil
}

// NewOfferKeyID returns a random offer key ID: 16 bytes in hex.
func NewOfferKeyID(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("hybrid: offer key ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// SignOffer sets o.Cert to cert and o.Sig to the signature by key (context
// "qkms-offer-v1") over every other field.
func SignOffer(o *Offer, key *PrivateKey, cert []byte) error {
	o.Cert, o.Sig = cert, nil
	if err := o.check(); err != nil {
		return err
	}
	body, err := marshal(o)
	if err != nil {
		return err
	}
	o.Sig, err = key.Sign(body, contextOffer)
	return err
}

// VerifyOffer checks o at now: the certificate (by v) names o.Dest, the
// signature is good, the KEM is supported with a key of its size, and the
// offer has not expired.
func VerifyOffer(v *Verifier, o *Offer, now time.Time) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := checkLen("offer signature", o.Sig, 1, MaxSigBytes); err != nil {
		return err
	}
	body, err := o.body()
	if err != nil {
		return err
	}
	if _, err := v.verifySigned(o.Cert, string(o.Dest), now, body, contextOffer, o.Sig); err != nil {
		return err
	}
	kem, err := KEMByName(o.KEM)
	if err != nil {
		return err
	}
	if len(o.EncapKey) != kem.EncapsulationKeySize() {
		return fmt.Errorf("%w: %s encapsulation key of %d bytes", ErrMalformed, o.KEM, len(o.EncapKey))
	}
	if now.UnixMilli() > o.Expires {
		return fmt.Errorf("%w: at %d ms, expired at %d ms", ErrOfferExpired, now.UnixMilli(), o.Expires)
	}
	return nil
}

func (o *Offer) check() error {
	for _, f := range []struct{ what, v string }{{"offer stream", o.Stream}, {"offer source", string(o.Source)},
		{"offer destination", string(o.Dest)}, {"offer key ID", o.KeyID}, {"offer KEM", o.KEM}} {
		if err := checkName(f.what, f.v); err != nil {
			return err
		}
	}
	if o.Source == o.Dest {
		return fmt.Errorf("%w: offer source is its destination", ErrMalformed)
	}
	if err := checkLen("offer encapsulation key", o.EncapKey, 1, MaxKeyBytes); err != nil {
		return err
	}
	if err := checkLen("offer certificate", o.Cert, 1, MaxCertBytes); err != nil {
		return err
	}
	return checkLen("offer signature", o.Sig, 0, MaxSigBytes)
}

// body is the signed encoding: every field but Sig.
func (o *Offer) body() ([]byte, error) {
	c := *o
	c.Sig = nil
	return marshal(&c)
}

// Marshal encodes the offer (deterministic CBOR, doc.go).
func (o *Offer) Marshal() ([]byte, error) { return marshal(o) }

// UnmarshalOffer decodes an offer strictly: one deterministic encoding,
// sizes within the limits, signed. It does not verify it (VerifyOffer does).
func UnmarshalOffer(b []byte) (*Offer, error) {
	o := new(Offer)
	if err := unmarshalStrict(b, o, maxOfferBytes); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := checkLen("offer signature", o.Sig, 1, MaxSigBytes); err != nil {
		return nil, err
	}
	return o, nil
}
