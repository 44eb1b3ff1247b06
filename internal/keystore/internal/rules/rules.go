package rules

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// ErrBadRequest is returned for a take or count request that cannot be served
// as asked (non-positive number).
var ErrBadRequest = errors.New("keystore: malformed request")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{keystore.ErrBadAllocation}, args...)...)
}

// CheckAllocation validates the shape of a and returns the number of bytes
// its pieces cover. It fills in defaults: Key.Link and Key.State (Pending).
func CheckAllocation(a *keystore.Allocation) (int, error) {
	if a.Outbox != nil && a.Outbox.ID == "" {
		return 0, bad("outbox entry without ID")
	}
	want, err := checkKeys(a)
	if err != nil {
		return 0, err
	}
	if s := a.Slots; s != nil {
		if s.Count <= 0 || s.Sender == "" {
			return 0, bad("empty slot range")
		}
		if uint64(s.Count) > math.MaxUint64-s.First || s.Count > math.MaxInt32/keystore.SlotSize {
			return 0, bad("slot range overflows")
		}
		want += s.Count * keystore.SlotSize
	}
	if want == 0 {
		// An outbox entry alone: a message stored before it is first
		// sent, with no material of its own.
		if a.Outbox != nil && len(a.Pieces) == 0 {
			return 0, nil
		}
		return 0, bad("no keys and no slots")
	}
	have, err := checkPieces(a.Pieces)
	if err != nil {
		return 0, err
	}
	if have != want {
		return 0, bad("pieces cover %d bytes, keys and slots need %d", have, want)
	}
	return want, nil
}

// checkPieces validates the shape of pieces and returns the number of bytes
// they cover.
func checkPieces(ps []keystore.Piece) (int, error) {
	have := 0
	for _, p := range ps {
		if p.Len <= 0 || p.Off < 0 || p.Len > math.MaxInt32 {
			return 0, bad("piece of block %d has length %d at %d", p.Index, p.Len, p.Off)
		}
		if have > math.MaxInt32-p.Len {
			return 0, bad("pieces cover more than %d bytes", math.MaxInt32)
		}
		have += p.Len
	}
	return have, nil
}

func checkKeys(a *keystore.Allocation) (int, error) {
	return checkKeyList(a.Keys, a.Link, false)
}

// checkKeyList validates keys and returns the bytes they hold. withData:
// each key carries its SizeBits/8 bytes (a relay step's keys), else none
// (an allocation's keys, cut by the store). It fills in Link (link if
// empty) and State (Pending if zero).
func checkKeyList(keys []keystore.Key, link qkd.LinkID, withData bool) (int, error) {
	want := 0
	ids := make(map[qkd.KeyID]bool, len(keys))
	for i := range keys {
		k := &keys[i]
		if k.ID.IsZero() || ids[k.ID] {
			return 0, bad("key %d: missing or repeated ID", i)
		}
		ids[k.ID] = true
		if k.SizeBits <= 0 || k.SizeBits%8 != 0 || k.SizeBits > math.MaxInt32 {
			return 0, bad("key %s: size %d bits", k.ID, k.SizeBits)
		}
		switch n := k.Data.Len(); {
		case withData && n != k.SizeBits/8:
			return 0, bad("key %s: %d bytes for %d bits", k.ID, n, k.SizeBits)
		case !withData && n != 0:
			return 0, bad("key %s carries bytes", k.ID)
		}
		if k.Master == "" {
			return 0, bad("key %s: no master", k.ID)
		}
		for _, p := range k.Pending {
			if !IsRecipient(k, p) {
				return 0, bad("key %s: pending SAE is not a recipient", k.ID)
			}
		}
		if k.Link == "" {
			k.Link = link
		}
		switch k.State {
		case 0:
			k.State = keystore.KeyPending
		case keystore.KeyPending, keystore.KeyReady:
		default:
			return 0, bad("key %s: state %d", k.ID, k.State)
		}
		want += k.SizeBits / 8
	}
	return want, nil
}

// Cut splits the concatenated material of an allocation into its keys'
// bytes (stored into a.Keys[i].Data) and its slots' bytes (returned). The
// caller still owns and wipes buf; the results are independent copies.
func Cut(buf []byte, a *keystore.Allocation) []secret.Bytes {
	off := 0
	for i := range a.Keys {
		n := a.Keys[i].SizeBits / 8
		a.Keys[i].Data = secret.From(buf[off : off+n])
		off += n
	}
	if a.Slots == nil {
		return nil
	}
	slots := make([]secret.Bytes, a.Slots.Count)
	for i := range slots {
		slots[i] = secret.From(buf[off : off+keystore.SlotSize])
		off += keystore.SlotSize
	}
	return slots
}

