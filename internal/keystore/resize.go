package keystore

import (
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// Resize splits or merges Ready keys of one pair on one link (keys
// can be split (one entry → several smaller) and merged (several → one);
// the split_key and merge_keys messages): the bytes of Old,
// concatenated in order, are cut into len(New) keys of equal size, which
// take the place of Old. Both ends of the link apply the same Resize, so
// they end with the same keys (IDs, bytes, pair).
type Resize struct {
	// ID names the operation: it is applied at most once (ErrApplied).
	ID     string
	Link   qkd.LinkID
	Master qkd.SAEID
	Slaves []qkd.SAEID
	// Old are Ready keys of (Master, Slaves) on Link, all with the same
	// Pending list; New are the IDs of the keys made of them.
	Old []qkd.KeyID
	New []qkd.KeyID
	// Ready makes the new keys Ready at once (the receiving end); otherwise
	// they are Pending until SetKeysReady (the initiator, once the peer
	// confirmed) or AbortAllocation.
	Ready bool
	// Outbox, if set, is stored in the same transaction.
	Outbox *Outbox
}

// KeyFilter selects Ready, unexpired keys of one pair for ListKeys (never
// the chunks of a key stream: Key.Stream).
type KeyFilter struct {
	Link   qkd.LinkID // "" = any link
	Master qkd.SAEID
	Slaves []qkd.SAEID // exactly these
	// SizeBits: 0 = any size.
	SizeBits int
	// Caller: "" = any; else only keys Caller may still receive here.
	Caller qkd.SAEID
	// Limit: at most this many keys (0 = no limit).
	Limit int
	Now   time.Time
}
