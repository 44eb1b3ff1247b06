package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/qkms/qkms/internal/device/pushproto"
	"github.com/qkms/qkms/internal/secret"
)

var (
	errConnLost = errors.New("device: connection lost")
	errSilent   = errors.New("device: module silent for too long")
	errEnded    = errors.New("device: module ended the registration")
)

// session is one connection's life: OPEN_CONNECT, the GET_KEY registration,
// then notifications until ctx ends, the connection breaks, the module
// falls silent or something fails.
func (c *Client) session(ctx context.Context, conn coapConn, deliver func(context.Context, Block) error) error {
	if err := c.openConnect(ctx, conn); err != nil {
		return err
	}
	s := &stream{c: c, ctx: ctx, deliver: deliver, errc: make(chan error, 1)}
	s.heard.Store(time.Now().UnixNano())
	defer s.stop() // no deliver call after the session ends
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	_, err := conn.Observe(rctx, pushproto.PathGetKey, s.onMessage, c.query()...)
	cancel()
	if err != nil {
		select {
		case ferr := <-s.errc: // the module's answer says more than go-coap's error
			return ferr
		default:
			return fmt.Errorf("device: get_key registration: %w", err)
		}
	}
	c.log.Info("device: receiving key", "ksid", c.KeyStreamID())
	tick := time.NewTicker(c.opts.Silence / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-s.errc:
			return err
		case <-conn.Done():
			return errConnLost
		case <-tick.C:
			if time.Since(time.Unix(0, s.heard.Load())) > c.opts.Silence {
				return errSilent
			}
		}
	}
}

