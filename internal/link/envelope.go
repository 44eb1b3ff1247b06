package link

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// reserveSlots MAC slots are kept for the messages that refill them.
const reserveSlots = 8

// aheadOfRefill marks the context of an outbox entry that a queued MAC
// slot refill waits behind (the peer takes allocations in the order their
// pieces were cut): it may use the reserve but the last slot.
type aheadOfRefill struct{}

// fromOutbox marks the context of an outbox entry's message: queueAndWait
// admitted it with a slot set aside for it.
type fromOutbox struct{}

// polyTag computes a one-time Poly1305 tag of msg under a 32-byte key (the
// key's owner wipes it).
func polyTag(key []byte, msg []byte) []byte {
	t, err := itsmac.Sum(secret.MACKey{Bytes: secret.Adopt(key)}, msg)
	if err != nil {
		panic("link: one-time key of the wrong size")
	}
	return t[:]
}

// The last reserveSlots slots are kept for the messages that replenish key
// material: new_key_batch may use half of them, make_keys_internal all, so
// that a link can always refill its MAC keys. Messages from outside the
// outbox also leave one slot per queued outbox entry (l.queued): admission
// (queueAndWait) promised each entry its slot, and an entry queued ahead
// of a refill must never find them gone, or the refill behind it could
// never be sent.
func (l *Link) takeSendSlot(ctx context.Context, t kmsproto.Type) (*exchangeKeys, error) {
	queued := uint64(max(l.queued.Load(), 0))
	reserve := uint64(reserveSlots) + queued
	switch {
	case t == kmsproto.MakeKeysInternal, t == kmsproto.PostStatus: // refills, and the zeroisation notice
		reserve = 0
	case ctx.Value(aheadOfRefill{}) != nil:
		reserve = 1 // an outbox entry queued before a refill: the refill cannot pass it
	case ctx.Value(fromOutbox{}) != nil:
		reserve = reserveSlots // its own slot is among the queued ones
	case t == kmsproto.NewKeyBatch:
		reserve = reserveSlots/2 + queued
	}
	for {
		l.mu.Lock()
		if l.inactive {
			l.mu.Unlock()
			return nil, qkd.ErrInactive
		}
		end := l.lay.msgsBelow(l.usableEnd)
		if l.nextSeq+reserve >= end {
			l.mu.Unlock()
			poke(l.wakeSlots)
			return nil, ErrNoSlots
		}
		seq := l.nextSeq
		l.nextSeq++
		low := end-l.nextSeq < uint64(l.o.SlotLowWater+reserveSlots)
		slot, _ := l.lay.slotOf(seq)
		psk := slot < l.pskEnd
		l.mu.Unlock()
		if low {
			poke(l.wakeSlots)
		}
		keys, err := l.own.take(ctx, seq)
		if errors.Is(err, qkd.ErrNotFound) {
			continue // used before a crash: never reuse, skip it
		}
		if err != nil {
			return nil, fmt.Errorf("link %s: take slot: %w", l.o.ID, err)
		}
		if psk {
			l.o.Observer.PSKTag(l.o.ID)
		}
		return keys, nil
	}
}

// probe pings a peer that failed last time before a message spends a MAC
// slot on it: a peer that is down must not drain the one-time keys.
func (l *Link) probe(ctx context.Context) error {
	l.mu.Lock()
	failing := l.peer.Err != ""
	l.mu.Unlock()
	if !failing {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, l.o.CallTimeout)
	defer cancel()
	if err := l.o.Transport.Ping(cctx); err != nil {
		return fmt.Errorf("%w: %w", qkd.ErrPeerUnavailable, err)
	}
	return nil
}

// RefusedError is a peer's authenticated refusal.
type RefusedError struct {
	Code kmsproto.Code
	Msg  string
}

