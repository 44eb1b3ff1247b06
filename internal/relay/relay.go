package relay

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Entry is one key stream's forwarding entry at this node (QUICKS
// link/relay): where the stream comes from and goes to.
type Entry struct {
	Stream string
	Source qkd.NodeID
	Dest   qkd.NodeID
	Master qkd.SAEID
	Slaves []qkd.SAEID
	// Prev and Next are the neighbours of this node on the route. At the
	// source Prev is "" and Next the first hop; at the destination Next is
	// "" and Prev the last hop. At an intermediate node both are set and
	// their order does not matter (QUICKS link/relay names both neighbours
	// in next_node_info without saying which is upstream): a step arriving
	// from one of them goes on to the other.
	Prev, Next qkd.NodeID
	// Route, if known, is the whole configured route, source first and
	// destination last (QUICKS link/relay qkms_route): the destination
	// checks the signed forwarding path of hybrid keys against it.
	Route []qkd.NodeID
	// Group, if set, makes the entry path Path (0-based) of the Paths
	// paths of the multipath key stream Group (docs/relay-design.md
	// "Multipath relay"): the pair's keys, registered as Group, travel
	// along this path's Stream too, as Mode says (MultipathSpread or
	// MultipathSplit). Rate is the path's share of the stream's rate,
	// bit/s (spread divides batches by it; 0 everywhere: equal parts).
	Group       string
	Path, Paths int
	Mode        string
	Rate        float64
}

// intermediate reports whether the entry is an intermediate node's.
func (en Entry) intermediate() bool { return en.Prev != "" && en.Next != "" }

// hopAfter returns where a step of the stream that arrived from neighbour
// from goes next: "" where it ends (the destination; the source for a
// step that runs the route back); false if the entry does not take such
// steps from that neighbour.
func (en Entry) hopAfter(from qkd.NodeID, back bool) (qkd.NodeID, bool) {
	switch {
	case from == "":
		return "", false
	case en.intermediate() && from == en.Prev:
		return en.Next, true
	case en.intermediate() && from == en.Next:
		return en.Prev, true
	case !back && en.Next == "" && from == en.Prev:
		return "", true
	case back && en.Prev == "" && from == en.Next:
		return "", true
	}
	return "", false
}

// Store is what the relay engine needs of the key store (keystore.Store,
// every backend, is one): it applies relay steps and reads their records,
// makes a multicast's Pending keys Ready once every leg answered
// (SetKeysReady), and deletes the keys of a multicast that failed.
type Store interface {
	keystore.RelaySteps
	keystore.Allocator
	keystore.Keys
}

// Options configure an Engine.
type Options struct {
	Node     qkd.NodeID
	Store    Store
	Links    []*link.Link
	LocalSAE func(qkd.SAEID) bool
	// Rand is the source of relayed secrets (crypto/rand by default; an
	// external RNG device can be plugged in here).
	Rand   io.Reader
	Logger *slog.Logger
	Now    func() time.Time
	// OnDelivered, if set, is called (without locks held) after this node,
	// as destination, stored keys of a key stream: the node tells its SDN
	// agent the stream is established (QUICKS PATCH link/registration).
	OnDelivered func(stream string, slaves []qkd.SAEID)
	// OnStream, if set, is called (without locks held) at the destination
	// of a step whose keys are chunks of an ETSI 004 key stream
	// (ForwardKeysReq.Etsi004), once its keys are stored here, and again
	// for every retry or replay of the step (Poll); n is the number of
	// chunks of the step and stream the relay key stream it came along.
	// Its answer, the destination's end of the
	// stream, goes back to the source in ForwardKeysResp.Etsi004.
	OnStream func(ctx context.Context, stream string, info kmsproto.RelayStream, n int) *kmsproto.StreamInfo
	// Hybrid, if set, turns on post-quantum hybrid keys (HybridOptions).
	Hybrid *HybridOptions
}

// Engine relays keys for this node: as source, intermediate or destination.
type Engine struct {
	o      Options
	log    *slog.Logger
	byPeer map[qkd.NodeID]*link.Link // the first link to each neighbour
	peers  map[qkd.NodeID][]*link.Link
	byLink map[qkd.LinkID]*link.Link
	turn   map[qkd.NodeID]*atomic.Uint64 // round robin over parallel links
	// spreadTurn rotates the remainder of spread batches over the paths.
	spreadTurn atomic.Uint64
	hyb        *hybridState // nil: no hybrid keys
	spy        *spyHooks    // tests only: an honest-but-curious node

	mu       sync.RWMutex
	table    map[string]Entry                                                                                // guarded by mu
	onStream func(ctx context.Context, stream string, info kmsproto.RelayStream, n int) *kmsproto.StreamInfo // guarded by mu
}

