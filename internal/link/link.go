package link

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Transport carries sealed messages to the peer KMS and returns its sealed
// reply (peer.Client implements it).
type Transport interface {
	Call(ctx context.Context, t kmsproto.Type, payload []byte) ([]byte, error)
	// Ping checks that the peer answers, without spending key material.
	Ping(ctx context.Context) error
}

// Store is what a link needs of the key store (keystore.Store, every
// backend, is one): it confirms blocks with the peer, allocates their
// material into keys and MAC slots through the outbox, splits, merges and
// deletes keys for either end, opens the MAC slots of its messages, syncs
// before a tag leaves, and reports the link's counts.
type Store interface {
	keystore.Blocks
	keystore.Allocator
	keystore.Keys
	keystore.Slots
	keystore.Syncer
	keystore.StatsReader
}

// Observer receives counts for metrics. All methods must be cheap.
type Observer interface {
	MACFailure(link qkd.LinkID, reason string)
	Message(link qkd.LinkID, t kmsproto.Type, result string)
	// Batch reports a batch's definite answer and how many of its blocks
	// it confirmed (confirmed) or discarded (mismatch, missing); blocks
	// a "missing" answer leaves unconfirmed are not counted.
	Batch(link qkd.LinkID, result string, blocks int)
	InternalBytes(link qkd.LinkID, n int)
	PSKTag(link qkd.LinkID)
}

// Errors the link layer returns to the node's CoAP handler.
var (
	// ErrUnauthenticated: bad tag, replayed or unknown message number.
	ErrUnauthenticated = errors.New("link: message not authenticated")
	// ErrBadRequest: malformed message.
	ErrBadRequest = errors.New("link: malformed message")
	// ErrNoSlots: no MAC key left to send with; key material is needed first.
	ErrNoSlots = errors.New("link: no MAC key material left")
	// ErrRefused: the peer answered with an error code.
	ErrRefused = errors.New("link: peer refused the request")
)

// Options configure one link.
type Options struct {
	ID        qkd.LinkID
	Self      qkd.NodeID
	Peer      qkd.NodeID
	Store     Store
	Transport Transport
	// PSK bootstraps the MAC slots at the link's first start; ignored later.
	// Its length must be a multiple of 2*keystore.SlotSize.
	PSK      secret.PSK
	LocalSAE func(qkd.SAEID) bool
	// Forwarder relays forward_keys messages (nil: refused with no_route).
	Forwarder Forwarder
	// MAC is the ITS MAC scheme of the link's messages (zero:
	// itsmac.DefaultScheme, Poly1305). Both ends must use the same.
	MAC itsmac.Scheme
	// MACEpoch is the number of messages of one sender whose Wegman–Carter
	// tags share a hash key (even, ≥ 2; default DefaultMACEpoch). Both ends
	// must use the same. Ignored for Poly1305.
	MACEpoch int

	BatchBlocks int           // blocks per new_key_batch (default 16)
	BatchDelay  time.Duration // max wait for a full batch while the link is low on material (default 4s; the first batch of a link goes at once)
	// IdleBatchDelay is the max wait for a full batch while the link
	// holds at least MaterialLowWater bytes of confirmed material (default
	// 4 × BatchDelay): an idle link confirms its blocks in full batches,
	// a few store transactions and one round trip per BatchBlocks blocks.
	IdleBatchDelay time.Duration
	// MaterialLowWater: below this many bytes of confirmed material the
	// link confirms with BatchDelay (default one MAC slot refill, 16 KiB
	// with the default SlotRefill).
	MaterialLowWater int64
	SlotLowWater     int           // refill own MAC slots below this (default 32)
	SlotRefill       int           // slots per make_keys_internal (default 256)
	StatusInterval   time.Duration // get_status period (default 30s)
	CallTimeout      time.Duration // per peer round trip (default 5s)
	RelayTimeout     time.Duration // per forward_keys, which waits for the whole route (default 30s)
	RetryDelay       time.Duration // first retry delay (default 50ms, doubling to 2s)

	Logger   *slog.Logger
	Observer Observer
	Now      func() time.Time
	Rand     io.Reader
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.BatchBlocks, 16)
	def(&o.SlotLowWater, 32)
	def(&o.SlotRefill, 256)
	defd(&o.BatchDelay, 4*time.Second)
	defd(&o.IdleBatchDelay, 4*o.BatchDelay)
	if o.MaterialLowWater <= 0 {
		o.MaterialLowWater = int64(o.SlotRefill * keystore.SlotSize)
	}
	defd(&o.StatusInterval, 30*time.Second)
	defd(&o.CallTimeout, 5*time.Second)
	defd(&o.RelayTimeout, 30*time.Second)
	defd(&o.RetryDelay, 50*time.Millisecond)
	if o.MAC == 0 {
		o.MAC = itsmac.DefaultScheme
	}
	if o.MAC == itsmac.SchemeWegmanCarter {
		def(&o.MACEpoch, DefaultMACEpoch)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LocalSAE == nil {
		o.LocalSAE = func(qkd.SAEID) bool { return false }
	}
}

