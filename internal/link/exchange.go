package link

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// Sending: one message number per request, however often it is sent.
//
// A request is sealed once (prepare: its MAC slot is taken out of the
// store, the store is synced, the tag computed). If no verified reply
// comes back (transport error, timeout, a reply that fails its tag or does
// not match), the very same sealed bytes are sent again under the same
// number: the peer either never got them (its slot is still there and the
// tag verifies) or it did and answers from its reply cache (replycache.go)
// without running the request again. Sending identical bytes under an
// identical one-time key twice reveals nothing the first copy did not:
// the tag is the same function of the same key and the same message.
// So a link under attack or over a broken path spends one MAC slot per
// request, not one per try.
//
// A request leaves the retained set only with a verified reply (OK or a
// refusal, which used its exchange legitimately), when the peer answers
// that it holds neither the key nor the reply of the number any more
// (kmsproto.SeqGone naming exactly the bytes sent: it restarted, or
// evicted the reply), or when the set overflows. Only the SeqGone case
// makes a retry spend a new number.

// errGone: the peer holds neither the MAC key nor the reply of a message
// number (it restarted, or the reply was evicted): the request must be
// sealed again under a new number.
var errGone = errors.New("link: the peer no longer holds this message number")

// maxRetained bounds the sealed requests kept for identical retries.
// Each holds an exchange's MAC keys (64 bytes) and its wire bytes; one per
// caller that retries (outbox head, batch, status poll) is all a link
// needs, the rest are requests whose callers gave up.
const maxRetained = 64

// requestHash names one sealed request at both ends: SHA-256 of its Data
// followed by its Tag (16 bytes, so the split is unambiguous).
func requestHash(data, tag []byte) [32]byte {
	h := sha256.New()
	h.Write(data)
	h.Write(tag)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// prepared is a sealed request: its wire bytes and the MAC keys of its
// exchange (the reply's key verifies the answer). Its holder sends it as
// often as needed and wipes it once the outcome is known.
type prepared struct {
	l      *Link
	t      kmsproto.Type
	keys   *exchangeKeys
	wire   []byte
	hash   [32]byte // requestHash of the wire message
	synced bool     // Store.Sync ran after the slot was taken
}

// prepare takes a MAC slot and seals the request, without any I/O.
func (l *Link) prepare(ctx context.Context, t kmsproto.Type, req any) (*prepared, error) {
	body, err := kmsproto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("link: encode %s: %w", t, err)
	}
	return l.prepareBody(ctx, t, body)
}

func (l *Link) prepareBody(ctx context.Context, t kmsproto.Type, body []byte) (*prepared, error) {
	keys, err := l.takeSendSlot(ctx, t)
	if err != nil {
		return nil, err
	}
	hdr, err := kmsproto.Marshal(kmsproto.Header{V: kmsproto.Version, Type: t, Link: l.o.ID,
		From: l.o.Self, To: l.o.Peer, Seq: keys.seq, Body: body, MAC: l.headerMAC()})
	if err == nil {
		tag := keys.sum(false, hdr)
		var wire []byte
		if wire, err = kmsproto.Marshal(kmsproto.Sealed{Data: hdr, Tag: tag}); err == nil {
			return &prepared{l: l, t: t, keys: keys, wire: wire, hash: requestHash(hdr, tag)}, nil
		}
	}
	keys.wipe()
	return nil, err
}

// sync is the durability barrier of the message: the slot it took (and
// whatever was committed before: allocations, relay pads, the batch
// record) survives power loss before its tag leaves the node. Once per
// prepared message.
func (p *prepared) sync(ctx context.Context) error {
	if p.synced {
		return nil
	}
	if err := p.l.o.Store.Sync(ctx); err != nil {
		return fmt.Errorf("link %s: sync before sending %s: %w", p.l.o.ID, p.t, err)
	}
	p.synced = true
	return nil
}

func (p *prepared) wipe() { p.keys.wipe() }

// attempt sends the request once and verifies the reply. keep reports
// that the outcome is unknown and the identical message may be sent
// again; otherwise the exchange is over (verified reply, or errGone).
func (p *prepared) attempt(ctx context.Context, resp any) (keep bool, err error) {
	l, t, seq := p.l, p.t, p.keys.seq
	if err := p.sync(ctx); err != nil {
		return true, err
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeoutFor(t))
	defer cancel()
	raw, err := l.o.Transport.Call(cctx, t, p.wire)
	if err != nil {
		l.o.Observer.Message(l.o.ID, t, "transport_error")
		l.notePeerError(err)
		return true, fmt.Errorf("%w: %s: %w", qkd.ErrPeerUnavailable, t, err)
	}
	s, err := kmsproto.DecodeSealed(raw)
	if err != nil {
		if g, gerr := kmsproto.DecodeSeqGone(raw); gerr == nil {
			return p.gone(g)
		}
	}
	if err != nil || !p.keys.verify(true, s.Data, s.Tag) {
		l.o.Observer.MACFailure(l.o.ID, "reply")
		l.log.Warn("reply from peer failed authentication", "type", string(t), "seq", seq)
		return true, fmt.Errorf("%w: reply to %s", ErrUnauthenticated, t)
	}
	rep, err := kmsproto.DecodeReply(s.Data)
	if err != nil || rep.Seq != seq || rep.Type != t {
		return true, fmt.Errorf("%w: reply to %s does not match the request", ErrUnauthenticated, t)
	}
	l.notePeerAlive()
	l.o.Observer.Message(l.o.ID, t, rep.Code.String())
	if rep.Code != kmsproto.OK {
		return false, &RefusedError{Code: rep.Code, Msg: rep.Err}
	}
	if resp != nil && len(rep.Body) > 0 {
		if err := kmsproto.Unmarshal(rep.Body, resp); err != nil {
			return false, fmt.Errorf("link: reply to %s: %w", t, err)
		}
	}
	return false, nil
}

