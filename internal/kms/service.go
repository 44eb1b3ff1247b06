package kms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// Store is what the service needs of the key store (keystore.Store, every
// backend, is one): it delivers keys to applications and counts them for
// the pools, lists a pair's keys to split or merge them, expires keys at
// their TTL, reads a link's counts to restock, and zeroises.
type Store interface {
	keystore.Delivery
	keystore.Keys
	keystore.StatsReader
	keystore.Zeroizer
}

// Link is what the service needs of a QKD link to a neighbour (link.Link).
type Link interface {
	ID() qkd.LinkID
	Peer() qkd.NodeID
	Leader() bool
	Reserve(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID, sizeBits, n int, ttl time.Duration) ([]qkd.KeyID, error)
	DeleteAtPeer(ctx context.Context, ids []qkd.KeyID, reason string) (int, error)
	PrepareAnnounce(ctx context.Context, state string) (func(context.Context) error, error)
	SetInactive()
	// PeerInactive reports that the peer announced it was zeroised or stopped.
	PeerInactive() bool
}

// Router finds, or has the SDN controller set up, the key stream that
// carries keys from a local master to slaves on a node that is not a
// neighbour (QUICKS: route set-up on the first request at the source).
type Router interface {
	Stream(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID) (string, error)
	// Known returns the stream of a pair if one was set up.
	Known(master qkd.SAEID, slaves []qkd.SAEID) (string, bool)
	// StoredKeys is the path-wide ETSI GS QKD 014 stored_key_count of a
	// pair on a non-neighbour node, as the node's SDN agent
	// reports it (QUICKS link/status).
	StoredKeys(ctx context.Context, master, slave qkd.SAEID) (int, error)
}

// Relayer relays keys along a key stream from this node (relay.Engine).
type Relayer interface {
	Relay(ctx context.Context, stream string, sizeBits, n int, ttl time.Duration) ([]qkd.KeyID, error)
	// RelayGroup sends the same keys to the slaves of several nodes
	// (multicast); they are Ready here for (master, allSlaves) once every
	// leg delivered.
	RelayGroup(ctx context.Context, legs []Leg, master qkd.SAEID, allSlaves []qkd.SAEID, sizeBits, n int, ttl time.Duration) ([]qkd.KeyID, error)
}

// Leg is one destination node of a multicast (ETSI GS QKD 014
// additional_slave_SAE_IDs): the slaves attached to Dest get the keys
// there. Stream is the key stream of (master, Slaves) whose forwarding
// entries lead from this node to Dest; "" for a neighbour Dest, reached by
// one direct relay step that needs no forwarding entry.
type Leg struct {
	Dest   qkd.NodeID
	Slaves []qkd.SAEID
	Stream string
}

// DefaultMaxSAEIDCount is the max_SAE_ID_count a node should announce
// unless configured otherwise: up to 8 additional slaves per enc_keys
// request. Limits.MaxSAEIDCount 0 means what it means in ETSI GS QKD 014:
// multicast is not supported.
const DefaultMaxSAEIDCount = 8

// Limits are the ETSI 014 limits this node announces and enforces (sizes in bits).
type Limits struct {
	KeySize          int
	MinKeySize       int
	MaxKeySize       int
	MaxKeyPerRequest int
	MaxKeyCount      int
	// MaxSAEIDCount: additional_slave_SAE_IDs allowed per enc_keys request
	// (0: multicast not supported; DefaultMaxSAEIDCount is a sane value).
	MaxSAEIDCount int
	TTL           time.Duration
	// Prereserve: default-size keys kept ready per (local master, neighbour slave) pair.
	Prereserve int
	// RelayAhead: how much of a remote pair's demand is kept relayed ahead
	// of its requests (ahead.go): the pool holds the keys the pair took in
	// that long, measured; 0 turns relaying ahead off.
	RelayAhead time.Duration
	// RelayAheadMax caps the keys relayed ahead per remote pair and size.
	RelayAheadMax int
}

