package peer

import (
	"context"
	"fmt"
)

// Ping checks that the peer answers (a CoAP ping: an empty confirmable
// message over UDP, a 7.02 Ping signal over TCP) without sending any KMS
// message. The link layer pings a peer that failed before it spends a
// one-time MAC key on it.
func (c *Client) Ping(ctx context.Context) error {
	cn, err := c.acquire(ctx)
	if err != nil {
		return fmt.Errorf("%w: ping: %w", ErrNotSent, err)
	}
	err = cn.cc.Ping(ctx)
	c.release(cn, err)
	if err != nil {
		return fmt.Errorf("%w: ping: %w", ErrNoReply, err)
	}
	return nil
}
