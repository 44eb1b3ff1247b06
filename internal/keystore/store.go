package keystore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// SlotSize is the size of one MAC key slot: 32 bytes (Poly1305 r‖s) for the
// request tag and 32 bytes for the response tag of one KMS↔KMS exchange.
const SlotSize = 64

// Errors of Store operations (in addition to qkd.ErrNotFound,
// qkd.ErrUnauthorized and qkd.ErrInsufficientKey).
var (
	// ErrConflict: an allocation names material that is not free (already
	// consumed, not confirmed, or not there) and was not applied before.
	ErrConflict = errors.New("keystore: allocation conflicts with stored material")
	// ErrKeyExists (also an ErrConflict): a key the operation would create
	// exists. Unlike material that is not free yet, this never passes.
	ErrKeyExists = fmt.Errorf("keystore: a key with this ID exists: %w", ErrConflict)
	// ErrZeroized: the store was zeroised and holds nothing any more.
	ErrZeroized = errors.New("keystore: zeroized")
	// ErrBadAllocation: an allocation whose pieces do not add up to its keys and slots.
	ErrBadAllocation = errors.New("keystore: malformed allocation")
)

// BlockState is the state of a block of raw link material.
type BlockState uint8

const (
	// BlockUnconfirmed: received from the QKD module, not yet checked with the peer.
	BlockUnconfirmed BlockState = iota + 1
	// BlockConfirmed: both ends checked they hold identical bytes; usable.
	BlockConfirmed
)

// Block is one block of link material pushed by a QKD module (ETSI 004 push
// mode), named by its link and its index, identical at both ends of the link.
type Block struct {
	Link  qkd.LinkID
	Index uint64
	State BlockState
	// Offset: bytes at the front of the original block already consumed.
	Offset int
	// Remaining: len(original) - Offset (set on reads, also when Data is not).
	Remaining int
	// Data: the unconsumed bytes, original[Offset:] (only filled by GetBlocks
	// and on AddBlock input).
	Data    secret.Bytes
	Arrived time.Time
}

// Range is an inclusive range of block indices.
type Range struct{ From, To uint64 }

// Piece is the byte range [Off, Off+Len) of block Index of a link, counted
// from the start of the original block.
type Piece struct {
	Index uint64
	Off   int
	Len   int
}

// KeyState is the state of a key reserved for applications.
type KeyState uint8

const (
	// KeyPending: allocated at this node, the peer has not acknowledged yet.
	// Never delivered.
	KeyPending KeyState = iota + 1
	// KeyReady: held by both ends; deliverable to the SAEs in Pending.
	KeyReady
)

// Key is a key reserved for an application pair (the reserved key state).
type Key struct {
	ID     qkd.KeyID
	Link   qkd.LinkID
	State  KeyState
	Master qkd.SAEID
	// Slaves: the slave SAE of the request first, then additional slaves.
	Slaves []qkd.SAEID
	// Pending: the SAEs attached to this node that may still receive the key
	// here. When the last one has it, the key is deleted.
	Pending  []qkd.SAEID
	SizeBits int
	// Data: the key bytes (SizeBits/8). Empty in Allocation.Keys: the store
	// cuts them from the allocation's pieces.
	Data    secret.Bytes
	Created time.Time
	Expires time.Time
	// Stream: the ETSI 004 key stream (its KSID) the key is a chunk of; ""
	// for an ordinary key of the pair. A stream's chunks are delivered by
	// ID only (TakeByID): TakeForPair, CountKeys and ListKeys never see
	// them, and ResizeKeys refuses them, so ETSI 014 requests, splits and
	// merges and the closing of the pair leave them alone. Not secret.
	Stream string
}

// SlotRange is a run of MAC key slots for messages sent by Sender on a link:
// slot First+i holds bytes [i*SlotSize, (i+1)*SlotSize) of its material.
type SlotRange struct {
	Sender qkd.NodeID
	First  uint64
	Count  int
}