// SetOnStream replaces Options.OnStream (the node wires its ETSI 004 key
// stream service, built after the engine).
func (e *Engine) SetOnStream(f func(ctx context.Context, stream string, info kmsproto.RelayStream, n int) *kmsproto.StreamInfo) {
	e.mu.Lock()
	e.onStream = f
	e.mu.Unlock()
}

// New returns an engine over the node's links.
func New(o Options) *Engine {
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LocalSAE == nil {
		o.LocalSAE = func(qkd.SAEID) bool { return false }
	}
	e := &Engine{o: o, log: o.Logger, byPeer: map[qkd.NodeID]*link.Link{}, peers: map[qkd.NodeID][]*link.Link{},
		byLink: map[qkd.LinkID]*link.Link{}, turn: map[qkd.NodeID]*atomic.Uint64{}, table: map[string]Entry{},
		onStream: o.OnStream, hyb: newHybridState(o.Hybrid)}
	for _, l := range o.Links {
		if _, dup := e.byPeer[l.Peer()]; !dup {
			e.byPeer[l.Peer()] = l
			e.turn[l.Peer()] = new(atomic.Uint64)
		}
		e.peers[l.Peer()] = append(e.peers[l.Peer()], l)
		e.byLink[l.ID()] = l
	}
	return e
}

// outLinks returns the links to peer, starting with the next one in turn,
// so that relay steps spread over parallel QKD links.
func (e *Engine) outLinks(peer qkd.NodeID) []*link.Link {
	ls := e.peers[peer]
	if len(ls) <= 1 {
		return ls
	}
	i := int(e.turn[peer].Add(1) % uint64(len(ls)))
	return append(slices.Clone(ls[i:]), ls[:i]...)
}

// Errors of the engine.
var (
	ErrUnknownStream = errors.New("relay: no forwarding entry for the key stream")
	ErrBadEntry      = errors.New("relay: forwarding entry does not fit this node")
	// ErrKeysExist: the destination holds a key with one of the IDs
	// (RelayIDs); the keys were dropped at both ends.
	ErrKeysExist = errors.New("relay: a key with one of these IDs exists at the destination")
)

// Install adds or replaces a forwarding entry.
func (e *Engine) Install(en Entry) error {
	switch {
	case en.Stream == "" || en.Source == "" || en.Dest == "" || en.Master == "" || len(en.Slaves) == 0:
		return fmt.Errorf("%w: incomplete", ErrBadEntry)
	case en.Source == en.Dest, en.Prev != "" && en.Prev == en.Next:
		return fmt.Errorf("%w: route loops", ErrBadEntry)
	case en.Next != "" && e.byPeer[en.Next] == nil, en.Prev != "" && e.byPeer[en.Prev] == nil:
		return fmt.Errorf("%w: hop is not a neighbour of %s", ErrBadEntry, e.o.Node)
	case (en.Source == e.o.Node) != (en.Prev == ""), (en.Dest == e.o.Node) != (en.Next == ""):
		return fmt.Errorf("%w: ends and hops disagree", ErrBadEntry)
	}
	if err := checkMember(en); err != nil {
		return err
	}
	e.mu.Lock()
	e.table[en.Stream] = en
	e.mu.Unlock()
	return nil
}

// Remove deletes a forwarding entry; steps already recorded finish along
// the route they took.
func (e *Engine) Remove(stream string) {
	e.mu.Lock()
	delete(e.table, stream)
	e.mu.Unlock()
}

// Entries returns a copy of the forwarding table, sorted by stream.
func (e *Engine) Entries() []Entry {
	e.mu.RLock()
	out := make([]Entry, 0, len(e.table))
	for _, en := range e.table {
		out = append(out, en)
	}
	e.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Stream, b.Stream) })
	return out
}

// Lookup returns a stream's entry. At the ends of a multipath stream its
// group ID names an entry too: the pair and the ends, without hops, and
// Group, Paths and Mode set.
func (e *Engine) Lookup(stream string) (Entry, bool) {
	if en, ok := e.entry(stream); ok {
		return en, true
	}
	return e.groupEntry(stream)
}

// entry is stream's own forwarding entry (not a group's).
func (e *Engine) entry(stream string) (Entry, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	en, ok := e.table[stream]
	return en, ok
}