// Options configure the service.
type Options struct {
	Node  qkd.NodeID
	KME   qkd.KMEID
	Store Store
	Links []Link
	// SAEs maps every SAE this node knows to its node.
	SAEs   map[qkd.SAEID]qkd.NodeID
	Limits Limits
	// Router and Relayer serve SAEs on non-neighbour nodes (nil: only
	// neighbours are served).
	Router  Router
	Relayer Relayer
	Logger  *slog.Logger
	Now     func() time.Time
	// HybridPolicy reports whether the keys of a pair relayed from this
	// node are post-quantum hybrid keys (nil: never). A request with
	// KeyRequest.Hybrid for another pair is refused.
	HybridPolicy func(master qkd.SAEID, slaves []qkd.SAEID) bool
	// OnDelivered counts keys handed to applications (api: "etsi014").
	OnDelivered func(api string, n int)
}

// Service answers the application interfaces.
type Service struct {
	o      Options
	log    *slog.Logger
	byPeer map[qkd.NodeID]Link
	back   backRelayer // Options.Relayer if it relays back (ahead.go); else nil

	mu       sync.Mutex
	inactive bool // guarded by mu

	apps  appCache   // pairs announced with new_app (apps.go)
	ahead aheadTable // remote pairs whose keys are relayed ahead (ahead.go)
	due   restockDue // pairs whose pool a request just drew on (background.go)
}

// New returns a Service; Run starts its background work.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Node == "" {
		return nil, errors.New("kms: incomplete options")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.KME == "" {
		o.KME = qkd.KMEOf(o.Node)
	}
	if o.OnDelivered == nil {
		o.OnDelivered = func(string, int) {}
	}
	s := &Service{o: o, log: o.Logger, byPeer: map[qkd.NodeID]Link{}}
	s.due = restockDue{pairs: map[pairKey]bool{}, est: map[pairKey]poolCount{}, wake: make(chan struct{}, 1)}
	s.back, _ = o.Relayer.(backRelayer)
	s.ahead.pairs = map[aheadKey]*aheadPair{}
	for _, l := range o.Links {
		if _, dup := s.byPeer[l.Peer()]; !dup {
			s.byPeer[l.Peer()] = l
		}
	}
	return s, nil
}

// Active reports whether the node still serves keys (not zeroised).
func (s *Service) Active() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.inactive
}

func (s *Service) checkActive() error {
	if !s.Active() {
		return qkd.ErrInactive
	}
	return nil
}

// local reports whether sae is attached to this node.
func (s *Service) local(sae qkd.SAEID) bool {
	n, ok := s.o.SAEs[sae]
	return ok && n == s.o.Node
}

// route finds the link serving keys between a local SAE and slave.
func (s *Service) route(caller, slave qkd.SAEID) (Link, qkd.NodeID, error) {
	if !s.local(caller) {
		return nil, "", qkd.ErrUnknownSAE
	}
	node, ok := s.o.SAEs[slave]
	if !ok {
		return nil, "", &qkd.RequestError{Msg: "slave SAE ID is not known to this KME"}
	}
	if slave == caller {
		return nil, "", &qkd.RequestError{Msg: "slave SAE ID must differ from the master SAE ID"}
	}
	l := s.byPeer[node]
	switch {
	case l == nil && node != s.o.Node && s.o.Router != nil && s.o.Relayer != nil:
		return nil, node, errRemote
	case l == nil || l.PeerInactive():
		return nil, node, qkd.ErrNoRoute
	}
	return l, node, nil
}

// errRemote: the slave is on a node that is not a neighbour; its keys are
// relayed.
var errRemote = errors.New("kms: slave on a remote node")

// Status answers ETSI 014 Get status for (caller as master, slave).
func (s *Service) Status(ctx context.Context, caller, slave qkd.SAEID) (Status, error) {
	if err := s.checkActive(); err != nil {
		return Status{}, err
	}
	l, node, err := s.route(caller, slave)
	if err != nil && !errors.Is(err, qkd.ErrNoRoute) && !errors.Is(err, errRemote) {
		return Status{}, err
	}
	lim := s.o.Limits
	st := Status{SourceKME: s.o.KME, TargetKME: qkd.KMEOf(node), Master: caller, Slave: slave,
		KeySize: lim.KeySize, MaxKeyCount: lim.MaxKeyCount, MaxKeyPerRequest: lim.MaxKeyPerRequest,
		MaxKeySize: lim.MaxKeySize, MinKeySize: lim.MinKeySize, MaxSAEIDCount: lim.MaxSAEIDCount}
	if l != nil {
		n, err := s.stored(ctx, l, caller, slave)
		if err != nil {
			return Status{}, err
		}
		st.StoredKeyCount = n
	}
	if errors.Is(err, errRemote) {
		n, cerr := s.remoteStored(ctx, caller, slave)
		if cerr != nil {
			return Status{}, cerr
		}
		st.StoredKeyCount = min(n, lim.MaxKeyCount)
	}
	return st, nil
}