// Outbox is a message that must reach the peer before the allocation it
// belongs to is complete; kept so that it can be resent after a restart.
// Payload holds no key bytes.
type Outbox struct {
	ID      string
	Link    qkd.LinkID
	Payload []byte
	Created time.Time
}

// Allocation consumes confirmed material, in order, and turns it into keys
// and/or MAC key slots: the concatenated bytes of Pieces are cut first into
// Keys (in order, SizeBits/8 bytes each), then into Slots.Count slots.
type Allocation struct {
	Link   qkd.LinkID
	Pieces []Piece
	Keys   []Key
	Slots  *SlotRange
	// Outbox, if set, is stored in the same transaction.
	Outbox *Outbox
}

// ErrApplied: a relay step (its record is available through RelayRecord)
// or a resize with this ID was applied before; nothing changed.
var ErrApplied = errors.New("keystore: relay step applied before")

// RelayStep is one hop of a multi-hop key relay (docs/relay-design.md):
// the incoming one-time pad In (pieces of InLink, allocated by the
// upstream node) and the outgoing pad Out (pieces of OutLink, from this
// node's own material) are consumed together with storing what Build
// returns, in one transaction.
type RelayStep struct {
	ID      string
	InLink  qkd.LinkID
	In      []Piece
	OutLink qkd.LinkID
	Out     []Piece
	// Expires: when the step's record (and the idempotency it gives) may go.
	Expires time.Time
	// Combine: the rows of XOR shares (keys of Stream ShareStream, stored
	// by earlier steps of a split multipath relay) this step consumes.
	// Their bytes, XORed together, are what build gets as out (a step
	// that combines shares has no outgoing pad), and they are deleted in
	// the step's transaction. A share row that is not there (or is not a
	// share, or has another length) fails the step with ErrConflict.
	Combine []qkd.KeyID
}

// ShareStream is the Stream of a row that holds one XOR share of the keys
// of a split multipath relay step (docs/relay-design.md "Multipath
// relay"). Its Pending list is empty: no application ever receives it; a
// later step consumes it (RelayStep.Combine) or it expires.
const ShareStream = "qkms:share"

// RelayResult is what a relay step stores: Keys with their Data (the
// relayed secrets at the source, Pending, or at the destination, Ready),
// the step's Record (the outgoing message, or a done marker; no key bytes
// in the clear), and optionally an Outbox entry.
type RelayResult struct {
	Keys   []Key
	Record []byte
	Outbox *Outbox
}

// LinkInit bootstraps a link's MAC slots from its pre-shared key: Slots[i]
// gets Material[i] (len = Count*SlotSize).
type LinkInit struct {
	Link     qkd.LinkID
	Slots    []SlotRange
	Material []secret.Bytes
}

// TakeRequest selects keys for delivery to Caller.
type TakeRequest struct {
	Link   qkd.LinkID // optional filter for TakeForPair
	Master qkd.SAEID
	Caller qkd.SAEID
	// TakeForPair only: keys whose Slaves are exactly Slaves, of SizeBits.
	Slaves   []qkd.SAEID
	SizeBits int
	Number   int
	// TakeByID only.
	IDs []qkd.KeyID
	Now time.Time
}

// LinkStats are counts for status and metrics.
type LinkStats struct {
	UnconfirmedBlocks int
	UnconfirmedBytes  int64
	// ConfirmedBytes[p]: free confirmed bytes in blocks with Index%2 == p.
	ConfirmedBytes [2]int64
	KeysPending    int
	KeysReady      int
	// Slots: remaining MAC slots per sender.
	Slots map[qkd.NodeID]int
	// MaxIndex: the highest block index ever added (HasIndex false if none).
	MaxIndex uint64
	HasIndex bool
}

// The key store is split into role interfaces, one per concept. A consumer
// declares the union of the roles it uses (link.Store, kms.Store,
// relay.Store, streams.Store) and Store is the union of them all, which
// every backend implements and storetest checks.

