package hybrid

import (
	"fmt"

	"github.com/qkms/qkms/internal/qkd"
)

// check enforces the structural rules of a header. A signed header has
// ciphertexts, wraps and a signature; an unsigned one (in Seal, before
// encapsulation) has none of them.
func (h *Header) check(signed bool) error {
	for _, f := range []struct{ what, v string }{{"header KEM", h.KEM}, {"header signature algorithm", h.SigAlg},
		{"header combiner", h.Combiner}, {"header stream", h.Stream}, {"header step", h.Step},
		{"header source", string(h.Source)}} {
		if err := checkName(f.what, f.v); err != nil {
			return err
		}
	}
	if h.SizeBits < 8 || h.SizeBits > MaxSizeBits || h.SizeBits%8 != 0 ||
		(h.Combiner == HKDFSHA3256 && h.KeyBytes() > maxHKDFBytes) {
		return fmt.Errorf("%w: key size of %d bits", ErrMalformed, h.SizeBits)
	}
	if err := checkKeyIDs(h.KeyIDs); err != nil {
		return err
	}
	if err := h.checkRecipients(signed); err != nil {
		return err
	}
	if err := checkLen("header certificate", h.Cert, 1, MaxCertBytes); err != nil {
		return err
	}
	if !signed {
		return checkLen("header signature", h.Sig, 0, 0)
	}
	return checkLen("header signature", h.Sig, 1, MaxSigBytes)
}

func checkKeyIDs(ids []qkd.KeyID) error {
	if len(ids) == 0 || len(ids) > MaxKeyIDs {
		return fmt.Errorf("%w: %d key IDs", ErrMalformed, len(ids))
	}
	seen := make(map[qkd.KeyID]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; dup {
			return fmt.Errorf("%w: key ID %s repeated", ErrMalformed, id)
		}
		seen[id] = struct{}{}
	}
	return nil
}

func (h *Header) checkRecipients(signed bool) error {
	if len(h.Recipients) == 0 || len(h.Recipients) > MaxRecipients {
		return fmt.Errorf("%w: %d recipients", ErrMalformed, len(h.Recipients))
	}
	seen := make(map[qkd.NodeID]struct{}, len(h.Recipients))
	for _, rc := range h.Recipients {
		if err := checkName("recipient", string(rc.Dest)); err != nil {
			return err
		}
		if err := checkName("recipient offer key ID", rc.OfferKeyID); err != nil {
			return err
		}
		if _, dup := seen[rc.Dest]; dup || rc.Dest == h.Source {
			return fmt.Errorf("%w: recipient %q repeated or the source", ErrMalformed, truncate(string(rc.Dest)))
		}
		seen[rc.Dest] = struct{}{}
		if len(rc.EKHash) != hashSize {
			return fmt.Errorf("%w: encapsulation key hash of %d bytes", ErrMalformed, len(rc.EKHash))
		}
		if !signed {
			if len(rc.CT) != 0 || len(rc.Wrap) != 0 {
				return fmt.Errorf("%w: unsealed header with a ciphertext or wrap", ErrMalformed)
			}
			continue
		}
		if err := checkLen("ciphertext", rc.CT, 1, MaxKeyBytes); err != nil {
			return err
		}
		if len(rc.Wrap) != hybridSecretSize {
			return fmt.Errorf("%w: wrap of %d bytes", ErrMalformed, len(rc.Wrap))
		}
	}
	return nil
}
