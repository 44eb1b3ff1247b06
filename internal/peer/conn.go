package peer

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"

	"github.com/qkms/qkms/internal/coapx"
)

// coapConn is what Client needs of a go-coap UDP or TCP client connection.
type coapConn interface {
	Post(ctx context.Context, path string, cf message.MediaType, payload io.ReadSeeker, opts ...message.Option) (*pool.Message, error)
	ReleaseMessage(m *pool.Message)
	Context() context.Context
	Ping(ctx context.Context) error
	Close() error
}

// conn is one go-coap connection and its use count.
type conn struct {
	cc coapConn
	// UDP only: nextMID takes a message ID; firstMID is the first one.
	nextMID  func() int32
	firstMID int32

	inflight int  // guarded by Client.mu
	retired  bool // guarded by Client.mu: no new Calls; closed when idle
}

func (cn *conn) dead() bool { return cn.cc.Context().Err() != nil }

func (cn *conn) close() error {
	if err := cn.cc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// midsUsed is how many message IDs cn has taken (UDP), taking one more.
func (cn *conn) midsUsed() int {
	if cn.nextMID == nil {
		return 0
	}
	return int(uint16(cn.nextMID() - cn.firstMID))
}

// acquire returns a live connection with its use count taken, dialing if
// there is none. Concurrent callers share one dial.
func (c *Client) acquire(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errClosed
		}
		if cn := c.cur; cn != nil && !cn.dead() && !cn.retired {
			cn.inflight++
			c.mu.Unlock()
			return cn, nil
		}
		stale := c.retireLocked(c.cur)
		wait := c.dialing
		if wait == nil {
			c.dialing = make(chan struct{})
		}
		c.mu.Unlock()
		closeIdle(stale)
		if wait != nil {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return c.dialAndInstall(ctx)
	}
}

// dialAndInstall dials and makes the new connection current; the caller
// started the dial (c.dialing) and gets the connection's first use.
func (c *Client) dialAndInstall(ctx context.Context) (*conn, error) {
	cn, err := c.dial(ctx)
	c.mu.Lock()
	close(c.dialing)
	c.dialing = nil
	if err == nil && c.closed {
		c.mu.Unlock()
		_ = cn.close()
		return nil, errClosed
	}
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.cur, cn.inflight = cn, 1
	c.conns[cn] = struct{}{}
	c.mu.Unlock()
	c.log.Debug("peer: connected")
	return cn, nil
}

// release gives back a connection after a request that ended with err,
// retiring it when it is broken, timed out, or (UDP) has used UDPRotate
// message IDs.
func (c *Client) release(cn *conn, err error) {
	retire := cn.dead() || errors.Is(err, context.DeadlineExceeded) || notSent(err)
	if !retire && c.opts.UDPRotate > 0 && cn.nextMID != nil {
		retire = cn.midsUsed() >= c.opts.UDPRotate
	}
	c.mu.Lock()
	cn.inflight--
	var idle *conn
	if retire || cn.retired {
		idle = c.retireLocked(cn)
	}
	c.mu.Unlock()
	closeIdle(idle)
}

// retireLocked stops new Calls from using cn (may be nil). It returns cn
// if nothing uses it any more: the caller closes it after unlocking.
func (c *Client) retireLocked(cn *conn) *conn {
	if cn == nil {
		return nil
	}
	if c.cur == cn {
		c.cur = nil
	}
	cn.retired = true
	if _, open := c.conns[cn]; open && cn.inflight == 0 {
		delete(c.conns, cn)
		return cn
	}
	return nil
}

func closeIdle(cn *conn) {
	if cn != nil {
		_ = cn.close()
	}
}

// dial opens a new connection; c.life, not ctx, bounds its lifetime.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	d := &net.Dialer{Timeout: c.opts.DialTimeout}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := int64(c.opts.MaxInFlight)
	if c.network == "udp" {
		cc, err := coapx.DialUDP(c.life, c.addr, c.log,
			options.WithDialer(d),
			options.WithLimitClientParallelRequest(n),
			options.WithLimitClientEndpointParallelRequest(n),
			options.WithTransmission(uint32(n), 2*time.Second, 4),
		)
		if err != nil {
			return nil, err
		}
		return &conn{cc: cc, nextMID: cc.GetMessageID, firstMID: cc.GetMessageID()}, nil
	}
	cc, err := coapx.DialTCP(c.life, c.addr, c.log,
		options.WithDialer(d),
		options.WithLimitClientParallelRequest(n),
		options.WithLimitClientEndpointParallelRequest(n),
	)
	if err != nil {
		return nil, err
	}
	return &conn{cc: cc}, nil
}