func (e *Engine) local(saes []qkd.SAEID) []qkd.SAEID {
	var out []qkd.SAEID
	for _, s := range saes {
		if e.o.LocalSAE(s) {
			out = append(out, s)
		}
	}
	return out
}

func (e *Engine) newStep() string {
	b := make([]byte, 16)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}

// xorInto sets dst = a XOR b (equal lengths).
func xorInto(dst, a, b []byte) { subtle.XORBytes(dst, a, b) }

// Relay starts n keys of sizeBits along stream from this node (its source)
// and returns their IDs once the destination holds them; they are then
// Ready here for the stream's master.
func (e *Engine) Relay(ctx context.Context, stream string, sizeBits, n int, ttl time.Duration) ([]qkd.KeyID, error) {
	en, ok := e.entry(stream)
	if !ok { // a multipath stream's group, or nothing
		if ps := e.paths(stream, false); len(ps) > 0 {
			return e.relayPaths(ctx, stream, ps, sizeBits, n, ttl, false)
		}
	}
	if !ok || en.Source != e.o.Node || en.member() {
		return nil, fmt.Errorf("%w: %s", ErrUnknownStream, stream)
	}
	return e.start(ctx, en, sizeBits, n, ttl, e.legOf(en, false))
}

// start draws n new keys of en's pair and sends them over l (l.next nil:
// not a neighbour, a bad request). The outbox makes them Ready here when
// the route answers, also after this call gave up waiting.
func (e *Engine) start(ctx context.Context, en Entry, sizeBits, n int, ttl time.Duration, l leg) ([]qkd.KeyID, error) {
	if n <= 0 || sizeBits <= 0 || sizeBits%8 != 0 || l.next == nil {
		return nil, fmt.Errorf("relay: bad request %d×%d bits", n, sizeBits)
	}
	b, err := e.newBatch(en.Master, en.Slaves, sizeBits, n, ttl)
	if err != nil {
		return nil, err
	}
	defer b.k.Wipe()
	if err := e.sendStep(ctx, b, l, true, b.ids); err != nil {
		return nil, err
	}
	return b.ids, nil
}

// BackStream returns the key stream of the pair (master, slaves) whose
// route ends at this node (its destination): the stream RelayBack sends
// keys along, backwards. Hybrid streams have none (their path signatures
// run from the source).
func (e *Engine) BackStream(master qkd.SAEID, slaves []qkd.SAEID) (string, bool) {
	var ends []Entry
	e.mu.RLock()
	for _, en := range e.table {
		if en.Dest == e.o.Node && en.Next == "" && en.Master == master && slices.Equal(en.Slaves, slaves) {
			ends = append(ends, en)
		}
	}
	e.mu.RUnlock()
	best := ""
	for _, en := range ends { // the policy is called outside e.mu
		name := en.Stream
		if en.member() {
			name = en.Group // the paths of a multipath stream are relayed back together
		}
		if !e.hybridRequired(en) && (best == "" || name < best) {
			best = name
		}
	}
	return best, best != ""
}

// RelayBack relays n keys of sizeBits of the stream's pair from this node,
// the stream's destination, back along its route to its source node, and
// returns their IDs once the source node holds them (Ready there for the
// stream's master); they are then Ready here for the stream's slaves
// attached to this node. This is how the slaves' end of a remote pair
// relays ahead too (docs/relay-design.md "Both ends relay ahead"): each
// hop's pad comes from the other end's half of the link, so a pair used
// in one direction draws on the whole of every link of its route. Keys of
// hybrid streams and ETSI 004 chunks are never relayed back.
func (e *Engine) RelayBack(ctx context.Context, stream string, sizeBits, n int, ttl time.Duration) ([]qkd.KeyID, error) {
	en, ok := e.entry(stream)
	if !ok { // a multipath stream's group, or nothing
		if ps := e.paths(stream, true); len(ps) > 0 && !slices.ContainsFunc(ps, e.hybridRequired) {
			return e.relayPaths(ctx, stream, ps, sizeBits, n, ttl, true)
		}
	}
	if !ok || en.Dest != e.o.Node || en.Next != "" || e.hybridRequired(en) || en.member() {
		return nil, fmt.Errorf("%w: %s", ErrUnknownStream, stream)
	}
	return e.start(ctx, en, sizeBits, n, ttl, e.legOf(en, true))
}

// Receipt names a relay step this node started as source: the step and
// the link its pad came from. Poll replays it.
type Receipt struct {
	Step string
	Link qkd.LinkID
}