// Link is one end of a QKD link's KMS↔KMS protocol.
type Link struct {
	o      Options
	log    *slog.Logger
	leader bool
	parity int // index parity of the blocks this end allocates from

	wakeConfirm chan struct{}
	// unbatched counts the blocks ingested since the confirm loop last
	// looked (leader only): Ingest wakes the loop only for the first of
	// them and once a full batch is there, not for every block.
	unbatched  atomic.Int64
	wakeOutbox chan struct{}
	wakeSlots  chan struct{}
	// queued estimates the outbox entries other than MAC slot refills
	// that wait to be sent: each needs a MAC slot (sendOutbox sets it
	// from the outbox, queueAndWait adds the entries it queues).
	queued atomic.Int64

	allocMu sync.Mutex // serialises local allocations (store only, never a round trip)

	lay       layout    // message numbers → MAC slots
	own       *slotBook // this end's MAC slots, to send
	peerSlots *slotBook // the peer's MAC slots, to verify

	mu        sync.Mutex
	nextSeq   uint64                // guarded by mu: next own message number to use
	usableEnd uint64                // guarded by mu: own slots < usableEnd are known to the peer
	pskEnd    uint64                // guarded by mu: own slots < pskEnd came from the PSK
	waiters   map[string]chan error // guarded by mu: outbox ID → completion
	peer      PeerStatus            // guarded by mu
	inactive  bool                  // guarded by mu: this node was zeroised
	slotsCh   chan struct{}         // guarded by mu: closed when slots or queued entries change

	retained retainedSet // sealed requests to send again identically (exchange.go)
	replies  replyCache  // sealed replies to the peer's recent requests (replycache.go)

	// batch is the new_key_batch in flight, fixed at its first send
	// (confirm.go); batchLoaded: the store was searched for a persisted one.
	// Both are used by the confirm loop only.
	batch       *fixedBatch
	batchLoaded bool

	apps    appTable      // applications the peer announced (apps.go)
	streams streamHandler // the node's 004 key stream service (streams.go)
}

// PeerStatus is what this end knows of the peer.
type PeerStatus struct {
	State    string // kmsproto.StateActive / StateInactive / "" unknown
	LastSeen time.Time
	Err      string
}

// New prepares a link; Start runs it.
func New(o Options) (*Link, error) {
	o.defaults()
	if o.ID == "" || o.Self == "" || o.Peer == "" || o.Self == o.Peer || o.Store == nil || o.Transport == nil {
		return nil, errors.New("link: incomplete options")
	}
	lay, err := newLayout(o.MAC, o.MACEpoch)
	if err != nil {
		return nil, err
	}
	l := &Link{
		o:           o,
		log:         o.Logger.With("link", string(o.ID), "peer", string(o.Peer)),
		leader:      o.Self < o.Peer,
		wakeConfirm: make(chan struct{}, 1),
		wakeOutbox:  make(chan struct{}, 1),
		wakeSlots:   make(chan struct{}, 1),
		waiters:     map[string]chan error{},
		lay:         lay,
		own:         newSlotBook(o.Store, o.ID, o.Self, lay),
		peerSlots:   newSlotBook(o.Store, o.ID, o.Peer, lay),
	}
	if !l.leader {
		l.parity = 1
	}
	return l, nil
}

// ID returns the link's ID.
func (l *Link) ID() qkd.LinkID { return l.o.ID }

// Peer returns the peer node.
func (l *Link) Peer() qkd.NodeID { return l.o.Peer }

// MACScheme returns the link's ITS MAC scheme as configured:
// "poly1305" or "wegman_carter" (QUICKS capabilities list it as
// its_mac:<scheme>).
func (l *Link) MACScheme() string { return l.o.MAC.String() }

// Leader reports whether this end confirms blocks and allocates even blocks.
func (l *Link) Leader() bool { return l.leader }

