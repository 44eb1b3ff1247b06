package qkdsim

import (
	"bytes"
	"context"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/qkms/qkms/internal/device/pushproto"
	"github.com/qkms/qkms/internal/secret"
)

// observer is a KMS's GET_KEY registration (RFC 7641 §4.1) at an end.
type observer struct {
	conn     mux.Conn
	token    message.Token
	endpoint string
	udp      bool
	ctx      context.Context // done when replaced, deregistered or the conn closes
	cancel   context.CancelFunc
}

func newObserver(conn mux.Conn, token message.Token, endpoint string, udp bool) *observer {
	ctx, cancel := context.WithCancel(conn.Context())
	return &observer{
		conn:     conn,
		token:    append(message.Token(nil), token...),
		endpoint: endpoint,
		udp:      udp,
		ctx:      ctx,
		cancel:   cancel,
	}
}

// send writes one notification and returns when it is acknowledged (UDP:
// confirmable, RFC 7641 §4.5) or written (TCP, RFC 8323).
func (o *observer) send(out outgoing) error {
	m := o.conn.AcquireMessage(o.ctx)
	defer o.conn.ReleaseMessage(m)
	m.SetCode(codes.Content)
	m.SetToken(o.token)
	m.SetObserve(out.seq)
	m.SetContentFormat(message.AppCBOR)
	m.SetType(message.Confirmable) // meaningful over UDP only
	m.SetBody(bytes.NewReader(out.payload))
	return o.conn.WriteMessage(m)
}

// outgoing is the next message of a push loop.
type outgoing struct {
	payload []byte // owned by the loop, wiped after sending
	seq     uint32 // Observe sequence number
	index   uint64
	key     bool // carries the block at index
}

// push is the loop of one registration: the first response, then one
// notification per block, oldest first, each sent only after the previous
// one was acknowledged, and a keyless notification after Heartbeat of
// silence. A block leaves the buffer once its notification is acknowledged.
func (e *End) push(o *observer) {
	defer e.pushers.Done()
	defer e.forget(o)
	for first := true; ; first = false {
		out, err := e.next(o, first)
		if err != nil {
			return
		}
		err = o.send(out)
		secret.Wipe(out.payload)
		if err != nil {
			e.log.Debug("qkdsim: notification not delivered", "endpoint", o.endpoint, "err", err)
			return
		}
		if out.key {
			e.delivered(o, out.index)
		}
	}
}

// next waits until there is something to send to o: the oldest block once
// its delay has passed, the first response (without key if no block is due:
// the KMS's registration must not wait for a delay), or a heartbeat.
func (e *End) next(o *observer, first bool) (outgoing, error) {
	clock := e.link.opts.Clock
	heartbeat := clock.After(e.link.opts.Heartbeat)
	for {
		e.mu.Lock()
		now := clock.Now()
		b, ok := e.buf.front()
		var wait time.Duration // until the oldest block is due
		if ok {
			wait = b.made.Add(e.faults.Delay).Sub(now)
		}
		due := ok && wait <= 0
		send := due || first
		if send && o.udp {
			if d := e.mids.reserve(now); d > 0 {
				send, wait = false, d
			}
		}
		if send {
			out, err := e.outgoingLocked(b, due)
			e.mu.Unlock()
			return out, err
		}
		changed := e.changed
		e.mu.Unlock()
		var timer <-chan time.Time
		if wait > 0 {
			timer = clock.After(wait)
		}
		select {
		case <-o.ctx.Done():
			return outgoing{}, o.ctx.Err()
		case <-changed:
		case <-timer:
		case <-heartbeat:
			if out, ok := e.heartbeat(o); ok {
				return out, nil
			}
			heartbeat = clock.After(e.link.opts.Heartbeat)
		}
	}
}

// outgoingLocked encodes block b (hasBlock) or a keyless status-2 message
// carrying the index the end will deliver next.
func (e *End) outgoingLocked(b block, hasBlock bool) (outgoing, error) {
	seq := e.nextSeqLocked()
	if !hasBlock {
		next := e.link.next.Load()
		if head, ok := e.buf.front(); ok {
			next = head.index
		}
		p, err := pushproto.EncodeNotification(pushproto.Notification{
			Status: pushproto.StatusInsufficientKey,
			Index:  uint32(next),
		})
		return outgoing{payload: p, seq: seq}, err
	}
	p, err := e.encodeLocked(b)
	return outgoing{payload: p, seq: seq, index: b.index, key: true}, err
}

// nextSeqLocked returns the next Observe sequence number of the end
// (RFC 7641 §4.4). It increases across registrations and follows the clock
// in milliseconds where it can: a client keeps an observation's last number
// for its token, and go-coap acknowledges but silently drops a notification
// whose number is not newer — which is what a restarted end or a fresh
// registration would send if each counted from 1 (a retransmitted GET can
// register the same token again).
func (e *End) nextSeqLocked() uint32 {
	const mask = 1<<24 - 1
	now := uint32(e.link.opts.Clock.Now().UnixMilli()) & mask
	if d := (now - e.obsSeq) & mask; d != 0 && d < 1<<23 {
		e.obsSeq = now
	} else {
		e.obsSeq = (e.obsSeq + 1) & mask
	}
	return e.obsSeq
}

// heartbeat returns a keyless notification unless the UDP message-ID budget
// is spent (then the end is busy and needs no heartbeat).
func (e *End) heartbeat(o *observer) (outgoing, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if o.udp && e.mids.reserve(e.link.opts.Clock.Now()) > 0 {
		return outgoing{}, false
	}
	out, err := e.outgoingLocked(block{}, false)
	return out, err == nil
}

// delivered removes block index from the buffer once o (still the
// registration) has had it.
func (e *End) delivered(o *observer, index uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.obs != o {
		return
	}
	if b, ok := e.buf.front(); ok && b.index == index {
		b = e.buf.pop()
		secret.Wipe(b.data)
		e.stats.Delivered++
	}
}

// forget ends registration o.
func (e *End) forget(o *observer) {
	o.cancel()
	e.mu.Lock()
	if e.obs == o {
		e.obs = nil
	}
	e.mu.Unlock()
	e.log.Debug("qkdsim: registration ended", "endpoint", o.endpoint)
}

// secretView wraps a buffer the end still owns, for encoding only: the
// caller must not wipe the result.
func secretView(b []byte) secret.Bytes { return secret.Adopt(b) }