// CheckPiece returns keystore.ErrConflict unless piece p can be cut from
// block b of its link (nil: absent) as the next bytes: b is confirmed, p
// starts at off (b.Offset, or where the pieces before p in the same
// operation left it) and ends within b.
func CheckPiece(l qkd.LinkID, p keystore.Piece, b *keystore.Block, off int) error {
	if b == nil || b.State != keystore.BlockConfirmed {
		return fmt.Errorf("keystore: block %d of %s is not free confirmed material: %w", p.Index, l, keystore.ErrConflict)
	}
	if size := b.Offset + b.Remaining; p.Off != off || p.Len > size-off {
		return fmt.Errorf("keystore: piece [%d,+%d) of block %d of %s: offset is %d of %d: %w",
			p.Off, p.Len, p.Index, l, off, size, keystore.ErrConflict)
	}
	return nil
}

// ErrEmptyBlock is returned by AddBlock for a block without bytes.
var ErrEmptyBlock = errors.New("keystore: empty block")

// CheckBlock validates AddBlock input.
func CheckBlock(b keystore.Block) error {
	if b.Data.Len() == 0 {
		return ErrEmptyBlock
	}
	return nil
}

// CheckLinkInit validates a LinkInit.
func CheckLinkInit(in keystore.LinkInit) error {
	if len(in.Slots) != len(in.Material) {
		return bad("%d slot ranges, %d materials", len(in.Slots), len(in.Material))
	}
	for i, s := range in.Slots {
		if s.Count <= 0 || s.Sender == "" || uint64(s.Count) > math.MaxUint64-s.First {
			return bad("slot range %d is empty or overflows", i)
		}
		if in.Material[i].Len() != s.Count*keystore.SlotSize {
			return bad("slot range %d: %d bytes for %d slots", i, in.Material[i].Len(), s.Count)
		}
	}
	return nil
}

// IsRecipient reports whether sae is the master or a slave of k.
func IsRecipient(k *keystore.Key, sae qkd.SAEID) bool {
	return k.Master == sae || slices.Contains(k.Slaves, sae)
}

// Expired reports whether k has expired at now (Expires <= now). A zero
// Expires never expires.
func Expired(k *keystore.Key, now time.Time) bool {
	return !k.Expires.IsZero() && !now.Before(k.Expires)
}

// MatchesPair reports whether TakeForPair / CountKeys may hand k to r.Caller
// (never a key of a key stream).
func MatchesPair(k *keystore.Key, r *keystore.TakeRequest) bool {
	return k.State == keystore.KeyReady && k.Stream == "" && !Expired(k, r.Now) &&
		k.Master == r.Master && k.SizeBits == r.SizeBits &&
		(r.Link == "" || k.Link == r.Link) &&
		slices.Equal(k.Slaves, r.Slaves) &&
		slices.Contains(k.Pending, r.Caller) && IsRecipient(k, r.Caller)
}

// CheckByID decides whether r.Caller may take k (nil if k is unknown) by
// ID, with the error rules of keystore.Store.TakeByID.
func CheckByID(k *keystore.Key, r *keystore.TakeRequest) error {
	if k == nil || Expired(k, r.Now) || k.State != keystore.KeyReady || k.Master != r.Master {
		return qkd.ErrNotFound
	}
	pending := slices.Contains(k.Pending, r.Caller)
	switch recipient := IsRecipient(k, r.Caller); {
	case !recipient:
		return qkd.ErrUnauthorized
	case !pending:
		return qkd.ErrNotFound
	}
	return nil
}

// Worse returns the error TakeByID reports when keys fail with a and b:
// qkd.ErrNotFound wins over qkd.ErrUnauthorized, so that an unauthorised
// caller learns nothing about the other IDs.
func Worse(a, b error) error {
	if a == nil || errors.Is(b, qkd.ErrNotFound) {
		return b
	}
	return a
}

// Served removes caller from k.Pending and reports whether nobody is left.
func Served(k *keystore.Key, caller qkd.SAEID) bool {
	k.Pending = slices.DeleteFunc(slices.Clone(k.Pending), func(s qkd.SAEID) bool { return s == caller })
	return len(k.Pending) == 0
}

// CheckTake validates the common fields of a take or count request.
func CheckTake(r *keystore.TakeRequest, byID bool) error {
	if byID {
		if len(r.IDs) == 0 {
			return fmt.Errorf("%w: no key IDs", ErrBadRequest)
		}
		seen := make(map[qkd.KeyID]bool, len(r.IDs))
		for _, id := range r.IDs {
			if seen[id] {
				// The second copy would go to a recipient who already had it.
				return qkd.ErrNotFound
			}
			seen[id] = true
		}
		return nil
	}
	if r.Number <= 0 {
		return fmt.Errorf("%w: number %d", ErrBadRequest, r.Number)
	}
	return nil
}