// Blocks holds the raw link material pushed by the QKD modules: blocks are
// stored unconfirmed, confirmed or discarded with the peer, and the free
// bytes of confirmed blocks are handed out as pieces for an Allocation or a
// RelayStep to consume.
type Blocks interface {
	// AddBlock stores an unconfirmed block (Data = the whole block, Offset 0).
	// Adding an index that is or was present is a harmless no-op.
	AddBlock(ctx context.Context, b Block) error
	// ListBlocks returns up to limit blocks of a link in the given state in
	// index order, without Data.
	ListBlocks(ctx context.Context, link qkd.LinkID, state BlockState, limit int) ([]Block, error)
	// GetBlocks returns the named blocks with Data; absent ones are skipped.
	GetBlocks(ctx context.Context, link qkd.LinkID, indices []uint64) ([]Block, error)
	// ConfirmBlocks marks unconfirmed blocks confirmed and consumes the first
	// skip bytes of the first one (the batch check key). Already confirmed
	// blocks are left alone (idempotent); any absent block → qkd.ErrNotFound
	// and nothing changes.
	ConfirmBlocks(ctx context.Context, link qkd.LinkID, indices []uint64, skip int) error
	// DiscardBlocks deletes unconfirmed blocks with indices in the ranges.
	// Returns how many were deleted.
	DiscardBlocks(ctx context.Context, link qkd.LinkID, ranges []Range) (int, error)
	// Material returns free pieces of confirmed blocks with Index%2 == parity,
	// in index order, until at least want bytes are covered (or all there is).
	Material(ctx context.Context, link qkd.LinkID, parity int, want int) ([]Piece, error)
}

// Allocator turns confirmed material into keys and MAC key slots, and
// carries an allocation (or a relay step, see RelaySteps) whose outbox
// entry must reach the peer to its end: its keys made Ready, or dropped.
type Allocator interface {
	// Allocate applies an allocation atomically. Each piece must start at its
	// block's current Offset. If the allocation was already applied (its
	// first key ID or first slot exists) it returns nil and changes nothing;
	// otherwise conflicting material → ErrConflict. An allocation with
	// neither keys, slots nor pieces but an outbox entry stores the entry
	// alone (a message fixed before it is first sent, such as a
	// new_key_batch); its ID existing → ErrConflict.
	Allocate(ctx context.Context, a Allocation) error
	// SetKeysReady moves Pending keys to Ready and deletes the outbox entry
	// (if outboxID != "") in one transaction.
	SetKeysReady(ctx context.Context, ids []qkd.KeyID, outboxID string) error
	// PendingOutbox lists outbox entries of a link, oldest first.
	PendingOutbox(ctx context.Context, link qkd.LinkID) ([]Outbox, error)
	// AbortAllocation removes an outbox entry and deletes the Pending keys it
	// made (an allocation the peer refused for good).
	AbortAllocation(ctx context.Context, outboxID string, ids []qkd.KeyID) error
}

// Delivery hands Ready keys to the SAEs they are reserved for (the key
// requests of ETSI 014 and ETSI 004), durably before they leave.
type Delivery interface {
	// TakeForPair delivers Number Ready, unexpired keys of (Master, Slaves,
	// SizeBits) to Caller (who must be in Pending): all or none
	// (qkd.ErrInsufficientKey). Keys of a key stream (Key.Stream != "")
	// are never taken this way.
	//
	// Delivery is durable before keys leave (TakeForPair and TakeByID):
	// when keys are returned, the record that they were delivered survives
	// power loss, not only a crash of the process — the store runs the
	// barrier (Sync) itself after marking them delivered, or serves them
	// from material set aside durably beforehand — so a key is never
	// delivered twice. If that fails after the keys were marked delivered
	// they are not returned and are lost (never the other way round), and
	// once the store cannot make anything durable any more it takes no
	// keys at all (the error of Sync).
	TakeForPair(ctx context.Context, r TakeRequest) ([]Key, error)
	// TakeByID delivers the keys r.IDs to r.Caller, all or none: an unknown,
	// expired, not Ready key, or one whose Master is not r.Master →
	// qkd.ErrNotFound; a caller that is neither in Pending nor ever was a
	// recipient (Master or Slaves) → qkd.ErrUnauthorized; a recipient who
	// already had it → qkd.ErrNotFound. Durable before the keys are
	// returned, as TakeForPair.
	TakeByID(ctx context.Context, r TakeRequest) ([]Key, error)
	// CountKeys counts Ready, unexpired keys of (master, slaves, sizeBits)
	// deliverable to caller, as TakeForPair would take them (no stream keys).
	CountKeys(ctx context.Context, r TakeRequest) (int, error)
}

