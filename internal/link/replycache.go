package link

import (
	"context"
	"sync"
)

// Receiving: the reply cache.
//
// The MAC slot of a request is deleted when its tag verifies, so a sender
// that lost the reply and sends the identical request again would find
// no key. The receiver therefore keeps, per link and in memory, the
// sealed reply of each request it answered, under the request's number
// and requestHash. An identical request under a used number is answered
// with the same sealed reply, without running it again: no state change,
// no key used. Other bytes under a used number are rejected as before.
//
// Bounds: the replyCacheEntries most recent numbers and at most
// replyCacheBytes of replies per link, oldest evicted first; no age limit.
// A sender retries one request per caller at a time and gives a number
// up only with a verified reply, so only a request whose reply kept
// getting lost while thousands of later ones of the same sender went
// through can find its reply evicted. Then, as after a restart of the
// receiver (the cache is not persisted), the request is answered with a
// kmsproto.SeqGone notice and the sender seals it again under a new
// number: one slot, and the request is idempotent by content. Replies are
// what went over the wire already: the cache holds nothing secret.
const (
	replyCacheEntries = 4096
	replyCacheBytes   = 4 << 20
)

type cachedReply struct {
	hash  [32]byte
	reply []byte
}

type replyCache struct {
	mu    sync.Mutex
	m     map[uint64]cachedReply   // guarded by mu: message number → reply
	fifo  []uint64                 // guarded by mu: numbers in insertion order (from head)
	head  int                      // guarded by mu
	bytes int                      // guarded by mu: sum of len(reply)
	busy  map[uint64]chan struct{} // guarded by mu: numbers being handled
}

// lock serialises the handling of one message number: a retry that
// arrives while the first copy is still being handled waits for its reply
// instead of finding the slot used and no reply yet.
func (c *replyCache) lock(ctx context.Context, seq uint64) (func(), error) {
	for {
		c.mu.Lock()
		if c.busy == nil {
			c.busy = map[uint64]chan struct{}{}
		}
		ch, held := c.busy[seq]
		if !held {
			ch = make(chan struct{})
			c.busy[seq] = ch
			c.mu.Unlock()
			return func() {
				c.mu.Lock()
				delete(c.busy, seq)
				c.mu.Unlock()
				close(ch)
			}, nil
		}
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// lookup returns the cached reply of seq if the request's hash matches;
// known reports that seq has a cached reply at all.
func (c *replyCache) lookup(seq uint64, hash [32]byte) (reply []byte, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[seq]
	if !ok {
		return nil, false
	}
	if e.hash != hash {
		return nil, true
	}
	return e.reply, true
}

// put caches the reply of seq (the caller no longer changes reply).
func (c *replyCache) put(seq uint64, hash [32]byte, reply []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uint64]cachedReply{}
	}
	if old, ok := c.m[seq]; ok { // cannot happen: a number verifies once
		c.bytes -= len(old.reply)
	} else {
		c.fifo = append(c.fifo, seq)
	}
	c.m[seq] = cachedReply{hash: hash, reply: reply}
	c.bytes += len(reply)
	for len(c.m) > replyCacheEntries || c.bytes > replyCacheBytes {
		old := c.fifo[c.head]
		c.head++
		if e, ok := c.m[old]; ok {
			c.bytes -= len(e.reply)
			delete(c.m, old)
		}
	}
	if c.head > len(c.fifo)/2 && c.head > 64 {
		c.fifo = append(c.fifo[:0], c.fifo[c.head:]...)
		c.head = 0
	}
}

// clear forgets every reply (zeroisation).
func (c *replyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m, c.fifo, c.head, c.bytes = nil, nil, 0, 0
}
