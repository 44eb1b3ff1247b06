package hybrid

import (
	"bytes"
	"crypto/sha3"
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Header is the source's signed hybrid header (S → D); it travels with one
// relay batch. R, the 32-byte hybrid secret, reaches each destination
// wrapped under that destination's ML-KEM shared secret.
type Header struct {
	KEM        string      `cbor:"1,keyasint"`
	SigAlg     string      `cbor:"2,keyasint"` // the source's ML-DSA parameter set
	Combiner   string      `cbor:"3,keyasint"`
	Stream     string      `cbor:"4,keyasint"`
	Step       string      `cbor:"5,keyasint"`  // relay batch ID
	Source     qkd.NodeID  `cbor:"6,keyasint"`  // the signer
	SizeBits   int         `cbor:"7,keyasint"`  // of every key of the batch
	KeyIDs     []qkd.KeyID `cbor:"8,keyasint"`  // the batch's keys, in order
	Recipients []Recipient `cbor:"9,keyasint"`  // one per destination
	Cert       []byte      `cbor:"10,keyasint"` // Source's encoded certificate
	Sig        []byte      `cbor:"11,keyasint,omitempty"`
}

// Recipient is one destination's share of a Header.
type Recipient struct {
	Dest       qkd.NodeID `cbor:"1,keyasint"`
	OfferKeyID string     `cbor:"2,keyasint"`           // Offer.KeyID encapsulated to
	EKHash     []byte     `cbor:"3,keyasint"`           // SHA3-256 of that offer's EncapKey
	CT         []byte     `cbor:"4,keyasint"`           // ML-KEM ciphertext
	Wrap       []byte     `cbor:"5,keyasint,omitempty"` // R XOR mask (32 bytes)
}

// SealParams are the inputs of Seal.
type SealParams struct {
	Combiner string // "" = DefaultCombiner
	Stream   string
	Step     string
	Source   qkd.NodeID // this node
	SizeBits int
	KeyIDs   []qkd.KeyID
	Offers   []*Offer    // one per destination; the KEM is theirs
	Key      *PrivateKey // Source's signing key
	Cert     []byte      // Source's encoded certificate
	Rand     io.Reader   // source of R; nil = crypto/rand
}

// Seal, at the source, verifies every offer (by v, at now), draws R, wraps
// it for every destination and signs the header. The caller wipes R.
func Seal(v *Verifier, p SealParams, now time.Time) (*Header, secret.Bytes, error) {
	h, kem, err := newHeader(v, p, now)
	if err != nil {
		return nil, secret.Bytes{}, err
	}
	r, err := secret.Random(p.Rand, hybridSecretSize)
	if err != nil {
		return nil, secret.Bytes{}, err
	}
	if err := h.wrap(kem, p.Offers, r); err != nil {
		r.Wipe()
		return nil, secret.Bytes{}, err
	}
	body, err := h.body()
	if err == nil {
		h.Sig, err = p.Key.Sign(body, contextHybridHeader)
	}
	if err != nil {
		r.Wipe()
		return nil, secret.Bytes{}, err
	}
	return h, r, nil
}

// newHeader checks the parameters and offers and returns the header
// without wraps and signature.
func newHeader(v *Verifier, p SealParams, now time.Time) (*Header, KEM, error) {
	comb := p.Combiner
	if comb == "" {
		comb = DefaultCombiner
	}
	if _, err := CombinerByName(comb); err != nil {
		return nil, nil, err
	}
	if len(p.Offers) == 0 || len(p.Offers) > MaxRecipients {
		return nil, nil, fmt.Errorf("%w: %d offers", ErrMalformed, len(p.Offers))
	}
	if err := checkOwnCert(p.Cert, p.Key, p.Source); err != nil {
		return nil, nil, err
	}
	h := &Header{KEM: p.Offers[0].KEM, SigAlg: p.Key.Algorithm(), Combiner: comb, Stream: p.Stream,
		Step: p.Step, Source: p.Source, SizeBits: p.SizeBits, KeyIDs: p.KeyIDs, Cert: p.Cert}
	for _, o := range p.Offers {
		if err := VerifyOffer(v, o, now); err != nil {
			return nil, nil, err
		}
		if o.Source != p.Source || o.Stream != p.Stream || o.KEM != h.KEM {
			return nil, nil, fmt.Errorf("%w: offer of %q is for another source, stream or KEM", ErrMalformed, o.Dest)
		}
		ekHash := sha3.Sum256(o.EncapKey)
		h.Recipients = append(h.Recipients, Recipient{Dest: o.Dest, OfferKeyID: o.KeyID, EKHash: ekHash[:]})
	}
	kem, err := KEMByName(h.KEM)
	if err != nil {
		return nil, nil, err
	}
	return h, kem, h.check(false)
}

// checkOwnCert catches a source configured with a certificate that is not
// its own: signing would succeed but every destination would refuse.
func checkOwnCert(enc []byte, key *PrivateKey, source qkd.NodeID) error {
	c, err := ParseCertificate(enc)
	if err != nil {
		return err
	}
	if c.Subject != string(source) || c.Alg != key.Algorithm() || !bytes.Equal(c.PublicKey, key.Public()) {
		return fmt.Errorf("%w: own certificate is not for %q and its key", ErrWrongSubject, source)
	}
	return nil
}

// wrap encapsulates to every offer and sets the ciphertexts, then the wraps.
func (h *Header) wrap(kem KEM, offers []*Offer, r secret.Bytes) error {
	ss := make([]secret.Bytes, len(offers))
	defer secret.WipeAll(ss)
	for i, o := range offers {
		var err error
		if ss[i], h.Recipients[i].CT, err = kem.Encapsulate(o.EncapKey); err != nil {
			return err
		}
	}
	h0, err := h.bindingHash()
	if err != nil {
		return err
	}
	for i := range h.Recipients {
		w := wrapMask(ss[i], h0)
		subtle.XORBytes(w, w, r.Expose())
		h.Recipients[i].Wrap = w
	}
	return nil
}

// DecapKeyLookup returns the decapsulation key this node made for the offer
// with the given key ID, or nil.
type DecapKeyLookup func(offerKeyID string) *DecapKey

// Open, at destination self, verifies h (the source's certificate by v at
// now, its subject against h.Source, the signature) before anything else,
// then recovers R with the key lookup returns for the offer h names. The
// caller must also check that h.Stream, h.Step and h.KeyIDs are those of the
// relay batch h came with, and wipes R.
func Open(v *Verifier, h *Header, self qkd.NodeID, lookup DecapKeyLookup, now time.Time) (secret.Bytes, error) {
	rc, kem, err := h.verify(v, self, now)
	if err != nil {
		return secret.Bytes{}, err
	}
	dk := lookup(rc.OfferKeyID)
	if dk == nil || dk.Algorithm() != kem.Name() {
		return secret.Bytes{}, fmt.Errorf("%w: %q", ErrUnknownOffer, truncate(rc.OfferKeyID))
	}
	if ek := sha3.Sum256(dk.EncapsulationKey()); !bytes.Equal(ek[:], rc.EKHash) {
		return secret.Bytes{}, fmt.Errorf("%w: %q has another encapsulation key", ErrUnknownOffer, truncate(rc.OfferKeyID))
	}
	ss, err := dk.Decapsulate(rc.CT)
	if err != nil {
		return secret.Bytes{}, err
	}
	defer ss.Wipe()
	h0, err := h.bindingHash()
	if err != nil {
		return secret.Bytes{}, err
	}
	r := wrapMask(ss, h0)
	subtle.XORBytes(r, r, rc.Wrap)
	return secret.Adopt(r), nil
}

// verify checks the header's signature and returns self's recipient entry.
func (h *Header) verify(v *Verifier, self qkd.NodeID, now time.Time) (*Recipient, KEM, error) {
	if err := h.check(true); err != nil {
		return nil, nil, err
	}
	body, err := h.body()
	if err != nil {
		return nil, nil, err
	}
	c, err := v.verifySigned(h.Cert, string(h.Source), now, body, contextHybridHeader, h.Sig)
	if err != nil {
		return nil, nil, err
	}
	if h.SigAlg != c.cert.Alg {
		return nil, nil, fmt.Errorf("%w: header names %q, certificate key is %s", ErrBadSignature, truncate(h.SigAlg), c.cert.Alg)
	}
	kem, err := KEMByName(h.KEM)
	if err != nil {
		return nil, nil, err
	}
	if _, err := CombinerByName(h.Combiner); err != nil {
		return nil, nil, err
	}
	for i := range h.Recipients {
		if h.Recipients[i].Dest == self {
			return &h.Recipients[i], kem, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: %q", ErrNotRecipient, self)
}

// TranscriptHash returns SHA3-256 of the header's signed body (every field
// but Sig, wraps included): the binding the combiners and path signatures use.
func (h *Header) TranscriptHash() ([]byte, error) {
	body, err := h.body()
	if err != nil {
		return nil, err
	}
	th := sha3.Sum256(body)
	return th[:], nil
}

// body is the signed encoding: every field but Sig.
func (h *Header) body() ([]byte, error) {
	c := *h
	c.Sig = nil
	return marshal(&c)
}

// bindingHash (H0) is SHA3-256 of the body without the wraps, which are
// derived from it.
func (h *Header) bindingHash() ([]byte, error) {
	c := *h
	c.Sig = nil
	c.Recipients = make([]Recipient, len(h.Recipients))
	for i, rc := range h.Recipients {
		rc.Wrap = nil
		c.Recipients[i] = rc
	}
	b, err := marshal(&c)
	if err != nil {
		return nil, err
	}
	h0 := sha3.Sum256(b)
	return h0[:], nil
}

// Marshal encodes the header (deterministic CBOR, doc.go).
func (h *Header) Marshal() ([]byte, error) { return marshal(h) }

// UnmarshalHeader decodes a signed header strictly: one deterministic
// encoding, sizes within the limits. It does not verify it (Open does).
func UnmarshalHeader(b []byte) (*Header, error) {
	h := new(Header)
	if err := unmarshalStrict(b, h, maxHeaderBytes); err != nil {
		return nil, err
	}
	if err := h.check(true); err != nil {
		return nil, err
	}
	return h, nil
}

// KeyBytes is the size in bytes of every key of the batch.
func (h *Header) KeyBytes() int { return h.SizeBits / 8 }

// CombineKeys returns the application keys of the batch: key i combines
// qkdKeys[i] with R under h's combiner, transcript hash, stream and
// h.KeyIDs[i]. On error nothing is returned; the caller wipes the keys.
func CombineKeys(h *Header, r secret.Bytes, qkdKeys []secret.Bytes) ([]secret.Bytes, error) {
	if len(qkdKeys) != len(h.KeyIDs) {
		return nil, fmt.Errorf("%w: %d keys for %d key IDs", ErrMalformed, len(qkdKeys), len(h.KeyIDs))
	}
	c, err := CombinerByName(h.Combiner)
	if err != nil {
		return nil, err
	}
	th, err := h.TranscriptHash()
	if err != nil {
		return nil, err
	}
	out := make([]secret.Bytes, len(qkdKeys))
	for i, k := range qkdKeys {
		if k.Len() != h.KeyBytes() {
			err = fmt.Errorf("%w: key %d of %d bytes, header says %d", ErrMalformed, i, k.Len(), h.KeyBytes())
		} else {
			out[i], err = c.Combine(k, r, th, h.Stream, h.KeyIDs[i])
		}
		if err != nil {
			secret.WipeAll(out)
			return nil, err
		}
	}
	return out, nil
}
