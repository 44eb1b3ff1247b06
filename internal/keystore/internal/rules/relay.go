package rules

import (
	"slices"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// CheckRelayStep validates the shape of a relay step and returns the number
// of pad bytes its In and Out pieces cover. Either side may be empty (the
// source has no In, the destination no Out), not both; a side with pieces
// needs its link.
func CheckRelayStep(s *keystore.RelayStep) (in, out int, err error) {
	if s.ID == "" {
		return 0, 0, bad("relay step without ID")
	}
	if len(s.In) == 0 && len(s.Out) == 0 {
		return 0, 0, bad("relay step %q consumes nothing", s.ID)
	}
	if len(s.In) > 0 && s.InLink == "" || len(s.Out) > 0 && s.OutLink == "" {
		return 0, 0, bad("relay step %q: pieces without a link", s.ID)
	}
	if len(s.Combine) > 0 && len(s.Out) > 0 {
		return 0, 0, bad("relay step %q: combines shares and has an outgoing pad", s.ID)
	}
	seen := make(map[qkd.KeyID]bool, len(s.Combine))
	for _, id := range s.Combine {
		if id.IsZero() || seen[id] {
			return 0, 0, bad("relay step %q: missing or repeated share ID", s.ID)
		}
		seen[id] = true
	}
	if in, err = checkPieces(s.In); err != nil {
		return 0, 0, err
	}
	if out, err = checkPieces(s.Out); err != nil {
		return 0, 0, err
	}
	return in, out, nil
}

// RelayKeyLink is the link a relay step's keys are counted on (Key.Link,
// when build leaves it empty): OutLink at the source and at intermediate
// nodes, InLink at the destination.
func RelayKeyLink(s *keystore.RelayStep) qkd.LinkID {
	if len(s.Out) > 0 {
		return s.OutLink
	}
	return s.InLink
}

// CheckRelayResult validates what a relay step's build returned, as
// CheckAllocation does for an allocation's keys, except that every key
// carries its bytes (SizeBits/8 of them). It fills in defaults: Key.Link
// (RelayKeyLink), Key.State (Pending) and the Outbox's Link (the same).
// r.Keys and r.Outbox are replaced by copies first: r's caller may keep
// the originals (the keys' Data are shared).
func CheckRelayResult(s *keystore.RelayStep, r *keystore.RelayResult) error {
	r.Keys = slices.Clone(r.Keys)
	if _, err := checkKeyList(r.Keys, RelayKeyLink(s), true); err != nil {
		return err
	}
	if r.Outbox != nil {
		o := *r.Outbox
		o.Payload = slices.Clone(o.Payload)
		if o.ID == "" {
			return bad("outbox entry without ID")
		}
		if o.Link == "" {
			o.Link = RelayKeyLink(s)
		}
		r.Outbox = &o
	}
	return nil
}

// WipeRelayKeys wipes the bytes of the keys of r (the store owns them once
// build returned them).
func WipeRelayKeys(r *keystore.RelayResult) {
	for i := range r.Keys {
		r.Keys[i].Data.Wipe()
	}
}

// Pad returns a buffer of n bytes for a relay pad (nil for none), so that
// build gets an empty secret.Bytes for an empty side.
func Pad(n int) []byte {
	if n == 0 {
		return nil
	}
	return make([]byte, 0, n)
}

// RunBuild calls build with the pads and wipes them when it returns (also
// if it panics). On error the keys it returned are wiped.
func RunBuild(build func(in, out secret.Bytes) (keystore.RelayResult, error), in, out []byte) (keystore.RelayResult, error) {
	defer secret.Wipe(in)
	defer secret.Wipe(out)
	res, err := build(secret.Adopt(in), secret.Adopt(out))
	if err != nil {
		WipeRelayKeys(&res)
		return keystore.RelayResult{}, err
	}
	return res, nil
}
