package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/qkd"
)

// Link is what the service needs of a QKD link to a neighbour (*link.Link).
type Link interface {
	ID() qkd.LinkID
	Peer() qkd.NodeID
	ReserveIDs(ctx context.Context, stream string, master qkd.SAEID, slaves []qkd.SAEID, sizeBits int, ids []qkd.KeyID, ttl time.Duration) error
	AnnounceStream(ctx context.Context, req kmsproto.NewAppReq) (kmsproto.NewAppResp, error)
	DeleteAtPeer(ctx context.Context, ids []qkd.KeyID, reason string) (int, error)
	SetStreamHandler(h link.StreamHandler)
	PeerInactive() bool
}

// Store is what the service needs of the key store (keystore.Store, every
// backend, is one): it delivers a stream's chunks by ID (TakeByID) and
// deletes the chunks left when a stream closes.
type Store interface {
	keystore.Delivery
	keystore.Keys
}

// Options configure the service.
type Options struct {
	Node qkd.NodeID
	// SAEs maps every SAE this node knows to its node.
	SAEs  map[qkd.SAEID]qkd.NodeID
	Links []Link
	Store Store
	// DataDir holds the stream records (streams.json, no key material);
	// "" keeps them in memory only.
	DataDir string
	// MaxChunkBytes bounds key_chunk_size (default 1024: max_key_size/8).
	MaxChunkBytes int
	// Window: chunks produced ahead of demand per reservation (default 64).
	Window int
	// LinkRate, if set, is a link's measured key rate in bit/s (ok false
	// if unknown): min_bps above it is refused with a counter-proposal.
	LinkRate func(qkd.LinkID) (bps float64, ok bool)
	Logger   *slog.Logger
	Now      func() time.Time
	// After waits (default time.After); tests inject a clock.
	After func(time.Duration) <-chan time.Time
	// OnDelivered counts chunks handed to applications (api "etsi004").
	OnDelivered func(api string, n int)
	// Router and Relay, if both set, serve pairs on nodes that are not
	// neighbours: Router gives the pair's key stream (route), Relay
	// relays the chunks along it (remote.go). Unset: such pairs get 4.
	Router Router
	Relay  Relayer
	// OnUnderrun reports a stream that cannot keep up (no key material for
	// its chunks, or min_bps not met): e.g. a QUICKS notification.
	OnUnderrun func(ksid etsi004.KSID, reason string)
	// Hybrid, if set, names the post-quantum hybrid suite of a remote
	// pair's chunks ("" if they are plain relayed keys): GET_KEY's
	// metadata then carries it as "hybrid".
	Hybrid func(src, dst qkd.SAEID) string
	// Hops, if set, is the number of trusted nodes a remote pair's key
	// stream (route) crosses, for GET_KEY's metadata "hops" (ETSI GS QKD
	// 004: 0 = direct).
	Hops func(route string) int
	// JoinGrace: how long the node of the lower SAE ID waits for a KSID
	// it does not know to arrive from the peer before it takes it for a
	// predefined one (default DefaultJoinGrace; negative: not at all).
	JoinGrace time.Duration
}

// Defaults of the QoS fields an application leaves zero.
const (
	DefaultChunkSize = 32    // bytes
	DefaultTimeout   = 10000 // ms
	DefaultTTL       = 3600  // s
	// DefaultJoinGrace is Options.JoinGrace's default.
	DefaultJoinGrace = 2 * time.Second
)

// ErrNotSource: OPEN_CONNECT's source is not the calling application.
var ErrNotSource = fmt.Errorf("%w: source is not the calling application", etsi004.ErrBadRequest)

// Service is the 004 key stream service of one node. It implements
// etsi004.Service and link.StreamHandler.
type Service struct {
	o      Options
	log    *slog.Logger
	byPeer map[qkd.NodeID]Link
	byID   map[qkd.LinkID]Link

	ctx    context.Context // ends with Shutdown: background production
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	streams map[etsi004.KSID]*stream // guarded by mu
	learnt  chan struct{}            // guarded by mu: closed (and replaced) when a remote stream is learnt

	saveMu sync.Mutex // serialises writes of the state file
}

var (
	_ etsi004.Service    = (*Service)(nil)
	_ link.StreamHandler = (*Service)(nil)
)

// New returns the service with the streams saved in DataDir, and
// registers it as the stream handler of every link.
func New(o Options) (*Service, error) {
	if o.Node == "" || o.Store == nil {
		return nil, errors.New("streams: incomplete options")
	}
	o.defaults()
	s := &Service{o: o, log: o.Logger.With("api", "etsi004"), byPeer: map[qkd.NodeID]Link{},
		byID: map[qkd.LinkID]Link{}, streams: map[etsi004.KSID]*stream{}, learnt: make(chan struct{})}
	for _, l := range o.Links {
		if _, dup := s.byPeer[l.Peer()]; !dup {
			s.byPeer[l.Peer()] = l
		}
		s.byID[l.ID()] = l
	}
	recs, err := load(o.DataDir)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		s.streams[r.KSID] = newStream(r)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, l := range o.Links {
		l.SetStreamHandler(s)
	}
	for _, st := range s.streams {
		if st.rec.Remote && s.local(st.rec.Source) && s.o.Relay != nil {
			s.goBackground(func(ctx context.Context) { s.pump(ctx, st) })
		}
	}
	if len(recs) > 0 {
		s.log.Info("key streams restored", "streams", len(recs))
	}
	return s, nil
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.MaxChunkBytes <= 0 {
		o.MaxChunkBytes = 1024
	}
	if o.Window <= 0 {
		o.Window = 64
	}
	if o.JoinGrace == 0 {
		o.JoinGrace = DefaultJoinGrace
	}
	if o.OnDelivered == nil {
		o.OnDelivered = func(string, int) {}
	}
	if o.OnUnderrun == nil {
		o.OnUnderrun = func(etsi004.KSID, string) {}
	}
}

// Run resends stream states the peer has not acknowledged and drops
// closed streams whose TTL passed, every second, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Sync(ctx)
			s.Sweep(ctx)
		}
	}
}

// Shutdown stops background production and waits for it.
func (s *Service) Shutdown() {
	s.cancel()
	s.wg.Wait()
}

// OpenStreams returns the number of streams open at this node (a gauge).
func (s *Service) OpenStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.streams {
		if st.rec.localState(s.local) == kmsproto.StreamOpen {
			n++
		}
	}
	return n
}

// local reports whether sae is attached to this node.
func (s *Service) local(sae qkd.SAEID) bool {
	n, ok := s.o.SAEs[sae]
	return ok && n == s.o.Node
}

// go runs f in the background until Shutdown.
func (s *Service) goBackground(f func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.ctx)
	}()
}