func (e *RefusedError) Error() string { return "peer refused: " + e.Code.String() + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// codeOf returns the refusal code of err (OK if it is not a refusal).
func codeOf(err error) kmsproto.Code {
	var r *RefusedError
	if errors.As(err, &r) {
		return r.Code
	}
	return kmsproto.OK
}

// handlerResult is what a message handler returns.
type handlerResult struct {
	code kmsproto.Code
	msg  string
	body any
}

func ok(body any) handlerResult { return handlerResult{code: kmsproto.OK, body: body} }

func refuse(code kmsproto.Code, msg string) handlerResult {
	return handlerResult{code: code, msg: msg}
}

// Handle verifies one sealed request from the peer (already decoded by the
// Mux), runs it and returns the sealed reply. An identical copy of a
// request answered before gets the same reply from the reply cache
// (replycache.go); a request under a number this end holds neither the
// key nor the reply of gets a kmsproto.SeqGone notice (nil error: the
// transport carries it as an answer, not as an error code).
func (l *Link) Handle(ctx context.Context, t kmsproto.Type, s kmsproto.Sealed, h kmsproto.Header) ([]byte, error) {
	if h.From != l.o.Peer || h.To != l.o.Self || h.Type != t {
		l.o.Observer.MACFailure(l.o.ID, "header")
		return nil, fmt.Errorf("%w: header names the wrong nodes or type", ErrUnauthenticated)
	}
	if err := l.checkPeerMAC(t, h); err != nil {
		return nil, err
	}
	sum := requestHash(s.Data, s.Tag)
	unlock, err := l.replies.lock(ctx, h.Seq)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", l.o.ID, err)
	}
	defer unlock()
	if rep, known := l.replies.lookup(h.Seq, sum); rep != nil {
		// The sender did not get the reply and sent the identical bytes
		// again: answer as before, run nothing.
		l.o.Observer.Message(l.o.ID, t, "retry_answered")
		l.log.Debug("peer message answered again from the reply cache", "type", string(t), "seq", h.Seq)
		return rep, nil
	} else if known {
		l.o.Observer.MACFailure(l.o.ID, "replay_or_unknown_seq")
		l.log.Warn("peer message rejected: message number used before by other bytes", "type", string(t), "seq", h.Seq)
		return nil, fmt.Errorf("%w: message number %d used", ErrUnauthenticated, h.Seq)
	}
	// The slot is used up only by a message whose tag verifies: a forged
	// or corrupted message costs no key material.
	keys, used, err := l.peerSlots.use(ctx, h.Seq, func(k *exchangeKeys) bool {
		return k.verify(false, s.Data, s.Tag)
	})
	if errors.Is(err, qkd.ErrNotFound) {
		l.o.Observer.MACFailure(l.o.ID, "replay_or_unknown_seq")
		l.log.Warn("peer message rejected: message number used before or unknown", "type", string(t), "seq", h.Seq)
		return kmsproto.Marshal(kmsproto.SeqGone{Seq: h.Seq, Type: t, Hash: sum[:]})
	}
	if err != nil {
		return nil, fmt.Errorf("link %s: use slot: %w", l.o.ID, err)
	}
	if !used {
		l.o.Observer.MACFailure(l.o.ID, "tag")
		l.o.Observer.Message(l.o.ID, t, "bad_mac")
		l.log.Warn("peer message rejected: bad ITS tag", "type", string(t), "seq", h.Seq)
		return nil, fmt.Errorf("%w: bad tag", ErrUnauthenticated)
	}
	defer keys.wipe()
	// The slot is used: from here the request runs to its reply whether
	// or not the sender still waits (its transport may time out and
	// cancel ctx). Cut short, the request would leave its changes made
	// and no reply cached, and the sender's identical retry would meet a
	// number with neither key nor reply (seq_gone: one more slot).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handleBudget)
	defer cancel()
	slot, _ := l.lay.slotOf(h.Seq)
	l.mu.Lock()
	psk := slot < l.pskEnd // both directions get the same number of PSK slots
	l.mu.Unlock()
	if psk {
		l.o.Observer.PSKTag(l.o.ID)
	}
	res := l.dispatch(ctx, t, h.Body)
	if res.code != kmsproto.OK {
		l.log.Info("peer request refused", "type", string(t), "seq", h.Seq, "code", res.code.String(), "reason", res.msg)
	}
	l.notePeerAlive()
	rep := kmsproto.Reply{Seq: h.Seq, Type: t, Code: res.code, Err: res.msg}
	if res.body != nil {
		b, err := kmsproto.Marshal(res.body)
		if err != nil {
			return nil, err
		}
		rep.Body = cbor.RawMessage(b)
	}
	data, err := kmsproto.Marshal(rep)
	if err != nil {
		return nil, err
	}
	sealed, err := kmsproto.Marshal(kmsproto.Sealed{Data: data, Tag: keys.sum(true, data)})
	if err != nil {
		return nil, err
	}
	// Durability barrier: the slot's use and everything the request
	// changed survive power loss before the reply's tag leaves the node
	// (a slot back after a power cut would verify the retry again and tag
	// a second, different reply with the same one-time key).
	if err := l.o.Store.Sync(ctx); err != nil {
		return nil, fmt.Errorf("link %s: sync before replying: %w", l.o.ID, err)
	}
	l.replies.put(h.Seq, sum, sealed)
	return sealed, nil
}