// RelayIDs is Relay with keys named by the caller (ids, all new): the
// chunks of an ETSI 004 key stream, whose IDs both ends derive from the
// stream. info, if not nil, travels with the step (ForwardKeysReq.Etsi004:
// the destination node learns the stream, Options.OnStream); its Source
// and Dest must be the stream's master and only slave. On success the
// destination holds the keys and they are Ready here; peer is the
// destination's end of the stream as it answered (nil if unknown).
func (e *Engine) RelayIDs(ctx context.Context, stream string, sizeBits int, ids []qkd.KeyID, ttl time.Duration, info *kmsproto.RelayStream) (r Receipt, peer *kmsproto.StreamInfo, err error) {
	en, err := e.onePath(stream)
	if err != nil {
		return r, nil, err
	}
	if en.Source != e.o.Node {
		return r, nil, fmt.Errorf("%w: %s", ErrUnknownStream, stream)
	}
	stream = en.Stream
	next := e.byPeer[en.Next]
	switch {
	case len(ids) == 0 || len(ids) > 1<<14 || sizeBits <= 0 || sizeBits%8 != 0 || next == nil || hasDupIDs(ids):
		return r, nil, fmt.Errorf("relay: bad request %d×%d bits", len(ids), sizeBits)
	case info != nil && (info.KSID == "" || info.Source != en.Master || len(en.Slaves) != 1 || info.Dest != en.Slaves[0]):
		return r, nil, fmt.Errorf("relay: key stream information does not fit stream %s", stream)
	}
	b, err := e.newBatch(en.Master, en.Slaves, sizeBits, len(ids), ttl)
	if err != nil {
		return r, nil, err
	}
	defer b.k.Wipe()
	copy(b.ids, ids)
	if info != nil {
		b.stream004 = info.KSID
	}
	l := leg{stream: stream, dest: en.Dest, slaves: en.Slaves, next: next, info: info, sent: &r, hybrid: e.hybridRequired(en)}
	if err := e.sendStep(ctx, b, l, true, b.ids); err != nil {
		return r, nil, err
	}
	if info == nil {
		return r, nil, nil
	}
	peer, err = e.Poll(ctx, r)
	if err != nil {
		e.log.Debug("key stream state of a delivered step not had", "stream", stream, "err", err)
	}
	return r, peer, nil
}

// Poll sends the step of r again, as recorded (a retry: nothing is
// consumed anywhere, every hop answers from its record), and returns the
// destination's answer about the step's ETSI 004 key stream (nil if the
// step carries none). The source of a key stream uses it to learn the
// state of the far end without relaying keys. The record lives as long
// as the step's keys (their TTL).
func (e *Engine) Poll(ctx context.Context, r Receipt) (*kmsproto.StreamInfo, error) {
	out := e.byLink[r.Link]
	if out == nil || r.Step == "" {
		return nil, fmt.Errorf("relay: poll of an unknown step")
	}
	body, err := e.o.Store.RelayRecord(ctx, r.Step)
	if err != nil {
		return nil, fmt.Errorf("relay: poll: %w", err)
	}
	resp, err := out.Forward(ctx, body)
	if err != nil {
		return nil, fmt.Errorf("relay: poll: %w", err)
	}
	return resp.Etsi004, nil
}

// batch is the keys of one relay from this node: K drawn once, and their
// IDs, master and slaves as the source stores them.
type batch struct {
	k        secret.Bytes // concat(K), owned by the caller of newBatch
	ids      []qkd.KeyID
	master   qkd.SAEID
	slaves   []qkd.SAEID
	sizeBits int
	created  time.Time
	expires  time.Time
	// stream004: the ETSI 004 key stream the keys are chunks of ("": none).
	stream004 string
}

func (e *Engine) newBatch(master qkd.SAEID, slaves []qkd.SAEID, sizeBits, n int, ttl time.Duration) (*batch, error) {
	k, err := secret.Random(e.o.Rand, n*sizeBits/8)
	if err != nil {
		return nil, err
	}
	now := e.o.Now()
	ids, err := qkd.NewKeyIDs(nil, n)
	if err != nil {
		k.Wipe()
		return nil, err
	}
	return &batch{k: k, ids: ids, master: master, slaves: slices.Clone(slaves), sizeBits: sizeBits,
		created: now, expires: now.Add(ttl)}, nil
}

