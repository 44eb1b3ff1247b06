package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapclient "github.com/plgd-dev/go-coap/v3/net/client"

	"github.com/qkms/qkms/internal/kmsproto"
)

// ClientOptions configure a Client. The zero value is usable.
type ClientOptions struct {
	Log *slog.Logger
	// CallTimeout bounds a Call whose ctx has no deadline (default 30 s).
	CallTimeout time.Duration
	// DialTimeout bounds connecting (default 3 s).
	DialTimeout time.Duration
	// MaxInFlight bounds the requests outstanding on one connection; more
	// Calls wait. Over UDP it is also NSTART (RFC 7252 §4.7). Default: 1
	// over UDP (the RFC's NSTART), 64 over TCP.
	MaxInFlight int
	// UDPRotate: over UDP, once a socket has used this many message IDs,
	// new Calls go out on a fresh socket, i.e. as a new endpoint. RFC 7252
	// forbids reusing a message ID towards a peer within EXCHANGE_LIFETIME
	// (247 s), and go-coap's server keeps, and scans on every datagram, a
	// response per message ID for that long; rotating bounds both.
	// Default 1024 (measured best: 64 B calls/s with 512: 16.6k, 1024:
	// 18.4k, 4096: 14.2k, 16384: 7.3k, never: 3.4k and falling); negative
	// never rotates: message IDs then wrap after 65536 messages and a
	// go-coap peer answers from its cache, so calls stall.
	UDPRotate int
}

func (o ClientOptions) withDefaults(network string) ClientOptions {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 3 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 64
		if network == "udp" {
			o.MaxInFlight = 1
		}
	}
	if o.UDPRotate == 0 {
		o.UDPRotate = 1024
	}
	return o
}

// Client calls one peer KMS. It is safe for concurrent use; it connects
// again by itself after the connection was lost (peer restarted).
type Client struct {
	network, addr string
	opts          ClientOptions
	log           *slog.Logger
	// life bounds every connection's lifetime; cancelled by Close.
	life   context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	cur     *conn              // guarded by mu: where new Calls go; nil: dial
	conns   map[*conn]struct{} // guarded by mu: every open connection
	dialing chan struct{}      // guarded by mu: closed when the running dial ends
	closed  bool               // guarded by mu
}

// Dial returns a Client for the peer KMS at addr; network is "udp" (CoAP,
// RFC 7252) or "tcp" (CoAP over TCP, RFC 8323). It connects once, so a
// wrong address fails here; ctx bounds only that first connection.
func Dial(ctx context.Context, network, addr string, opts ClientOptions) (*Client, error) {
	if network != "udp" && network != "tcp" {
		return nil, fmt.Errorf("peer: dial: network %q, want udp or tcp", network)
	}
	opts = opts.withDefaults(network)
	c := &Client{
		network: network,
		addr:    addr,
		opts:    opts,
		log:     opts.Log.With("peer_addr", addr, "transport", network),
		conns:   map[*conn]struct{}{},
	}
	c.life, c.cancel = context.WithCancel(context.Background())
	cn, err := c.acquire(ctx)
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("peer: dial %s %s: %w", network, addr, err)
	}
	c.release(cn, nil)
	return c, nil
}

// Call sends payload (the CBOR of a kmsproto.Sealed request) as message t
// and returns the sealed reply. Errors: a *StatusError when the peer
// answered with an error code (errors.Is matches ErrUnauthenticated,
// ErrUnavailable, ...); ErrNotSent when the request did not leave this
// host; ErrNoReply when it may have been delivered but no reply came. Call
// never resends a request that may have been delivered. Without a deadline
// in ctx, ClientOptions.CallTimeout applies.
func (c *Client) Call(ctx context.Context, t kmsproto.Type, payload []byte) ([]byte, error) {
	if !t.Known() {
		return nil, fmt.Errorf("%w: unknown message type %q", ErrNotSent, t)
	}
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("%w: %s: %w: %d bytes", ErrNotSent, t, ErrTooLarge, len(payload))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.CallTimeout)
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		cn, err := c.acquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrNotSent, t, err)
		}
		reply, err := roundTrip(ctx, cn.cc, t, payload)
		c.release(cn, err)
		if err == nil {
			return reply, nil
		}
		if attempt == 0 && notSent(err) && ctx.Err() == nil {
			c.log.Debug("peer: request not sent, retrying on a new connection", "type", t, "err", err)
			continue
		}
		return nil, callError(t, err)
	}
}

// Close closes every connection; Calls in flight fail with ErrNoReply,
// later ones with ErrNotSent. Idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conns := c.conns
	c.conns, c.cur = nil, nil
	c.mu.Unlock()
	c.cancel()
	var errs []error
	for cn := range conns {
		errs = append(errs, cn.close())
	}
	return errors.Join(errs...)
}

// roundTrip posts payload and interprets the response.
func roundTrip(ctx context.Context, cc coapConn, t kmsproto.Type, payload []byte) ([]byte, error) {
	resp, err := cc.Post(ctx, Path(t), message.AppCBOR, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	defer cc.ReleaseMessage(resp)
	switch code := resp.Code(); {
	case code == codes.Changed:
		return readReply(resp)
	case code >= codes.BadRequest:
		return nil, &StatusError{Type: t, Code: code}
	default:
		return nil, fmt.Errorf("unexpected response code %v", code)
	}
}

// readReply reads a 2.04 body: CBOR, at most MaxPayload bytes.
func readReply(resp *pool.Message) ([]byte, error) {
	body := resp.Body()
	if body == nil {
		return []byte{}, nil
	}
	if cf, err := resp.ContentFormat(); err != nil || cf != message.AppCBOR {
		return nil, fmt.Errorf("reply content format %v, want %v", cf, message.AppCBOR)
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(body, MaxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("reply larger than %d bytes", MaxPayload)
	}
	return b, nil
}

// notSent reports whether go-coap failed before transmitting the request.
func notSent(err error) bool {
	var ns *coapclient.RequestNotSentError
	return errors.As(err, &ns)
}

func callError(t kmsproto.Type, err error) error {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return err
	case notSent(err):
		return fmt.Errorf("%w: %s: %w", ErrNotSent, t, err)
	default:
		return fmt.Errorf("%w: %s: %w", ErrNoReply, t, err)
	}
}

// errClosed is what Calls on a closed Client see (wrapped in ErrNotSent).
var errClosed = fmt.Errorf("client closed: %w", net.ErrClosed)
