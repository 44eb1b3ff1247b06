package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// agentConn is the controller's side of one agent: where it is and the
// configuration pushes to it. Pushes are coalesced: a push renders the
// node's configuration when it is sent, so the newest state always wins
// and no lock is held across the round trip.
type agentConn struct {
	c        *Controller
	node     qkd.NodeID
	lastSeen time.Time // guarded by c.mu

	mu      sync.Mutex
	cond    *sync.Cond
	url     string // guarded by mu
	want    uint64 // guarded by mu: generation asked for
	done    uint64 // guarded by mu: generation applied by the agent
	tried   uint64 // guarded by mu: newest generation attempted
	lastErr error  // guarded by mu
	running bool   // guarded by mu
	stopped bool   // guarded by mu
	client  *agentClient
}

func newAgentConn(c *Controller, node qkd.NodeID) *agentConn {
	a := &agentConn{c: c, node: node}
	a.cond = sync.NewCond(&a.mu)
	return a
}

func (a *agentConn) setURL(u string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.url != u || a.client == nil {
		a.url = u
		a.client = newAgentClient(u, a.c.o.ClientTLS)
	}
}

func (a *agentConn) stop() {
	a.mu.Lock()
	a.stopped = true
	a.cond.Broadcast()
	a.mu.Unlock()
}

// push asks for node n's configuration to be sent to its agent and returns
// a function that waits until the agent applied it (or ctx ends). Nodes
// without an agent are skipped (they get their configuration with their
// first report).
func (c *Controller) push(n qkd.NodeID) func(context.Context) error {
	c.mu.Lock()
	a := c.agents[n]
	c.mu.Unlock()
	if a == nil {
		return func(context.Context) error { return fmt.Errorf("node %s has no agent registered", n) }
	}
	a.mu.Lock()
	a.want++
	gen := a.want
	if !a.running {
		a.running = true
		go a.loop()
	}
	a.mu.Unlock()
	return func(ctx context.Context) error { return a.wait(ctx, gen) }
}

func (a *agentConn) wait(ctx context.Context, gen uint64) error {
	stop := context.AfterFunc(ctx, func() {
		a.mu.Lock()
		a.cond.Broadcast()
		a.mu.Unlock()
	})
	defer stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.done < gen && ctx.Err() == nil && !a.stopped && !(a.tried >= gen && a.lastErr != nil) {
		a.cond.Wait()
	}
	if a.done >= gen {
		return nil
	}
	if a.lastErr != nil {
		return fmt.Errorf("agent of %s: %w", a.node, a.lastErr)
	}
	if a.stopped {
		return fmt.Errorf("controller stopped")
	}
	return ctx.Err()
}

// loop sends configurations while there are generations to send; failed
// pushes are retried with backoff (the agent's next report also carries
// the configuration).
func (a *agentConn) loop() {
	backoff := 100 * time.Millisecond
	for {
		a.mu.Lock()
		if a.done >= a.want || a.stopped {
			a.running = false
			a.mu.Unlock()
			return
		}
		gen, client := a.want, a.client
		a.mu.Unlock()
		doc, err := a.c.configOf(a.node)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), a.c.o.PushTimeout)
			err = client.put(ctx, doc)
			cancel()
		}
		a.mu.Lock()
		a.lastErr, a.tried = err, max(a.tried, gen)
		if err == nil {
			a.done = max(a.done, gen)
			backoff = 100 * time.Millisecond
		}
		a.cond.Broadcast()
		a.mu.Unlock()
		if err != nil {
			a.c.log.Warn("controller: configuration push failed", "node", string(a.node), "err", err)
			if a.c.offline(a.node) {
				// Its next report carries the configuration.
				a.mu.Lock()
				a.running = false
				a.mu.Unlock()
				return
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, 5*time.Second)
			a.mu.Lock()
			if a.stopped {
				a.running = false
				a.mu.Unlock()
				return
			}
			a.mu.Unlock()
		}
	}
}
