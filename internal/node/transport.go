package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/peer"
)

// peerTransport is a link.Transport over peer.Client that connects lazily,
// so a node can start before its neighbours.
type peerTransport struct {
	network, addr string
	log           *slog.Logger

	mu     sync.Mutex
	client *peer.Client // guarded by mu
	closed bool         // guarded by mu
}

func (t *peerTransport) get(ctx context.Context) (*peer.Client, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errors.New("node: transport closed")
	}
	if t.client != nil {
		return t.client, nil
	}
	c, err := peer.Dial(ctx, t.network, t.addr, peer.ClientOptions{Log: t.log})
	if err != nil {
		return nil, err
	}
	t.client = c
	return c, nil
}

// Call implements link.Transport.
func (t *peerTransport) Call(ctx context.Context, mt kmsproto.Type, payload []byte) ([]byte, error) {
	c, err := t.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", peer.ErrNotSent, err)
	}
	return c.Call(ctx, mt, payload)
}

// Ping implements link.Transport.
func (t *peerTransport) Ping(ctx context.Context) error {
	c, err := t.get(ctx)
	if err != nil {
		return err
	}
	return c.Ping(ctx)
}

func (t *peerTransport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.client != nil {
		_ = t.client.Close()
	}
}

// peerHandler maps link errors to the peer transport's sentinels.
func peerHandler(m *link.Mux) peer.Handler {
	return func(ctx context.Context, mt kmsproto.Type, payload []byte) ([]byte, error) {
		out, err := m.Handle(ctx, mt, payload)
		switch {
		case err == nil:
			return out, nil
		case errors.Is(err, link.ErrUnauthenticated):
			return nil, fmt.Errorf("%w: %w", peer.ErrUnauthenticated, err)
		case errors.Is(err, link.ErrBadRequest):
			return nil, fmt.Errorf("%w: %w", peer.ErrBadRequest, err)
		}
		return nil, fmt.Errorf("%w: %w", peer.ErrInternal, err)
	}
}