// leg is where one source step goes: to dest, over next, along stream (""
// for a direct step to a neighbour), for the slaves attached to dest.
type leg struct {
	stream string
	// source: the stream's source node ("": this node); set with back.
	source qkd.NodeID
	dest   qkd.NodeID
	slaves []qkd.SAEID
	next   *link.Link
	info   *kmsproto.RelayStream // the ETSI 004 key stream of the keys, if any
	sent   *Receipt              // if set, receives the step that was sent
	hybrid bool                  // the keys must be hybrid (docs/hybrid.md)
	back   bool                  // the step runs the route back, from dest to source (RelayBack)
	// share, with shareData, makes the step carry one XOR share of the
	// batch's keys instead of the keys (relaySplit).
	share     *kmsproto.Share
	shareData secret.Bytes
}

// sendStep pads the batch with material of l.next and sends it along the
// leg, waiting for the route's answer. store: the source's copy of the
// keys (Pending, for the batch's master and slaves) is stored with the
// step; readyIDs are the keys the outbox makes Ready on delivery.
func (e *Engine) sendStep(ctx context.Context, b *batch, l leg, store bool, readyIDs []qkd.KeyID) error {
	err := e.sendStepOnce(ctx, b, l, store, readyIDs)
	var refused *link.RefusedError
	if l.hybrid && errors.As(err, &refused) && refused.Code == kmsproto.HybridStale {
		// The destination may have forgotten its KEM keys (restart,
		// zeroisation) or lack a new route node's certificate: the
		// refused step was dropped at both ends, and the offer with it.
		// Once more with a new offer, which carries the route's
		// certificates.
		e.log.Debug("hybrid step refused, asking for a new KEM offer", "stream", l.stream, "err", err)
		err = e.sendStepOnce(ctx, b, l, store, readyIDs)
	}
	if errors.As(err, &refused) && refused.Code == kmsproto.KeyExists {
		err = fmt.Errorf("%w: %w", ErrKeysExist, err)
	}
	return err
}

// sendStepOnce is one attempt of sendStep.
func (e *Engine) sendStepOnce(ctx context.Context, b *batch, l leg, store bool, readyIDs []qkd.KeyID) error {
	// Parallel QKD links to the next hop take turns; one without free
	// material of this end's parity hands the step to the next.
	var err error
	for _, out := range e.outLinks(l.next.Peer()) {
		l.next = out
		if err = e.sendStepOver(ctx, b, l, store, readyIDs); !errors.Is(err, qkd.ErrInsufficientKey) {
			return err
		}
	}
	return err
}

// sendStepOver is sendStep over the link l.next.
func (e *Engine) sendStepOver(ctx context.Context, b *batch, l leg, store bool, readyIDs []qkd.KeyID) error {
	n, size := len(b.ids), b.sizeBits/8
	var keys []keystore.Key
	if store {
		// Pending until the route answered, so that the master is never
		// given keys the destination lacks. Keys relayed back are for
		// this node's slaves, who get them by ID only, once the master
		// got them at the other end — where they are stored before the
		// answer leaves: Ready at once (a refused step deletes them,
		// link.Link's outbox). Ready keys of the pair count as stocked.
		state := keystore.KeyPending
		if l.back {
			state = keystore.KeyReady
		}
		keys = make([]keystore.Key, n)
		for i := range keys {
			keys[i] = keystore.Key{ID: b.ids[i], Link: l.next.ID(), State: state, Master: b.master, Slaves: b.slaves,
				Pending: e.local(append([]qkd.SAEID{b.master}, b.slaves...)), SizeBits: b.sizeBits, Created: b.created, Expires: b.expires,
				Stream: b.stream004}
		}
	}
	step := e.newStep()
	var hs *sealed
	if l.hybrid {
		var err error
		if hs, err = e.seal(ctx, b, l, step); err != nil {
			return err
		}
		defer hs.wipe()
	}
	source := l.source
	if source == "" {
		source = e.o.Node
	}
	req := kmsproto.ForwardKeysReq{Stream: l.stream, Step: step, Source: source, Dest: l.dest, Master: b.master, Slaves: l.slaves,
		SizeBits: uint32(b.sizeBits), IDs: b.ids, Created: b.created.UnixMilli(), Expires: b.expires.UnixMilli(), Path: []qkd.NodeID{e.o.Node},
		Etsi004: l.info, Back: l.back, Share: l.share}
	if hs != nil {
		req.Hybrid, req.PathSigns = hs.header, hs.path
	}
	if l.sent != nil {
		*l.sent = Receipt{Step: step, Link: l.next.ID()}
	}
	err := l.next.SendRelay(ctx, step, n*size, func(ps []keystore.Piece) error {
		req.Pieces = link.WirePieces(ps)
		return e.o.Store.ApplyRelayStep(ctx, keystore.RelayStep{ID: step, OutLink: l.next.ID(), Out: ps, Expires: b.expires},
			func(_, out secret.Bytes) (keystore.RelayResult, error) {
				req.Cipher = make([]byte, n*size)
				if l.share != nil {
					xorInto(req.Cipher, l.shareData.Expose(), out.Expose())
				} else {
					xorInto(req.Cipher, b.k.Expose(), out.Expose())
				}
				body, err := kmsproto.Marshal(req)
				if err != nil {
					return keystore.RelayResult{}, err
				}
				ob, err := l.next.OutboxFor(step, body, readyIDs)
				if err != nil {
					return keystore.RelayResult{}, err
				}
				for i := range keys {
					keys[i].Data.Wipe()
					if hs != nil {
						keys[i].Data = hs.keys[i].Clone() // the application key
					} else {
						keys[i].Data = b.k.Slice(i*size, (i+1)*size)
					}
				}
				return keystore.RelayResult{Keys: keys, Record: body, Outbox: ob}, nil
			})
	})
	for i := range keys {
		keys[i].Data.Wipe()
	}
	var refused *link.RefusedError
	switch {
	case hs != nil && err == nil:
		e.countHybrid(false, n)
	case hs != nil && errors.As(err, &refused) && (refused.Code == kmsproto.Hybrid || refused.Code == kmsproto.HybridStale):
		e.dropOffer(l.stream) // ask the destination again next time
	}
	return err
}

