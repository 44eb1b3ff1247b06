package tcp004

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/secret"
)

// Client calls a 004 key manager over one TLS connection, one call at a
// time (calls from several goroutines take turns). A call that fails on the
// wire — a context that ends mid-call, a frame that does not decode —
// breaks the connection: later calls return ErrBroken and the caller dials
// again.
type Client struct {
	mu     sync.Mutex
	conn   net.Conn
	broken error // guarded by mu
}

// ErrBroken is wrapped by the error of every call after a failed one.
var ErrBroken = errors.New("tcp004: connection broken by an earlier error")

// Dial connects to addr ("host:port") with cfg (pki.ClientTLSConfig with a
// client certificate) and completes the TLS handshake.
func Dial(ctx context.Context, addr string, cfg *tls.Config) (*Client, error) {
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp004: dial %s: %w", addr, err)
	}
	return NewClient(nc), nil
}

// NewClient returns a Client over an established connection (a *tls.Conn,
// or any stream in tests).
func NewClient(conn net.Conn) *Client { return &Client{conn: conn} }

// Disconnect closes the connection. (Close is the 004 call.)
func (c *Client) Disconnect() error { return c.conn.Close() }

// OpenConnect sends OPEN_CONNECT and returns the key manager's answer.
func (c *Client) OpenConnect(ctx context.Context, req etsi004.OpenRequest) (etsi004.OpenResponse, error) {
	p, err := AppendOpenRequest(nil, req)
	if err != nil {
		return etsi004.OpenResponse{}, err
	}
	resp, err := c.call(ctx, OpenConnectRequest, p, OpenConnectResponse)
	if err != nil {
		return etsi004.OpenResponse{}, err
	}
	r, err := DecodeOpenResponse(resp)
	return r, c.check(err)
}

// GetKey sends GET_KEY. On success the response's Key is a buffer the
// caller owns and wipes.
func (c *Client) GetKey(ctx context.Context, req etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error) {
	resp, err := c.call(ctx, GetKeyRequest, AppendGetKeyRequest(nil, req), GetKeyResponse)
	if err != nil {
		return etsi004.GetKeyResponse{}, err
	}
	defer secret.Wipe(resp)
	r, err := DecodeGetKeyResponse(resp)
	return r, c.check(err)
}

// Close sends CLOSE for a key stream. The connection stays open.
func (c *Client) Close(ctx context.Context, req etsi004.CloseRequest) (etsi004.CloseResponse, error) {
	resp, err := c.call(ctx, CloseRequest, AppendCloseRequest(nil, req), CloseResponse)
	if err != nil {
		return etsi004.CloseResponse{}, err
	}
	r, err := DecodeCloseResponse(resp)
	return r, c.check(err)
}

// check breaks the connection if err (a decoding error) is not nil.
func (c *Client) check(err error) error {
	if err != nil {
		c.mu.Lock()
		c.breakLocked(err)
		c.mu.Unlock()
	}
	return err
}

func (c *Client) breakLocked(err error) {
	if c.broken == nil {
		c.broken = err
		_ = c.conn.Close()
	}
}

// call writes one request frame and reads the answer's payload, which must
// be of type want. ctx bounds the whole exchange.
func (c *Client) call(ctx context.Context, t ServiceType, payload []byte, want ServiceType) ([]byte, error) {
	frame, err := AppendFrame(nil, t, payload)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, fmt.Errorf("%w: %w", ErrBroken, c.broken)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A deadline from ctx, and an immediate one when ctx ends early.
	dl, _ := ctx.Deadline()
	_ = c.conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	resp, err := c.exchange(frame, want)
	if !stop() || err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("tcp004: %v: %w", t, ctx.Err())
		}
		if err == nil {
			err = ctx.Err()
		}
		c.breakLocked(err)
		return nil, err
	}
	_ = c.conn.SetDeadline(time.Time{})
	return resp, nil
}

func (c *Client) exchange(frame []byte, want ServiceType) ([]byte, error) {
	if _, err := c.conn.Write(frame); err != nil {
		return nil, fmt.Errorf("tcp004: writing %v: %w", ServiceType(frame[3]), err)
	}
	var hb [HeaderLen]byte
	if _, err := io.ReadFull(c.conn, hb[:]); err != nil {
		return nil, fmt.Errorf("tcp004: reading the %v header: %w", want, err)
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	if h.Type != want {
		return nil, malformed("got a %v, want a %v", h.Type, want)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.conn, p); err != nil {
		secret.Wipe(p)
		return nil, fmt.Errorf("tcp004: reading a %d-byte %v: %w", h.Length, want, err)
	}
	return p, nil
}