// query returns the GET_KEY query options for the stream.
func (c *Client) query(extra ...string) []message.Option {
	opts := []message.Option{{ID: message.URIQuery, Value: []byte(pushproto.QueryKeyStreamID + "=" + c.KeyStreamID().String())}}
	for _, q := range extra {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	return opts
}

// openConnect is 004 OPEN_CONNECT; it learns the KSID and the chunk size.
func (c *Client) openConnect(ctx context.Context, conn coapConn) error {
	req := pushproto.OpenConnect{
		Source:      c.opts.Source,
		Destination: c.opts.Destination,
		KeyStreamID: c.KeyStreamID(),
		QoS:         pushproto.QoS{MetadataMimetype: "application/cbor"},
	}
	p, err := pushproto.CBOR.Marshal(req)
	if err != nil {
		return &fatal{err}
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	resp, err := conn.Post(rctx, pushproto.PathOpenConnect, message.AppCBOR, bytes.NewReader(p))
	if err != nil {
		return fmt.Errorf("device: open_connect: %w", err)
	}
	body, err := resp.ReadBody()
	if err != nil {
		return fmt.Errorf("device: open_connect: %w", err)
	}
	var rep pushproto.OpenConnectReply
	if err := pushproto.CBOR.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("device: open_connect: answer %v: %w", resp.Code(), err)
	}
	return c.accept(req, rep)
}

// accept checks an OPEN_CONNECT reply and records the stream.
func (c *Client) accept(req pushproto.OpenConnect, rep pushproto.OpenConnectReply) error {
	switch {
	case rep.Status == pushproto.StatusKSIDInUse,
		rep.Status == pushproto.StatusNoQKDConnection,
		rep.Status == pushproto.StatusQoSNotMet:
		return &fatal{&StatusError{Op: "open_connect", Status: rep.Status}}
	case !rep.Status.OK():
		return &StatusError{Op: "open_connect", Status: rep.Status}
	case rep.KeyStreamID.IsZero() || rep.QoS.KeyChunkSize == 0:
		return fmt.Errorf("device: open_connect: %w: no KSID or key_chunk_size", pushproto.ErrMalformed)
	case !req.KeyStreamID.IsZero() && rep.KeyStreamID != req.KeyStreamID:
		return &fatal{fmt.Errorf("device: module answered KSID %s for %s", rep.KeyStreamID, req.KeyStreamID)}
	}
	c.mu.Lock()
	c.ksid, c.chunk = rep.KeyStreamID, rep.QoS.KeyChunkSize
	c.mu.Unlock()
	if rep.Status == pushproto.StatusPeerNotConnected {
		c.log.Info("device: stream open, peer KMS not yet connected to its module", "ksid", rep.KeyStreamID)
	}
	return nil
}

// stream receives one registration's messages.
type stream struct {
	c       *Client
	ctx     context.Context
	deliver func(context.Context, Block) error
	errc    chan error   // first failure
	heard   atomic.Int64 // Unix ns of the last message
	started sync.Once    // counts the session at its first successful answer

	stopped bool // guarded by c.deliverMu
}

func (s *stream) fail(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

// stop waits for a running deliver call and lets no other start.
func (s *stream) stop() {
	s.c.deliverMu.Lock()
	s.stopped = true
	s.c.deliverMu.Unlock()
}

// onMessage handles the first response and every notification.
func (s *stream) onMessage(m *pool.Message) {
	s.heard.Store(time.Now().UnixNano())
	body, err := m.ReadBody()
	defer secret.Wipe(body)
	if err != nil {
		s.fail(fmt.Errorf("device: get_key: %w", err))
		return
	}
	n, err := pushproto.DecodeNotification(body)
	if err != nil {
		s.fail(fmt.Errorf("device: get_key answer %v: %w", m.Code(), err))
		return
	}
	defer n.Wipe() // a no-op once deliver owns the key
	_, observing := m.Observe()
	switch {
	case m.Code() != codes.Content || n.Status != pushproto.StatusSuccess && n.Status != pushproto.StatusInsufficientKey:
		st := &StatusError{Op: "get_key", Status: n.Status}
		if n.Status == pushproto.StatusKSIDInUse {
			s.fail(&fatal{st})
		} else {
			s.fail(st)
		}
		return
	case observing != nil:
		s.fail(errEnded)
	}
	s.started.Do(func() { s.c.sessions.Add(1) })
	if n.Status == pushproto.StatusSuccess {
		s.handle(&n)
	}
}

// handle delivers a key notification if its index is new.
func (s *stream) handle(n *pushproto.Notification) {
	c := s.c
	c.mu.Lock()
	ksid, chunk := c.ksid, c.chunk
	c.mu.Unlock()
	if n.KeyStreamID != ksid || n.Key.Len() != int(chunk) {
		s.fail(fmt.Errorf("device: %w: block of %d bytes for stream %s", pushproto.ErrMalformed, n.Key.Len(), n.KeyStreamID))
		return
	}
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	if s.stopped || s.ctx.Err() != nil {
		return
	}
	index, ok, missing := c.seq.admit(n.Index)
	if !ok {
		c.stale.Add(1)
		return
	}
	if missing > 0 {
		c.missing.Add(missing)
		c.log.Warn("device: gap in key blocks", "missing", missing, "from", index-missing, "to", index-1)
	}
	b := Block{Index: index, Data: n.Key, KeyStreamID: ksid}
	n.Key = secret.Bytes{} // deliver owns it now
	if err := s.deliver(s.ctx, b); err != nil {
		s.fail(&fatal{fmt.Errorf("device: deliver block %d: %w", index, err)})
		return
	}
	c.seq.delivered(index)
	c.delivered.Add(1)
}

// Fetch pulls one block by index from the module while Run is connected
// (gap recovery): it returns the block if the module still buffers it, or
// ErrNotBuffered. The block is not consumed; the module still pushes it.
// The caller owns the returned Data.
func (c *Client) Fetch(ctx context.Context, index uint64) (Block, error) {
	c.mu.Lock()
	conn, ksid := c.conn, c.ksid
	c.mu.Unlock()
	if conn == nil || ksid.IsZero() {
		return Block{}, ErrNotConnected
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	resp, err := conn.Get(rctx, pushproto.PathGetKey, c.query(pushproto.QueryIndex+"="+strconv.FormatUint(uint64(uint32(index)), 10))...)
	if err != nil {
		return Block{}, fmt.Errorf("device: get_key: %w", err)
	}
	body, err := resp.ReadBody()
	defer secret.Wipe(body)
	if err != nil {
		return Block{}, fmt.Errorf("device: get_key: %w", err)
	}
	n, err := pushproto.DecodeNotification(body)
	if err != nil {
		return Block{}, fmt.Errorf("device: get_key answer %v: %w", resp.Code(), err)
	}
	if resp.Code() != codes.Content || n.Status != pushproto.StatusSuccess {
		n.Wipe()
		return Block{}, &StatusError{Op: "get_key", Status: n.Status}
	}
	if n.Index != uint32(index) || n.KeyStreamID != ksid {
		n.Wipe()
		return Block{}, fmt.Errorf("device: %w: asked for block %d, got %d", pushproto.ErrMalformed, uint32(index), n.Index)
	}
	return Block{Index: index, Data: n.Key, KeyStreamID: ksid}, nil
}