// HandleForward implements link.Forwarder: one relay step arriving over in.
// At the destination of a step of an ETSI 004 key stream, the answer
// carries the destination's end of the stream (Options.OnStream), also
// when it repeats an earlier answer.
func (e *Engine) HandleForward(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	if s := req.Etsi004; s != nil && (s.KSID == "" || s.Source != req.Master || len(req.Slaves) != 1 || s.Dest != req.Slaves[0]) {
		return kmsproto.ForwardKeysResp{}, kmsproto.BadRequest, "key stream information does not fit the keys"
	}
	resp, code, msg := e.handleForward(ctx, in, req)
	e.mu.RLock()
	onStream := e.onStream
	e.mu.RUnlock()
	if code == kmsproto.OK && resp.Delivered && req.Etsi004 != nil && req.Dest == e.o.Node && onStream != nil {
		resp.Etsi004 = onStream(ctx, req.Stream, *req.Etsi004, len(req.IDs))
	}
	return resp, code, msg
}

func (e *Engine) handleForward(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	if req.OfferReq {
		if req.Back {
			return kmsproto.ForwardKeysResp{}, kmsproto.BadRequest, "KEM offers are asked along the route, not back"
		}
		return e.handleOfferReq(ctx, in, req)
	}
	n, size := len(req.IDs), int(req.SizeBits)/8
	if n == 0 || n > 1<<14 || req.SizeBits == 0 || req.SizeBits%8 != 0 || len(req.Cipher) != n*size || req.Step == "" ||
		len(req.Path) == 0 || req.Path[len(req.Path)-1] != in.Peer() || slices.Contains(req.Path, e.o.Node) || hasDupIDs(req.IDs) {
		return kmsproto.ForwardKeysResp{}, kmsproto.BadRequest, "malformed relay step"
	}
	if resp, code, msg, done := e.fromRecord(ctx, req.Step); done {
		return resp, code, msg
	}
	pieces, good := in.CheckPeerPieces(req.Pieces, len(req.Cipher))
	if !good {
		return kmsproto.ForwardKeysResp{}, kmsproto.BadRequest, "pieces do not match the keys or the sender's parity"
	}
	expires := time.UnixMilli(req.Expires)
	if req.Back && (req.Stream == "" || req.Hybrid != nil || req.Etsi004 != nil) {
		return e.burn(ctx, in, req, pieces, expires, kmsproto.BadRequest, "only plain keys of a key stream are relayed back")
	}
	if req.Stream == "" {
		if req.Hybrid != nil {
			return e.burn(ctx, in, req, pieces, expires, kmsproto.Hybrid, "hybrid keys need a key stream")
		}
		return e.direct(ctx, in, req, pieces)
	}
	en, next, code, msg := e.entryFor(in, req)
	if code == kmsproto.OK {
		code, msg = checkShare(en, req)
	}
	if code != kmsproto.OK {
		return e.burn(ctx, in, req, pieces, expires, code, msg)
	}
	if next == "" && req.Share != nil && !req.Share.Row.IsZero() {
		return e.deliverShare(ctx, in, req, pieces, expires)
	}
	if next == "" {
		hyb, code, msg := e.openHybrid(en, req)
		if code != kmsproto.OK {
			return e.burn(ctx, in, req, pieces, expires, code, msg)
		}
		defer hyb.wipe()
		notify := req.Stream
		if en.member() {
			notify = en.Group
		}
		return e.deliver(ctx, in, req, pieces, expires, hyb, notify)
	}
	path, code, msg := e.signPass(in, req, next)
	if code != kmsproto.OK {
		return e.burn(ctx, in, req, pieces, expires, code, msg)
	}
	return e.pass(ctx, in, req, pieces, next, expires, path)
}