// handleBudget bounds the handling of a verified request once its sender
// stopped waiting for it.
const handleBudget = time.Minute

// headerMAC is this end's scheme as the header names it: empty for the
// default, Poly1305.
func (l *Link) headerMAC() string {
	if l.lay.wc {
		return itsmac.SchemeWegmanCarter.String()
	}
	return ""
}

// checkPeerMAC refuses, before any key is opened, a request that names
// another ITS MAC scheme than this end's: the two ends' links[].mac differ,
// and nothing either sends would ever verify. This end's scheme alone
// decides how tags are checked; the header only makes the failure clear.
func (l *Link) checkPeerMAC(t kmsproto.Type, h kmsproto.Header) error {
	if h.MAC == l.headerMAC() {
		return nil
	}
	peer := h.MAC
	if peer == "" {
		peer = itsmac.SchemePoly1305.String()
	} else if len(peer) > 32 {
		peer = peer[:32] + "..."
	}
	l.o.Observer.MACFailure(l.o.ID, "scheme_mismatch")
	l.o.Observer.Message(l.o.ID, t, "bad_mac")
	l.log.Error("peer message rejected: the peer uses another ITS MAC scheme; links[].mac must be the same at both ends",
		"type", string(t), "seq", h.Seq, "peer_mac", peer, "mac", l.MACScheme())
	return fmt.Errorf("%w: %w (peer %q, this end %q)", ErrUnauthenticated, ErrMACMismatch, peer, l.MACScheme())
}

func (l *Link) dispatch(ctx context.Context, t kmsproto.Type, body []byte) handlerResult {
	l.mu.Lock()
	inactive := l.inactive
	l.mu.Unlock()
	if inactive && t != kmsproto.GetStatus {
		return refuse(kmsproto.Inactive, "node is inactive")
	}
	switch t {
	case kmsproto.NewKeyBatch:
		var req kmsproto.NewKeyBatchReq
		if err := kmsproto.Unmarshal(body, &req); err != nil {
			return refuse(kmsproto.BadRequest, "malformed body")
		}
		return l.handleBatch(ctx, req)
	case kmsproto.MakeKeysInternal:
		var req kmsproto.MakeKeysInternalReq
		if err := kmsproto.Unmarshal(body, &req); err != nil {
			return refuse(kmsproto.BadRequest, "malformed body")
		}
		return l.handleInternal(ctx, req)
	case kmsproto.MakeKeysExternal:
		var req kmsproto.MakeKeysExternalReq
		if err := kmsproto.Unmarshal(body, &req); err != nil {
			return refuse(kmsproto.BadRequest, "malformed body")
		}
		return l.handleExternal(ctx, req)
	case kmsproto.DeleteKeys:
		var req kmsproto.DeleteKeysReq
		if err := kmsproto.Unmarshal(body, &req); err != nil {
			return refuse(kmsproto.BadRequest, "malformed body")
		}
		return l.handleDelete(ctx, req)
	case kmsproto.ForwardKeys:
		return l.handleForward(ctx, body)
	case kmsproto.GetStatus:
		return ok(l.status(ctx))
	case kmsproto.PostStatus:
		var req kmsproto.Status
		if err := kmsproto.Unmarshal(body, &req); err != nil {
			return refuse(kmsproto.BadRequest, "malformed body")
		}
		l.notePeerStatus(req)
		return ok(nil)
	}
	return l.dispatchApps(ctx, t, body) // apps.go: split_key, merge_keys, new_app, key_stream_closed
}

// Mux dispatches sealed requests to the node's links.
type Mux struct {
	links map[qkd.LinkID]*Link
}

// NewMux returns a Mux over links.
func NewMux(links []*Link) *Mux {
	m := &Mux{links: map[qkd.LinkID]*Link{}}
	for _, l := range links {
		m.links[l.o.ID] = l
	}
	return m
}

// Handle decodes the envelope and hands it to its link.
func (m *Mux) Handle(ctx context.Context, t kmsproto.Type, payload []byte) ([]byte, error) {
	s, err := kmsproto.DecodeSealed(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	h, err := kmsproto.DecodeHeader(s.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	l := m.links[h.Link]
	if l == nil {
		return nil, fmt.Errorf("%w: unknown link", ErrUnauthenticated)
	}
	return l.Handle(ctx, t, s, h)
}