// Keys keeps the stored keys apart from their delivery: it lists a pair's
// keys, splits and merges them, and deletes them by ID or at expiry.
type Keys interface {
	// DeleteKeys deletes keys by ID (absent ones are ignored); returns how many.
	DeleteKeys(ctx context.Context, ids []qkd.KeyID) (int, error)
	// ExpireKeys deletes keys with Expires <= now and returns them (without
	// Data); relay step records with Expires <= now go too.
	ExpireKeys(ctx context.Context, now time.Time) ([]Key, error)
	// ResizeKeys applies a split or merge (see Resize) atomically: the old
	// keys are deleted (securely, as DeleteKeys), the new ones stored with
	// the old keys' pair and Pending list, the earliest Created and the
	// earliest Expires of the old keys, and the outbox entry stored; the
	// operation's ID is remembered until the new keys expire. An ID applied
	// before → ErrApplied and nothing changes. An old key that is absent,
	// expired, on another link, of another pair or of a key stream
	// (Key.Stream != "") → qkd.ErrNotFound; one
	// that is Pending, or a new ID or outbox ID that exists → ErrConflict;
	// a malformed Resize (no ID, link or master; no old or no new key, or
	// one into one; an ID repeated within or across Old and New; old keys
	// whose Pending lists differ; bytes that do not divide into len(New)
	// keys of whole bytes) → ErrBadAllocation.
	ResizeKeys(ctx context.Context, r Resize) error
	// ListKeys returns the Ready, unexpired keys f selects, oldest first,
	// without Data. Keys of a key stream (Key.Stream != "") are never
	// listed: they are not the pair's to split, merge or close.
	ListKeys(ctx context.Context, f KeyFilter) ([]Key, error)
}

// Slots holds the one-time MAC key slots that authenticate a link's
// KMS↔KMS messages: bootstrapped from the link's pre-shared key
// (InitLink), made from material by an Allocation, each opened once.
type Slots interface {
	// InitLink stores a link's PSK slots once; returns false (and changes
	// nothing) if the link was initialised before.
	InitLink(ctx context.Context, init LinkInit) (bool, error)
	// TakeSlot removes and returns the MAC slot seq of sender on a link;
	// qkd.ErrNotFound if it does not exist (used, or not yet allocated).
	TakeSlot(ctx context.Context, link qkd.LinkID, sender qkd.NodeID, seq uint64) (secret.MACKey, error)
	// UseSlot opens the MAC slot seq of sender on a link and calls check
	// with it; only if check returns true is the slot deleted (used), in
	// the same transaction. It returns the slot's material (the caller
	// wipes it) and check's verdict; qkd.ErrNotFound if the slot does not
	// exist. A message whose tag fails check thus uses up nothing.
	UseSlot(ctx context.Context, link qkd.LinkID, sender qkd.NodeID, seq uint64, check func(secret.MACKey) bool) (secret.MACKey, bool, error)
	// SlotBounds returns the lowest existing slot and one past the highest
	// slot ever stored for sender on a link (next = first free number).
	SlotBounds(ctx context.Context, link qkd.LinkID, sender qkd.NodeID) (lowest, next uint64, count int, err error)
}