// burn refuses a step for good (code, msg) after consuming its incoming
// pad, as the sender did when it made the step: the two ends of the link
// use their material in the same order, so a pad left unused here would
// make every later step over the link conflict. The refusal is recorded:
// a retry of the step gets the same answer. A pad that is not free here
// yet gets "retry" (the sender asks again, and the step is burnt then).
func (e *Engine) burn(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq, pieces []keystore.Piece, expires time.Time, code kmsproto.Code, msg string) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	err := e.o.Store.ApplyRelayStep(ctx, keystore.RelayStep{ID: req.Step, InLink: in.ID(), In: pieces, Expires: expires},
		func(_, _ secret.Bytes) (keystore.RelayResult, error) {
			return keystore.RelayResult{Record: encodeRefused(code, msg)}, nil
		})
	switch {
	case err == nil:
	case errors.Is(err, keystore.ErrApplied):
		if resp, c, m, done := e.fromRecord(ctx, req.Step); done {
			return resp, c, m
		}
	case errors.Is(err, keystore.ErrConflict):
		return kmsproto.ForwardKeysResp{}, kmsproto.Retry, "material not free here (yet)"
	default:
		e.log.Error("burning the pad of a refused relay step failed", "stream", req.Stream, "err", err)
	}
	return kmsproto.ForwardKeysResp{}, code, msg
}

// deliver is the destination's step: remove the pad, store the keys.
// A hybrid step (hyb not nil) stores the application keys
// combine(K_i, R, transcript) instead of the relayed ones.
//
// A step carrying the last XOR share of a split multipath batch combines
// the shares stored before (keystore.RelayStep.Combine): the keys are its
// share XOR theirs. notify is the stream OnDelivered names ("": none).
func (e *Engine) deliver(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq, pieces []keystore.Piece, expires time.Time, hyb *opened, notify string) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	size := int(req.SizeBits) / 8
	created := time.UnixMilli(req.Created)
	stream004 := ""
	if req.Etsi004 != nil {
		stream004 = req.Etsi004.KSID // chunks: ETSI 014 never takes them
	}
	st := keystore.RelayStep{ID: req.Step, InLink: in.ID(), In: pieces, Expires: expires}
	if req.Share != nil {
		st.Combine = req.Share.Combine
	}
	err := e.o.Store.ApplyRelayStep(ctx, st,
		func(inPad, shares secret.Bytes) (keystore.RelayResult, error) {
			k := secret.Make(len(req.Cipher))
			defer k.Wipe()
			xorInto(k.Expose(), req.Cipher, inPad.Expose())
			if len(st.Combine) > 0 {
				if shares.Len() != k.Len() {
					return keystore.RelayResult{}, errShareSize
				}
				xorInto(k.Expose(), k.Expose(), shares.Expose())
			}
			data := make([]secret.Bytes, len(req.IDs))
			for i := range data {
				data[i] = k.Slice(i*size, (i+1)*size)
			}
			if hyb != nil {
				app, err := hyb.combine(data)
				secret.WipeAll(data)
				if err != nil {
					return keystore.RelayResult{}, err
				}
				data = app
			}
			keys := make([]keystore.Key, len(req.IDs))
			for i, id := range req.IDs {
				keys[i] = keystore.Key{ID: id, Link: in.ID(), State: keystore.KeyReady, Master: req.Master, Slaves: req.Slaves,
					Pending: e.local(append([]qkd.SAEID{req.Master}, req.Slaves...)), SizeBits: int(req.SizeBits),
					Created: created, Expires: expires, Data: data[i], Stream: stream004}
			}
			return keystore.RelayResult{Keys: keys, Record: slices.Clone(deliveredRecord)}, nil
		})
	if err == nil && hyb != nil {
		e.countHybrid(true, len(req.IDs))
	}
	if req.Back {
		notify = ""
	}
	return e.delivered(ctx, in, req, pieces, expires, err, notify)
}

