package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/client"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/device/pushproto"
	"github.com/qkms/qkms/internal/secret"
)

// Defaults of Options.
const (
	DefaultSilence        = 15 * time.Second // 3 × the module heartbeat of the profile
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultRequestTimeout = 10 * time.Second
)

// Errors.
var (
	// ErrRefused: the module serves another application on this end (004
	// status 5). Run returns it.
	ErrRefused = errors.New("device: key stream held by another application")
	// ErrNotBuffered: Fetch asked for a block the module no longer (or not
	// yet) holds (004 status 2).
	ErrNotBuffered = errors.New("device: block not buffered by the module")
	// ErrNotConnected: Fetch was called with no live session.
	ErrNotConnected = errors.New("device: not connected")
)

// StatusError is a 004 status other than success from the module.
type StatusError struct {
	Op     string // "open_connect" or "get_key"
	Status pushproto.Status
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("device: %s: status %d (%v)", e.Op, uint32(e.Status), e.Status)
}

// Is maps statuses to ErrRefused (5) and ErrNotBuffered (2).
func (e *StatusError) Is(target error) bool {
	return target == ErrRefused && e.Status == pushproto.StatusKSIDInUse ||
		target == ErrNotBuffered && e.Status == pushproto.StatusInsufficientKey
}

// Options configure a Client.
type Options struct {
	Network string // "udp" or "tcp"
	Addr    string // host:port of the module's CoAP endpoint
	// Source and Destination are the 004 OPEN_CONNECT URIs: this KMS and the
	// KMS at the other end of the link.
	Source, Destination string
	// KeyStreamID is a predefined KSID; NULL lets the module assign one. The
	// KSID the module returns is kept for every reconnection.
	KeyStreamID pushproto.KeyStreamID
	// NextIndex is the lowest block index the KMS still wants (0: no
	// history). Lower indices are not delivered, and 32-bit wire indices are
	// unwrapped relative to it so that Block.Index keeps growing past 2^32
	// across restarts.
	NextIndex uint64
	// Silence is how long the module may stay silent before the Client
	// registers again (default DefaultSilence).
	Silence time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnections.
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds OPEN_CONNECT, the registration and Fetch.
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

func (o *Options) normalize() error {
	if o.Network != "udp" && o.Network != "tcp" {
		return fmt.Errorf("device: network %q, want udp or tcp", o.Network)
	}
	if o.Addr == "" || o.Source == "" {
		return errors.New("device: Addr and Source are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Silence, DefaultSilence)
	def(&o.MinBackoff, DefaultMinBackoff)
	def(&o.MaxBackoff, DefaultMaxBackoff)
	def(&o.RequestTimeout, DefaultRequestTimeout)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Block is one key block from the module. Whoever receives it owns Data and
// wipes it.
type Block struct {
	Index       uint64 // unwrapped 004 index, the same at both ends of the link for the same bytes
	Data        secret.Bytes
	KeyStreamID pushproto.KeyStreamID
}

// Stats are a Client's counters.
type Stats struct {
	Delivered uint64 // blocks handed to deliver
	Missing   uint64 // indices skipped: blocks the module lost at this end
	Stale     uint64 // notifications dropped as repeated or older than one delivered
	Sessions  uint64 // registrations the module accepted
}

// coapConn is what a Client needs of go-coap's UDP and TCP connections.
type coapConn interface {
	Post(ctx context.Context, path string, cf message.MediaType, payload io.ReadSeeker, opts ...message.Option) (*pool.Message, error)
	Get(ctx context.Context, path string, opts ...message.Option) (*pool.Message, error)
	Observe(ctx context.Context, path string, f func(*pool.Message), opts ...message.Option) (client.Observation, error)
	Close() error
	Done() <-chan struct{}
}

// Client receives one end's key blocks from a QKD module.
type Client struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	conn    coapConn              // guarded by mu: the live connection, if any
	ksid    pushproto.KeyStreamID // guarded by mu
	chunk   uint32                // guarded by mu: key_chunk_size of the stream
	running bool                  // guarded by mu

	deliverMu sync.Mutex // serialises deliveries
	seq       sequencer  // guarded by deliverMu

	delivered, missing, stale, sessions atomic.Uint64
}

// Dial checks opts and connects to the module (the first connection of
// Run); it fails if the module cannot be reached.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	c := &Client{
		opts: opts,
		log:  opts.Logger.With("device", opts.Network+"://"+opts.Addr),
		ksid: opts.KeyStreamID,
		seq:  newSequencer(opts.NextIndex),
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return c, nil
}

// dial connects; the connection lives until closed, not until ctx ends.
func (c *Client) dial(ctx context.Context) (coapConn, error) {
	ctx = context.WithoutCancel(ctx)
	if c.opts.Network == "udp" {
		cc, err := coapx.DialUDP(ctx, c.opts.Addr, c.log)
		if err != nil {
			return nil, fmt.Errorf("device: dial: %w", err)
		}
		return cc, nil
	}
	cc, err := coapx.DialTCP(ctx, c.opts.Addr, c.log)
	if err != nil {
		return nil, fmt.Errorf("device: dial: %w", err)
	}
	return cc, nil
}

// KeyStreamID returns the stream's KSID (NULL before the first OPEN_CONNECT
// unless predefined).
func (c *Client) KeyStreamID() pushproto.KeyStreamID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ksid
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	return Stats{
		Delivered: c.delivered.Load(),
		Missing:   c.missing.Load(),
		Stale:     c.stale.Load(),
		Sessions:  c.sessions.Load(),
	}
}

// Close closes the connection; Run, if running, reconnects unless its ctx
// is done.
func (c *Client) Close() error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return nil
	}
	return conn.Close()
}

// Run opens the stream, registers for key and calls deliver for every new
// block in index order until ctx is done; then it returns nil. It returns
// early with an error only when going on makes no sense: deliver failed,
// the module refused this KMS (ErrRefused), or the module rejected the
// stream's KSID or QoS. Everything else (module gone, connection broken,
// silence) leads to a reconnection with exponential backoff.
//
// deliver runs on go-coap's receive goroutine, one call at a time; over UDP
// the module gets its acknowledgement once deliver returns. deliver owns
// b.Data.
func (c *Client) Run(ctx context.Context, deliver func(ctx context.Context, b Block) error) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("device: Run already running")
	}
	c.running = true
	conn := c.conn
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running, c.conn = false, nil
		c.mu.Unlock()
	}()
	backoff := c.opts.MinBackoff
	for {
		var err error
		if conn == nil {
			conn, err = c.dial(ctx)
		}
		if conn != nil {
			c.setConn(conn)
			before := c.delivered.Load()
			err = c.session(ctx, conn, deliver)
			c.setConn(nil)
			_ = conn.Close()
			conn = nil
			if c.delivered.Load() > before {
				backoff = c.opts.MinBackoff
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if f := (*fatal)(nil); errors.As(err, &f) {
			return f.err
		}
		c.log.Warn("device: session ended, reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.opts.MaxBackoff)
	}
}

func (c *Client) setConn(conn coapConn) {
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
}

// fatal marks an error that ends Run.
type fatal struct{ err error }

func (f *fatal) Error() string { return f.err.Error() }
func (f *fatal) Unwrap() error { return f.err }