// RelaySteps applies the hops of a multi-hop key relay
// (docs/relay-design.md), each atomically and at most once, and keeps
// their records until they expire.
type RelaySteps interface {
	// ApplyRelayStep consumes the step's pieces (each must start at its
	// block's current offset, as in Allocate: otherwise ErrConflict) and
	// calls build with the pad bytes of In and of Out (concatenated in
	// order; empty when there are no pieces) inside the transaction; build
	// must be pure and fast. What build returns is stored with the step's
	// record. A step ID applied before → ErrApplied, nothing changes. An
	// error from build aborts the step. The pads are wiped by the store
	// after build returns.
	//
	// build is called only once the step is known to apply (not applied
	// before, pieces free). Its result is checked as Allocate checks an
	// allocation (ErrBadAllocation; existing key or outbox IDs →
	// ErrConflict), except that each key carries its SizeBits/8 bytes; the
	// store owns those bytes and wipes them once stored. Key.Link and
	// Outbox.Link default to OutLink (InLink if there are no Out pieces),
	// Key.State to Pending. In is consumed before Out, so if both name the
	// same link Out starts where In ends. The step must have an ID and at
	// least one piece (ErrBadAllocation).
	ApplyRelayStep(ctx context.Context, s RelayStep, build func(in, out secret.Bytes) (RelayResult, error)) error
	// RelayRecord returns the record of an applied step; qkd.ErrNotFound if
	// there is none (never applied, or deleted by ExpireKeys: a record is
	// kept, and ApplyRelayStep answers ErrApplied, until then).
	RelayRecord(ctx context.Context, id string) ([]byte, error)
}

// Syncer is the store's durability barrier, which a consumer runs before
// anything made with one-time material leaves the node.
type Syncer interface {
	// Sync is the durability barrier: when it returns nil, every
	// operation that returned before it was called survives power loss,
	// not only a process crash. One-time material (MAC slots, relay pads,
	// delivered keys) is marked used by a committed operation; the caller
	// calls Sync after that and before any tag, ciphertext or key made
	// with it leaves the node. Concurrent calls share one flush (group
	// commit), but a call is only answered by a flush that started after
	// it; a call with nothing new to flush returns at once. It does not
	// wait for other operations, only for the flush. A flush that failed
	// leaves the store unable to promise durability: every later Sync
	// returns that error. After Close it returns the store's closed error,
	// after Zeroize ErrZeroized.
	Sync(ctx context.Context) error
}

// StatsReader reports a link's counts for status, metrics and the
// housekeeping that keeps links and pools stocked.
type StatsReader interface {
	// Stats returns counts for one link. It is asked for every link on
	// every housekeeping tick and status request: it must be cheap (the
	// sqlite store keeps the counts in memory and reads no table).
	Stats(ctx context.Context, link qkd.LinkID) (LinkStats, error)
}

// Zeroizer destroys a store's contents for good: the node's zeroisation,
// which the key service carries out.
type Zeroizer interface {
	// Zeroize destroys every record and every key-encryption key at once.
	Zeroize(ctx context.Context) error
}

// Store is a node's key store: every role, and Close, which whoever opened
// the store calls (the node). It is what a backend implements (sqlite,
// memstore) and what storetest checks. All methods are safe for concurrent
// use; after Zeroize every method returns ErrZeroized.
type Store interface {
	Blocks
	Allocator
	Delivery
	Keys
	Slots
	RelaySteps
	Syncer
	StatsReader
	Zeroizer
	io.Closer
}

// Store plays every role: a backend that is a Store serves every consumer.
var (
	_ Blocks      = Store(nil)
	_ Allocator   = Store(nil)
	_ Delivery    = Store(nil)
	_ Keys        = Store(nil)
	_ Slots       = Store(nil)
	_ RelaySteps  = Store(nil)
	_ Syncer      = Store(nil)
	_ StatsReader = Store(nil)
	_ Zeroizer    = Store(nil)
)
