package link

import (
	"context"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// Forwarder handles forward_keys messages that arrive on a link (the
// node's relay engine). in is the link the message came over.
type Forwarder interface {
	HandleForward(ctx context.Context, in *Link, req kmsproto.ForwardKeysReq) (kmsproto.ForwardKeysResp, kmsproto.Code, string)
}

// PeerParity is the block-index parity the peer allocates from: pieces in
// its messages must have it.
func (l *Link) PeerParity() int { return 1 - l.parity }

// CheckPeerPieces converts the pieces of a message from the peer, checking
// their parity and that they add up to total bytes.
func (l *Link) CheckPeerPieces(ps []kmsproto.Piece, total int) ([]keystore.Piece, bool) {
	return storePieces(ps, l.PeerParity(), total)
}

// WirePieces converts store pieces to their wire form.
func WirePieces(ps []keystore.Piece) []kmsproto.Piece { return wirePieces(ps) }

// WithOwnPieces takes want bytes of this end's free material and calls f
// with the pieces, holding the link's allocation lock (store operations
// only, never a round trip): f must consume exactly those pieces.
func (l *Link) WithOwnPieces(ctx context.Context, want int, f func([]keystore.Piece) error) error {
	l.allocMu.Lock()
	defer l.allocMu.Unlock()
	ps, err := l.piecesLeaving(ctx, want, l.macFloor())
	if err != nil {
		return err
	}
	return f(ps)
}

// Forward sends a forward_keys body (already encoded) to the peer once and
// returns its answer.
func (l *Link) Forward(ctx context.Context, body []byte) (kmsproto.ForwardKeysResp, error) {
	var resp kmsproto.ForwardKeysResp
	err := l.call(ctx, kmsproto.ForwardKeys, rawBody(body), &resp)
	return resp, err
}

// timeoutFor is the round-trip budget of a message type: a forward_keys
// answers only when the rest of the route has answered.
func (l *Link) timeoutFor(t kmsproto.Type) time.Duration {
	if t == kmsproto.ForwardKeys {
		return l.o.RelayTimeout
	}
	return l.o.CallTimeout
}

// SendRelay starts a relay at its source: apply stores the step (keys
// Pending, record = the forward_keys body) using pieces of this link (under
// its allocation lock); the body then goes out through the outbox, retried
// until the route answers. SendRelay waits for that answer like Reserve:
// on success the keys are Ready here.
func (l *Link) SendRelay(ctx context.Context, step string, want int, apply func(ps []keystore.Piece) error) error {
	return l.queueAndWait(ctx, step, 2*l.o.RelayTimeout, "forward_keys along the route", func() error {
		return l.WithOwnPieces(ctx, want, apply)
	})
}

// OutboxFor builds the outbox entry of a relay source step.
func (l *Link) OutboxFor(step string, body []byte, ids []qkd.KeyID) (*keystore.Outbox, error) {
	payload, err := kmsproto.Marshal(outboxEntry{Type: kmsproto.ForwardKeys, Body: body, IDs: ids})
	if err != nil {
		return nil, err
	}
	return &keystore.Outbox{ID: step, Link: l.o.ID, Payload: payload, Created: l.o.Now()}, nil
}

func (l *Link) handleForward(ctx context.Context, body []byte) handlerResult {
	var req kmsproto.ForwardKeysReq
	if err := kmsproto.Unmarshal(body, &req); err != nil {
		return refuse(kmsproto.BadRequest, "malformed body")
	}
	if l.o.Forwarder == nil {
		return refuse(kmsproto.NoRoute, "this node does not relay")
	}
	resp, code, msg := l.o.Forwarder.HandleForward(ctx, l, req)
	if code != kmsproto.OK {
		return refuse(code, msg)
	}
	return ok(resp)
}