// remoteStored is stored_key_count for a slave on a non-neighbour node:
// the path-wide figure from the router, or, if the router cannot tell, the
// keys already relayed for the pair.
func (s *Service) remoteStored(ctx context.Context, master, slave qkd.SAEID) (int, error) {
	n, err := s.o.Router.StoredKeys(ctx, master, slave)
	if err == nil {
		return n, nil
	}
	s.log.Debug("path-wide stored_key_count unavailable; counting the relayed keys", "master", string(master), "slave", string(slave), "err", err)
	return s.o.Store.CountKeys(ctx, keystore.TakeRequest{Master: master, Slaves: []qkd.SAEID{slave},
		Caller: master, SizeBits: s.o.Limits.KeySize, Now: s.o.Now()})
}

// stored is the number of default-size keys deliverable now for the pair:
// keys already reserved for it plus what this end's free material yields.
func (s *Service) stored(ctx context.Context, l Link, master, slave qkd.SAEID) (int, error) {
	size := s.o.Limits.KeySize
	ready, err := s.o.Store.CountKeys(ctx, keystore.TakeRequest{Master: master, Slaves: []qkd.SAEID{slave},
		Caller: master, SizeBits: size, Now: s.o.Now()})
	if err != nil {
		return 0, fmt.Errorf("kms: count keys: %w", err)
	}
	st, err := s.o.Store.Stats(ctx, l.ID())
	if err != nil {
		return 0, fmt.Errorf("kms: link stats: %w", err)
	}
	free := int(st.ConfirmedBytes[parity(l)] * 8 / int64(size))
	return min(ready+free, s.o.Limits.MaxKeyCount), nil
}

func parity(l Link) int {
	if l.Leader() {
		return 0
	}
	return 1
}

// checkRequest applies defaults and the limits to an enc_keys request.
// MsgHybridUnavailable refuses a request that requires hybrid keys for a
// pair whose keys are not (docs/hybrid.md: fail closed).
const MsgHybridUnavailable = "qkms_hybrid: post-quantum hybrid keys are not available for this pair (hybrid keys are relayed keys of a pair whose hybrid policy is on; neighbours and multicast get none)"

func (s *Service) checkRequest(req *KeyRequest) error {
	lim := s.o.Limits
	if req.Number == 0 {
		req.Number = 1
	}
	if req.Size == 0 {
		req.Size = lim.KeySize
	}
	switch {
	case req.Number < 1 || req.Number > lim.MaxKeyPerRequest:
		return &qkd.RequestError{Msg: fmt.Sprintf("number shall be between 1 and max_key_per_request (%d)", lim.MaxKeyPerRequest)}
	case req.Size%8 != 0:
		return &qkd.RequestError{Msg: "size shall be a multiple of 8"}
	case req.Size < lim.MinKeySize || req.Size > lim.MaxKeySize:
		return &qkd.RequestError{Msg: fmt.Sprintf("size shall be between min_key_size (%d) and max_key_size (%d)", lim.MinKeySize, lim.MaxKeySize)}
	case len(req.AdditionalSlaves) > lim.MaxSAEIDCount && lim.MaxSAEIDCount == 0:
		return &qkd.RequestError{Msg: "additional_slave_SAE_IDs exceeds max_SAE_ID_count (0): multicast is not supported"}
	case len(req.AdditionalSlaves) > lim.MaxSAEIDCount:
		return &qkd.RequestError{Msg: fmt.Sprintf("additional_slave_SAE_IDs exceeds max_SAE_ID_count (%d)", lim.MaxSAEIDCount)}
	}
	return nil
}

