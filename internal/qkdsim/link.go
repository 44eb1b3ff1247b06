package qkdsim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qkms/qkms/internal/device/pushproto"
	"github.com/qkms/qkms/internal/secret"
)

// Limits and defaults.
const (
	// MaxUDPBlockSize is the largest block an end serves over UDP: its
	// notification then fits one CoAP message with a payload of at most
	// 1024 bytes (RFC 7252 §4.6), which go-coap sends without block-wise
	// transfer. Larger blocks need TCP (see the package documentation).
	MaxUDPBlockSize = 1024 - pushproto.NotificationOverhead // 912
	// MaxBlockSize bounds Options.BlockSize (one notification over TCP).
	MaxBlockSize = 4 << 20

	DefaultBlockSize = 512
	DefaultBuffer    = 64
	DefaultHeartbeat = 5 * time.Second
)

// ErrClosed is returned after Link.Shutdown.
var ErrClosed = errors.New("qkdsim: link shut down")

// ErrBlockTooLargeForUDP is returned by ServeUDP when the block size exceeds
// MaxUDPBlockSize.
var ErrBlockTooLargeForUDP = fmt.Errorf("qkdsim: blocks larger than %d bytes need CoAP over TCP", MaxUDPBlockSize)

// Faults are the fault switches of one end.
type Faults struct {
	Drop  int           // drop the next Drop blocks at this end (the other end still gets them)
	Flip  int           // flip one random bit in each of the next Flip blocks at this end
	Delay time.Duration // deliver each block no earlier than Delay after it was made
}

// Options configure a Link. The zero value is a valid manual link (blocks
// made only by Produce) of DefaultBlockSize-byte blocks.
type Options struct {
	// Rate is the secret key rate in bits/s that Run produces at. 0: Run
	// makes nothing and blocks come only from Produce.
	Rate float64
	// BlockSize is the size of a key block in bytes (the 004 key_chunk_size).
	BlockSize int
	// Buffer is the most undelivered blocks kept per end; when full the
	// oldest is dropped (the KMS sees a gap in the indices).
	Buffer int
	// FirstIndex is the index of the first block; the wire carries indices
	// mod 2^32 (004 index is a uint32).
	FirstIndex uint64
	// KeyStreamID names the link's stream in advance (a predefined 004 KSID);
	// NULL lets the first OPEN_CONNECT assign a random one.
	KeyStreamID pushproto.KeyStreamID
	// Heartbeat is how long an end stays silent towards a registered KMS
	// before it sends a notification without key (status 2). Keep it under
	// 16 s: go-coap's UDP server forgets an endpoint idle that long.
	Heartbeat time.Duration
	// Rand is the source of key bytes and of flipped bit positions
	// (crypto/rand if nil). Key stream IDs always come from crypto/rand.
	Rand   io.Reader
	Clock  Clock
	Logger *slog.Logger
	// Paused starts the link with production paused.
	Paused bool
	// A and B are the initial fault switches of ends "a" and "b".
	A, B Faults
}

func (o *Options) normalize() error {
	switch {
	case o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0):
		return fmt.Errorf("qkdsim: rate %v bit/s", o.Rate)
	case o.BlockSize < 0 || o.BlockSize > MaxBlockSize:
		return fmt.Errorf("qkdsim: block size %d bytes, want 1..%d", o.BlockSize, MaxBlockSize)
	case o.Buffer < 0:
		return fmt.Errorf("qkdsim: buffer %d blocks", o.Buffer)
	case o.Heartbeat < 0:
		return fmt.Errorf("qkdsim: heartbeat %v", o.Heartbeat)
	}
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.Buffer == 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Link is a simulated pair of QKD modules: identical random key blocks at
// ends "a" and "b", each end served to its KMS by its own CoAP server.
type Link struct {
	opts Options
	log  *slog.Logger
	ends [2]*End
	done chan struct{} // closed by Shutdown

	paused   atomic.Bool
	produced atomic.Uint64
	next     atomic.Uint64 // index of the next block; written under prodMu

	prodMu sync.Mutex // serialises Produce and reads of opts.Rand
	closed bool       // guarded by prodMu

	mu   sync.Mutex
	ksid pushproto.KeyStreamID // guarded by mu; NULL until bound
}

// NewLink returns a link; serve its ends and call Run (or Produce).
func NewLink(opts Options) (*Link, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	l := &Link{opts: opts, log: opts.Logger, done: make(chan struct{}), ksid: opts.KeyStreamID}
	l.paused.Store(opts.Paused)
	l.next.Store(opts.FirstIndex)
	var err error
	if l.ends[0], err = newEnd(l, "a", opts.A); err != nil {
		return nil, err
	}
	if l.ends[1], err = newEnd(l, "b", opts.B); err != nil {
		return nil, err
	}
	return l, nil
}

// End returns end "a" or "b" (nil for any other name).
func (l *Link) End(name string) *End {
	for _, e := range l.ends {
		if e.name == name {
			return e
		}
	}
	return nil
}

func (l *Link) other(e *End) *End {
	if e == l.ends[0] {
		return l.ends[1]
	}
	return l.ends[0]
}

// BlockSize returns the block size in bytes.
func (l *Link) BlockSize() int { return l.opts.BlockSize }