// errShareSize: the stored shares a step combines differ in length from
// its keys.
var errShareSize = errors.New("relay: the shares to combine differ in length from the keys")

// delivered answers a destination's step from the store's verdict err;
// notify, if set, is the stream OnDelivered names.
func (e *Engine) delivered(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq, pieces []keystore.Piece, expires time.Time, err error, notify string) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	switch {
	case err == nil:
		if e.o.OnDelivered != nil && notify != "" {
			e.o.OnDelivered(notify, slices.Clone(req.Slaves))
		}
		return kmsproto.ForwardKeysResp{Delivered: true}, kmsproto.OK, ""
	case errors.Is(err, keystore.ErrApplied):
		return kmsproto.ForwardKeysResp{Delivered: true}, kmsproto.OK, ""
	case errors.Is(err, keystore.ErrKeyExists):
		// Never passes (two sources claimed one ETSI 004 stream, whose
		// chunk IDs they derive alike): refused for good, pad burnt.
		e.log.Warn("relay step refused: a key with one of its IDs exists here", "stream", req.Stream)
		return e.burn(ctx, in, req, pieces, expires, kmsproto.KeyExists, "a key with one of these IDs exists at the destination")
	case errors.Is(err, keystore.ErrConflict):
		return kmsproto.ForwardKeysResp{}, kmsproto.Retry, "material not free here (yet)"
	}
	e.log.Error("relay delivery failed", "stream", req.Stream, "err", err)
	return kmsproto.ForwardKeysResp{}, kmsproto.Internal, "store error"
}

// pass is an intermediate node's step: swap the pad, forward, answer with
// the rest of the route's answer.
// path, if not nil, is the signed path with this node's step added.
func (e *Engine) pass(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq, pieces []keystore.Piece, next qkd.NodeID, expires time.Time, path []byte) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	if path != nil {
		req.PathSigns = path
	}
	var out *link.Link
	var body []byte
	var err error
	for _, out = range e.outLinks(next) { // parallel links take turns
		if body, err = e.swap(ctx, in, out, req, pieces, expires); !errors.Is(err, qkd.ErrInsufficientKey) {
			break
		}
	}
	switch {
	case errors.Is(err, keystore.ErrApplied):
		// A retry that overtook its first attempt: answer from the record.
		if resp, code, msg, done := e.fromRecord(ctx, req.Step); done {
			return resp, code, msg
		}
		var rec []byte
		if rec, err = e.o.Store.RelayRecord(ctx, req.Step); err == nil {
			_, body = decodePass(rec) // a record without its next hop
		}
	case errors.Is(err, keystore.ErrConflict), errors.Is(err, qkd.ErrInsufficientKey):
		return kmsproto.ForwardKeysResp{}, kmsproto.Retry, "no free material for this step (yet)"
	}
	if err != nil || body == nil {
		e.log.Error("relay step failed", "stream", req.Stream, "err", err)
		return kmsproto.ForwardKeysResp{}, kmsproto.Internal, "store error"
	}
	return e.sendOn(ctx, out, body)
}

// swap removes the incoming pad and adds one of the outgoing link, in one
// store step whose record is the outgoing message.
func (e *Engine) swap(ctx context.Context, in, out *link.Link, req kmsproto.ForwardKeysReq, pieces []keystore.Piece, expires time.Time) ([]byte, error) {
	var body []byte
	err := out.WithOwnPieces(ctx, len(req.Cipher), func(ps []keystore.Piece) error {
		return e.o.Store.ApplyRelayStep(ctx, keystore.RelayStep{ID: req.Step, InLink: in.ID(), In: pieces, OutLink: out.ID(), Out: ps, Expires: expires},
			func(inPad, outPad secret.Bytes) (keystore.RelayResult, error) {
				next := req
				next.Pieces = link.WirePieces(ps)
				next.Cipher = make([]byte, len(req.Cipher))
				xorInto(next.Cipher, req.Cipher, inPad.Expose()) // the keys, in memory only for this line
				if e.spy != nil && e.spy.relayed != nil {
					e.spy.relayed(req.IDs, next.Cipher)
				}
				xorInto(next.Cipher, next.Cipher, outPad.Expose())
				next.Path = append(slices.Clone(req.Path), e.o.Node)
				b, err := kmsproto.Marshal(next)
				body = b
				return keystore.RelayResult{Record: encodePass(string(out.ID()), b)}, err
			})
	})
	return body, err
}