// EncKeys answers ETSI 014 Get key: keys for (caller as master, slave) that
// the slave's KME already holds. Each is deleted here once handed out.
func (s *Service) EncKeys(ctx context.Context, caller, slave qkd.SAEID, req KeyRequest) ([]Key, error) {
	if err := s.checkActive(); err != nil {
		return nil, err
	}
	l, _, err := s.route(caller, slave)
	remote := errors.Is(err, errRemote)
	if err != nil && !remote {
		return nil, err
	}
	if err := s.checkRequest(&req); err != nil {
		return nil, err
	}
	slaves := []qkd.SAEID{slave}
	if req.Hybrid && (!remote || len(req.AdditionalSlaves) > 0 || s.o.HybridPolicy == nil || !s.o.HybridPolicy(caller, slaves)) {
		return nil, &qkd.RequestError{Msg: MsgHybridUnavailable}
	}
	if len(req.AdditionalSlaves) > 0 {
		return s.encMulticast(ctx, caller, slave, req)
	}
	if !remote {
		if err := s.announce(ctx, l, caller, slaves, req.Size); err != nil { // apps.go
			return nil, err
		}
	}
	if remote {
		s.ahead.note(aheadKey{master: caller, slave: slave, size: req.Size}, req.Number, s.o.Now())
	}
	keys, err := s.o.Store.TakeForPair(ctx, keystore.TakeRequest{Master: caller, Slaves: slaves, Caller: caller,
		SizeBits: req.Size, Number: req.Number, Now: s.o.Now()})
	if !remote {
		s.drewOn(pairKey{master: caller, slave: slave, caller: caller, link: l}, keys)
	}
	if errors.Is(err, qkd.ErrInsufficientKey) && !remote {
		keys, err = s.resizeAndTake(ctx, l, caller, slaves, req) // resize.go
	}
	if errors.Is(err, qkd.ErrInsufficientKey) {
		reserve := func() error { return s.reserve(ctx, l, caller, slaves, req) }
		if remote {
			reserve = func() error { return s.relay(ctx, caller, slaves, req.Size, req.Number) }
		}
		keys, err = s.makeAndTake(ctx, reserve, caller, slaves, req)
	}
	return s.delivered(keys, err)
}

// delivered counts and converts the keys taken for an enc_keys request.
func (s *Service) delivered(keys []keystore.Key, err error) ([]Key, error) {
	if err != nil {
		return nil, err
	}
	s.o.OnDelivered("etsi014", len(keys))
	return toKeys(keys), nil
}

// makeAndTake makes keys on demand (a reservation with the neighbour, or a
// relay along the stream: round trips) and takes them from the pair's pool.
// Concurrent requests of the same pair may take the fresh keys first; then
// it makes keys again, a few times at most.
func (s *Service) makeAndTake(ctx context.Context, produce func() error, caller qkd.SAEID, slaves []qkd.SAEID, req KeyRequest) ([]keystore.Key, error) {
	for attempt := 0; ; attempt++ {
		if err := produce(); err != nil {
			return nil, err
		}
		keys, err := s.o.Store.TakeForPair(ctx, keystore.TakeRequest{Master: caller, Slaves: slaves, Caller: caller,
			SizeBits: req.Size, Number: req.Number, Now: s.o.Now()})
		if !errors.Is(err, qkd.ErrInsufficientKey) || attempt == maxReserveAttempts-1 {
			return keys, err
		}
	}
}

// reserve reserves keys with a neighbour (make_keys_external).
func (s *Service) reserve(ctx context.Context, l Link, caller qkd.SAEID, slaves []qkd.SAEID, req KeyRequest) error {
	_, err := l.Reserve(ctx, caller, slaves, req.Size, req.Number, s.o.Limits.TTL)
	if err == nil || errors.Is(err, qkd.ErrInsufficientKey) || errors.Is(err, qkd.ErrPeerUnavailable) {
		return err
	}
	s.log.Warn("on-demand key reservation failed", "link", string(l.ID()), "err", err)
	return fmt.Errorf("%w: %w", qkd.ErrPeerUnavailable, err)
}