// gone handles a SeqGone notice: it ends the exchange only if it names
// exactly the bytes sent. It is not authenticated; naming the bytes keeps
// a request corrupted on the way (whose number may now name a used slot)
// from costing a new number, and a forger who sees the wire can cost this
// end at most one number per try, at the retry pace.
func (p *prepared) gone(g kmsproto.SeqGone) (bool, error) {
	l := p.l
	if g.Seq != p.keys.seq || g.Type != p.t || !bytes.Equal(g.Hash, p.hash[:]) {
		l.o.Observer.MACFailure(l.o.ID, "reply")
		return true, fmt.Errorf("%w: %s: the peer answered for other bytes", ErrUnauthenticated, p.t)
	}
	l.o.Observer.Message(l.o.ID, p.t, "gone")
	l.log.Info("peer holds neither key nor reply of a message: sealing it again under a new number",
		"type", string(p.t), "seq", p.keys.seq)
	return false, fmt.Errorf("%w: %w: %s number %d", ErrUnauthenticated, errGone, p.t, p.keys.seq)
}

// exKey names a request by what it asks: type and body. The same request
// sent again, by whatever caller, is the same message.
type exKey struct {
	t    kmsproto.Type
	body [32]byte
}

func keyOf(t kmsproto.Type, body []byte) exKey { return exKey{t: t, body: sha256.Sum256(body)} }

// retainedSet holds sealed requests whose outcome is unknown, to be sent
// again identically. A caller takes one out while sending it, so no two
// goroutines hold the same prepared message.
type retainedSet struct {
	mu     sync.Mutex
	m      map[exKey]retainedEntry // guarded by mu
	n      uint64                  // guarded by mu: insertion counter
	closed bool                    // guarded by mu: wiped after zeroisation
}

type retainedEntry struct {
	p   *prepared
	age uint64
}

// take removes and returns the retained message for k, or nil.
func (r *retainedSet) take(k exKey) *prepared {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[k]
	if !ok {
		return nil
	}
	delete(r.m, k)
	return e.p
}

// has reports whether a message for k is retained.
func (r *retainedSet) has(k exKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[k]
	return ok
}

// keep retains p for k; the oldest entry goes (wiped) beyond maxRetained.
func (r *retainedSet) keep(k exKey, p *prepared) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		p.wipe()
		return
	}
	if r.m == nil {
		r.m = map[exKey]retainedEntry{}
	}
	if old, ok := r.m[k]; ok { // a concurrent caller sent the same request
		old.p.wipe()
	}
	r.n++
	r.m[k] = retainedEntry{p: p, age: r.n}
	for len(r.m) > maxRetained {
		var oldest exKey
		first := true
		for key, e := range r.m {
			if first || e.age < r.m[oldest].age {
				oldest, first = key, false
			}
		}
		r.m[oldest].p.wipe()
		delete(r.m, oldest)
	}
}

// wipe destroys every retained message and refuses new ones.
func (r *retainedSet) wipe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for k, e := range r.m {
		e.p.wipe()
		delete(r.m, k)
	}
}

// maxReseals bounds how often one call seals its request again after
// SeqGone answers: a restarted peer lost its replies, and with
// Wegman–Carter also the unused halves of slots it had opened, so the
// first new number can be gone there too.
const maxReseals = 2

// call sends one authenticated request and returns the verified reply
// body. A request whose earlier send has no known outcome goes again as
// the identical sealed message under its number; a fresh one takes a new
// MAC slot. A message the peer no longer holds is sealed again under a
// new number, at most maxReseals times per call.
func (l *Link) call(ctx context.Context, t kmsproto.Type, req any, resp any) error {
	body, err := kmsproto.Marshal(req)
	if err != nil {
		return fmt.Errorf("link: encode %s: %w", t, err)
	}
	k := keyOf(t, body)
	p := l.retained.take(k)
	for reseals := 0; ; reseals++ {
		if p == nil {
			if err := l.probe(ctx); err != nil {
				return err
			}
			if p, err = l.prepareBody(ctx, t, body); err != nil {
				return err
			}
		}
		keep, err := p.attempt(ctx, resp)
		if keep {
			l.retained.keep(k, p)
		} else {
			p.wipe()
		}
		if errors.Is(err, errGone) && reseals < maxReseals {
			p = nil
			continue
		}
		return err
	}
}