// KeyStreamID returns the link's key stream ID (NULL until the first
// OPEN_CONNECT when none was predefined).
func (l *Link) KeyStreamID() pushproto.KeyStreamID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ksid
}

// Pause stops (true) or resumes (false) production by Run.
func (l *Link) Pause(p bool) { l.paused.Store(p) }

// Paused reports whether production is paused.
func (l *Link) Paused() bool { return l.paused.Load() }

// Produce makes n blocks now, whatever the rate or the pause switch: the
// same random bytes and index at both ends, then each end's faults applied.
func (l *Link) Produce(n int) error {
	l.prodMu.Lock()
	defer l.prodMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	for range n {
		a := make([]byte, l.opts.BlockSize)
		if _, err := io.ReadFull(l.opts.Rand, a); err != nil {
			secret.Wipe(a)
			return fmt.Errorf("qkdsim: reading randomness: %w", err)
		}
		b := append([]byte(nil), a...)
		idx, now := l.next.Load(), l.opts.Clock.Now()
		if err := l.ends[0].add(block{index: idx, data: a, made: now}, l.opts.Rand); err != nil {
			secret.Wipe(b)
			return err
		}
		if err := l.ends[1].add(block{index: idx, data: b, made: now}, l.opts.Rand); err != nil {
			return err
		}
		l.next.Store(idx + 1)
		l.produced.Add(1)
	}
	return nil
}

// Run produces blocks at Options.Rate until ctx is done or the link is shut
// down. It keeps the long-run rate exact (blocks due are computed from the
// time since the last resume) and never makes more than the buffer holds in
// one step.
func (l *Link) Run(ctx context.Context) error {
	if l.opts.Rate == 0 {
		select {
		case <-ctx.Done():
		case <-l.done:
		}
		return nil
	}
	perBlock := time.Duration(float64(l.opts.BlockSize*8) / l.opts.Rate * float64(time.Second))
	tick := max(perBlock, time.Millisecond)
	clock := l.opts.Clock
	start, made := clock.Now(), uint64(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.done:
			return nil
		case <-clock.After(tick):
		}
		if l.paused.Load() {
			start, made = clock.Now(), 0
			continue
		}
		due := uint64(clock.Now().Sub(start).Seconds() * l.opts.Rate / float64(l.opts.BlockSize*8))
		if due <= made {
			continue
		}
		n := due - made
		if n > uint64(l.opts.Buffer) { // the rest would only be pushed out again
			made += n - uint64(l.opts.Buffer)
			n = uint64(l.opts.Buffer)
		}
		if err := l.Produce(int(n)); err != nil {
			if errors.Is(err, ErrClosed) {
				return nil
			}
			return err
		}
		made += n
	}
}

// Shutdown stops both ends' servers and Run, and wipes every buffered block.
// It is idempotent.
func (l *Link) Shutdown() {
	l.prodMu.Lock()
	already := l.closed
	l.closed = true
	l.prodMu.Unlock()
	if !already {
		close(l.done)
	}
	for _, e := range l.ends {
		e.Shutdown()
		e.wipe()
	}
}

func (l *Link) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Stats are the link's counters.
type Stats struct {
	Produced uint64
	A, B     EndStats
}

// Stats returns a snapshot of the counters.
func (l *Link) Stats() Stats {
	return Stats{Produced: l.produced.Load(), A: l.ends[0].Stats(), B: l.ends[1].Stats()}
}

// bindStream returns the link's KSID, binding it first if none is bound:
// to k, or to a fresh random UUIDv4 when k is NULL. ok is false when k names
// a different stream than the bound one.
func (l *Link) bindStream(k pushproto.KeyStreamID) (pushproto.KeyStreamID, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ksid.IsZero() {
		if k.IsZero() {
			var err error
			if k, err = pushproto.NewKeyStreamID(nil); err != nil {
				return pushproto.KeyStreamID{}, false, err
			}
		}
		l.ksid = k
		return k, true, nil
	}
	return l.ksid, k.IsZero() || k == l.ksid, nil
}

// endStream forgets the KSID once both ends have closed and discards the
// undelivered blocks (004 clause 5: unused keys are discarded when both
// peers have closed).
func (l *Link) endStream() {
	for _, e := range l.ends {
		e.wipe()
	}
	l.mu.Lock()
	l.ksid = pushproto.KeyStreamID{}
	l.mu.Unlock()
	l.log.Info("qkdsim: key stream closed at both ends")
}

// offer is the QoS the link gives for req, and whether req can be met.
func (l *Link) offer(req pushproto.QoS) (pushproto.QoS, bool) {
	q := req
	q.KeyChunkSize = uint32(l.opts.BlockSize)
	q.MaxBps = uint32(min(l.opts.Rate, math.MaxUint32))
	ok := req.KeyChunkSize == 0 || req.KeyChunkSize == q.KeyChunkSize
	if l.opts.Rate > 0 && float64(req.MinBps) > l.opts.Rate {
		ok = false
	}
	switch req.MetadataMimetype {
	case "":
		q.MetadataMimetype = MetadataMimetype
	case MetadataMimetype, "application/json":
	default:
		q.MetadataMimetype, ok = MetadataMimetype, false
	}
	return q, ok
}

// MetadataMimetype is the metadata type an end prefers: the metadata map
// travels inside the CBOR notification.
const MetadataMimetype = "application/cbor"
