package qkdsim

import (
	"time"

	"github.com/qkms/qkms/internal/secret"
)

// block is one key block at one end. The end's buffer owns data.
type block struct {
	index uint64
	data  []byte
	made  time.Time
}

// ring is a bounded FIFO of blocks, oldest first, with increasing indices.
type ring struct {
	b       []block
	head, n int
}

func newRing(capacity int) ring { return ring{b: make([]block, capacity)} }

func (r *ring) len() int { return r.n }

// push appends b. When the ring is full the oldest block is removed and
// returned (evicted) for the caller to wipe.
func (r *ring) push(b block) (evicted block, ok bool) {
	if r.n == len(r.b) {
		evicted, ok = r.pop(), true
	}
	r.b[(r.head+r.n)%len(r.b)] = b
	r.n++
	return evicted, ok
}

// front returns the oldest block.
func (r *ring) front() (block, bool) {
	if r.n == 0 {
		return block{}, false
	}
	return r.b[r.head], true
}

// pop removes and returns the oldest block; the caller wipes it.
func (r *ring) pop() block {
	b := r.b[r.head]
	r.b[r.head] = block{}
	r.head = (r.head + 1) % len(r.b)
	r.n--
	return b
}

// find returns the buffered block whose index is ≡ index mod 2^32.
func (r *ring) find(index uint32) (block, bool) {
	for i := 0; i < r.n; i++ {
		if b := r.b[(r.head+i)%len(r.b)]; uint32(b.index) == index {
			return b, true
		}
	}
	return block{}, false
}

// wipe wipes and removes every block.
func (r *ring) wipe() {
	for r.n > 0 {
		b := r.pop()
		secret.Wipe(b.data)
	}
}