// Init bootstraps the MAC slots from the PSK (first start only) and loads
// the send counters from the store. Call before Start and before handling.
func (l *Link) Init(ctx context.Context) error {
	if err := l.initPSK(ctx); err != nil {
		return err
	}
	lowest, next, count, err := l.o.Store.SlotBounds(ctx, l.o.ID, l.o.Self)
	if err != nil {
		return fmt.Errorf("link %s: slot bounds: %w", l.o.ID, err)
	}
	usable := next
	if count == 0 {
		lowest = next
	}
	pending, err := l.pendingInternal(ctx)
	if err != nil {
		return err
	}
	if pending >= 0 && uint64(pending) < usable {
		usable = uint64(pending)
	}
	l.mu.Lock()
	l.nextSeq, l.usableEnd = l.lay.msgsBelow(lowest), usable
	l.mu.Unlock()
	attrs := []any{"mac", l.MACScheme()}
	if l.lay.wc {
		attrs = append(attrs, "mac_epoch", l.o.MACEpoch)
	}
	l.log.Info("link MAC", attrs...)
	return nil
}

func (l *Link) initPSK(ctx context.Context) error {
	psk := l.o.PSK.Expose()
	half := len(psk) / 2
	if half < 4*keystore.SlotSize || half%keystore.SlotSize != 0 {
		return fmt.Errorf("link %s: PSK must be a multiple of %d bytes and at least %d", l.o.ID, 2*keystore.SlotSize, 8*keystore.SlotSize)
	}
	first, second := l.o.Self, l.o.Peer
	if !l.leader {
		first, second = second, first
	}
	n := half / keystore.SlotSize
	init := keystore.LinkInit{
		Link:     l.o.ID,
		Slots:    []keystore.SlotRange{{Sender: first, First: 0, Count: n}, {Sender: second, First: 0, Count: n}},
		Material: []secret.Bytes{secret.From(psk[:half]), secret.From(psk[half:])},
	}
	defer secret.WipeAll(init.Material)
	fresh, err := l.o.Store.InitLink(ctx, init)
	if err != nil {
		return fmt.Errorf("link %s: init from PSK: %w", l.o.ID, err)
	}
	if fresh {
		l.log.Info("link bootstrapped from pre-shared key", "psk_slots", n)
	}
	l.mu.Lock()
	l.pskEnd = uint64(n)
	l.mu.Unlock()
	return nil
}

// Start runs the link until ctx ends: its service loop (MAC slots,
// outbox, status), the leader's confirm loop, and the first get_status,
// which ends once answered or failed.
func (l *Link) Start(ctx context.Context) *sync.WaitGroup {
	loops := []func(context.Context){l.serviceLoop, l.firstStatus}
	if l.leader {
		loops = append(loops, l.confirmLoop)
	}
	var wg sync.WaitGroup
	for _, f := range loops {
		wg.Go(func() { f(ctx) })
	}
	return &wg
}

// firstStatus sends each end's first get_status, beside the service loop
// (a peer not up yet would hold the loop for a call timeout).
func (l *Link) firstStatus(ctx context.Context) {
	if err := l.pollStatus(ctx); err != nil {
		l.log.Debug("get_status", "err", err)
	}
}

// Ingest stores a block pushed by the local QKD module.
func (l *Link) Ingest(ctx context.Context, index uint64, data secret.Bytes) error {
	err := l.o.Store.AddBlock(ctx, keystore.Block{Link: l.o.ID, Index: index, State: keystore.BlockUnconfirmed,
		Data: data, Remaining: data.Len(), Arrived: l.o.Now()})
	if err != nil {
		return fmt.Errorf("link %s: store block %d: %w", l.o.ID, index, err)
	}
	if l.leader {
		if n := l.unbatched.Add(1); n == 1 || n >= int64(l.o.BatchBlocks) {
			poke(l.wakeConfirm)
		}
	}
	return nil
}

// PeerStatus returns what this end knows of the peer.
func (l *Link) PeerStatus() PeerStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peer
}

// SlotsLeft returns the number of messages this end can still send with
// the MAC keys the peer knows (one per MAC slot with Poly1305, about two
// with Wegman–Carter).
func (l *Link) SlotsLeft() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if end := l.lay.msgsBelow(l.usableEnd); end > l.nextSeq {
		return int(end - l.nextSeq)
	}
	return 0
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

type nopObserver struct{}

func (nopObserver) MACFailure(qkd.LinkID, string)             {}
func (nopObserver) Message(qkd.LinkID, kmsproto.Type, string) {}
func (nopObserver) Batch(qkd.LinkID, string, int)             {}
func (nopObserver) InternalBytes(qkd.LinkID, int)             {}
func (nopObserver) PSKTag(qkd.LinkID)                         {}