// relay relays keys to slaves on a remote node along the pair's stream,
// setting the stream up through the router first if needed.
func (s *Service) relay(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID, sizeBits, n int) error {
	stream, err := s.o.Router.Stream(ctx, master, slaves)
	if err != nil {
		s.log.Warn("no key stream for a remote pair", "master", string(master), "err", err)
		return fmt.Errorf("%w: %w", qkd.ErrNoRoute, err)
	}
	if _, err := s.o.Relayer.Relay(ctx, stream, sizeBits, n, s.o.Limits.TTL); err != nil {
		if errors.Is(err, qkd.ErrInsufficientKey) || errors.Is(err, qkd.ErrPeerUnavailable) || errors.Is(err, qkd.ErrNoRoute) {
			return err
		}
		s.log.Warn("key relay failed", "stream", stream, "err", err)
		return fmt.Errorf("%w: %w", qkd.ErrPeerUnavailable, err)
	}
	return nil
}

// maxReserveAttempts bounds on-demand reservations for one request.
const maxReserveAttempts = 3

// maxDecIDs bounds the key IDs of one dec_keys request.
const maxDecIDs = 4096

// DecKeys answers ETSI 014 Get key with key IDs for the slave caller.
func (s *Service) DecKeys(ctx context.Context, caller, master qkd.SAEID, ids []qkd.KeyID) ([]Key, error) {
	if err := s.checkActive(); err != nil {
		return nil, err
	}
	if !s.local(caller) {
		return nil, qkd.ErrUnknownSAE
	}
	if len(ids) == 0 || len(ids) > maxDecIDs {
		return nil, &qkd.RequestError{Msg: fmt.Sprintf("key_IDs shall name between 1 and %d keys", maxDecIDs)}
	}
	keys, err := s.o.Store.TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: master, Caller: caller, Now: s.o.Now()})
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 && len(keys[0].Slaves) == 1 && keys[0].Slaves[0] == caller && keys[0].Stream == "" {
		// Keys of a remote pair's master: this end relays ahead for it
		// too, back along the pair's key stream (ahead.go).
		if mn := s.o.SAEs[master]; s.back != nil && mn != "" && mn != s.o.Node && s.byPeer[mn] == nil && s.o.Limits.RelayAhead > 0 {
			s.ahead.note(aheadKey{master: master, slave: caller, size: keys[0].SizeBits, back: true}, len(keys), s.o.Now())
		}
		// Keys of a pair whose master is on the neighbour at the end
		// of the key's link: this end stocks that pair too.
		if l := s.byPeer[s.o.SAEs[master]]; l != nil && l.ID() == keys[0].Link {
			s.drewOn(pairKey{master: master, slave: caller, caller: caller, link: l}, keys)
		}
	}
	s.o.OnDelivered("etsi014", len(keys))
	return toKeys(keys), nil
}

func toKeys(ks []keystore.Key) []Key {
	out := make([]Key, len(ks))
	for i, k := range ks {
		out[i] = Key{ID: k.ID, Bytes: k.Data}
	}
	return out
}

// Zeroize destroys every key and the store's key-encryption keys, then tells
// the peers, and leaves the node inactive (FIPS 140 style;
// docs/operations.md). Destruction comes first: the post_status messages are
// sealed beforehand and sent afterwards.
func (s *Service) Zeroize(ctx context.Context) error {
	s.mu.Lock()
	already := s.inactive
	s.inactive = true
	s.mu.Unlock()
	if already {
		return nil
	}
	sends := make([]func(context.Context) error, len(s.o.Links))
	for i, l := range s.o.Links {
		var err error
		if sends[i], err = l.PrepareAnnounce(ctx, "inactive"); err != nil {
			s.log.Warn("cannot seal the zeroisation notice for a peer", "link", string(l.ID()), "err", err)
		}
		l.SetInactive()
	}
	if err := s.o.Store.Zeroize(ctx); err != nil {
		return fmt.Errorf("kms: zeroize store: %w", err)
	}
	s.log.Warn("node zeroised: all key material destroyed; status inactive")
	for i, send := range sends {
		if send == nil {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := send(actx); err != nil {
			s.log.Warn("could not tell a peer about the zeroisation", "link", string(s.o.Links[i].ID()), "err", err)
		}
		cancel()
	}
	return nil
}
