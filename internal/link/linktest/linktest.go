// Package linktest connects two link.Link ends in memory for tests of the
// link layer and of the services above it: the real protocol, real stores,
// no sockets.
package linktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Pipe is an in-memory link.Transport to the other end's Mux, with hooks to
// tamper with, record or drop messages.
type Pipe struct {
	To   *link.Mux
	Down atomic.Bool

	mu       sync.Mutex
	tamper   func(t kmsproto.Type, payload []byte) []byte
	sent     [][]byte
	lastOf   map[kmsproto.Type][]byte
	drop     map[kmsproto.Type]int // replies to lose, per type
	lose     map[kmsproto.Type]int // requests to lose, per type
	dup      map[kmsproto.Type]int // requests to deliver twice, per type
	hold     map[kmsproto.Type][]*Held
	count    map[kmsproto.Type]int // messages sent, per type
	dupFails int                   // duplicates the peer refused
	numbers  map[uint64]bool       // message number → answered with a sealed reply
}

// Held is a message a Pipe keeps back until Release (see HoldNext).
type Held struct {
	arrived, released chan struct{}
	once              sync.Once
}

// Arrived is closed when the held message reached the pipe.
func (h *Held) Arrived() <-chan struct{} { return h.arrived }

// Release lets the held message go on to the peer.
func (h *Held) Release() { h.once.Do(func() { close(h.released) }) }

// HoldNext keeps the next message of type t in the pipe until Release:
// messages sent meanwhile overtake it (reordering).
func (p *Pipe) HoldNext(t kmsproto.Type) *Held {
	h := &Held{arrived: make(chan struct{}), released: make(chan struct{})}
	p.mu.Lock()
	if p.hold == nil {
		p.hold = map[kmsproto.Type][]*Held{}
	}
	p.hold[t] = append(p.hold[t], h)
	p.mu.Unlock()
	return h
}

// DropRequests makes the next n messages of type t get lost before they
// reach the peer (the sender sees a transport error).
func (p *Pipe) DropRequests(t kmsproto.Type, n int) {
	p.mu.Lock()
	if p.lose == nil {
		p.lose = map[kmsproto.Type]int{}
	}
	p.lose[t] = n
	p.mu.Unlock()
}

// Duplicate makes the next n messages of type t reach the peer twice: the
// copy is delivered right after the original's reply, which is what the
// sender gets.
func (p *Pipe) Duplicate(t kmsproto.Type, n int) {
	p.mu.Lock()
	if p.dup == nil {
		p.dup = map[kmsproto.Type]int{}
	}
	p.dup[t] = n
	p.mu.Unlock()
}

// Sent returns how many messages of type t went into the pipe.
func (p *Pipe) Sent(t kmsproto.Type) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count[t]
}

// DuplicatesRefused returns how many duplicated messages the peer did not
// run a second time: it refused them, or answered them with the very reply
// of the first copy (from its reply cache).
func (p *Pipe) DuplicatesRefused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dupFails
}

// take decrements a per-type counter and reports whether it was positive.
func take(m map[kmsproto.Type]int, t kmsproto.Type) bool {
	if m[t] > 0 {
		m[t]--
		return true
	}
	return false
}

// DropReplies makes the next n messages of type t reach the peer but lose
// their reply (the sender sees a transport error, as with a lost response).
func (p *Pipe) DropReplies(t kmsproto.Type, n int) {
	p.mu.Lock()
	if p.drop == nil {
		p.drop = map[kmsproto.Type]int{}
	}
	p.drop[t] = n
	p.mu.Unlock()
}

// Numbers returns how many distinct message numbers went into the pipe
// and how many of them the peer answered with a sealed reply (not with an
// error or a kmsproto.SeqGone notice): a number sent but never answered
// is a MAC slot the sender spent for nothing.
func (p *Pipe) Numbers() (sent, answered int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.numbers {
		sent++
		if a {
			answered++
		}
	}
	return sent, answered
}

// RequestHeader decodes the header of a sealed request as it went through
// a Pipe (tag not checked); false if it does not decode.
func RequestHeader(payload []byte) (kmsproto.Header, bool) {
	s, err := kmsproto.DecodeSealed(payload)
	if err != nil {
		return kmsproto.Header{}, false
	}
	h, err := kmsproto.DecodeHeader(s.Data)
	return h, err == nil
}

// seqOf returns the message number of a sealed request.
func seqOf(payload []byte) (uint64, bool) {
	h, ok := RequestHeader(payload)
	return h.Seq, ok
}

// sealedReply reports whether out is a sealed reply (not a SeqGone notice).
func sealedReply(out []byte, err error) bool {
	if err != nil {
		return false
	}
	_, derr := kmsproto.DecodeSealed(out)
	return derr == nil
}

// Call implements link.Transport.
func (p *Pipe) Call(ctx context.Context, t kmsproto.Type, payload []byte) ([]byte, error) {
	if p.Down.Load() {
		return nil, errors.New("pipe down")
	}
	seq, hasSeq := seqOf(payload) // as the sender sealed it, before any tampering
	p.mu.Lock()
	if p.numbers == nil {
		p.numbers = map[uint64]bool{}
	}
	if hasSeq && !p.numbers[seq] {
		p.numbers[seq] = false
	}
	to := p.To
	if p.tamper != nil {
		payload = p.tamper(t, payload)
	}
	p.sent = append(p.sent, bytes.Clone(payload))
	if p.lastOf == nil {
		p.lastOf = map[kmsproto.Type][]byte{}
	}
	p.lastOf[t] = p.sent[len(p.sent)-1]
	if p.count == nil {
		p.count = map[kmsproto.Type]int{}
	}
	p.count[t]++
	lose, lost, dup := take(p.drop, t), take(p.lose, t), take(p.dup, t)
	var held *Held
	if hs := p.hold[t]; len(hs) > 0 {
		held, p.hold[t] = hs[0], hs[1:]
	}
	p.mu.Unlock()
	if held != nil {
		close(held.arrived)
		select {
		case <-held.released:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if lost {
		return nil, errors.New("pipe: request lost")
	}
	out, err := to.Handle(ctx, t, payload)
	if hasSeq && sealedReply(out, err) {
		p.mu.Lock()
		p.numbers[seq] = true
		p.mu.Unlock()
	}
	if dup {
		if again, derr := to.Handle(ctx, t, payload); derr != nil || err == nil && bytes.Equal(again, out) {
			p.mu.Lock()
			p.dupFails++
			p.mu.Unlock()
		}
	}
	if lose {
		return nil, errors.New("pipe: reply lost")
	}
	return out, err
}

// Ping implements link.Transport.
func (p *Pipe) Ping(context.Context) error {
	if p.Down.Load() {
		return errors.New("pipe down")
	}
	return nil
}

// SetTo points the pipe at another Mux (a restarted peer).
func (p *Pipe) SetTo(m *link.Mux) {
	p.mu.Lock()
	p.To = m
	p.mu.Unlock()
}

// SetTamper installs a function that may change every payload sent.
func (p *Pipe) SetTamper(f func(t kmsproto.Type, payload []byte) []byte) {
	p.mu.Lock()
	p.tamper = f
	p.mu.Unlock()
}

// Last returns the last payload sent.
func (p *Pipe) Last() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent[len(p.sent)-1]
}

// LastOf returns the last payload of type t sent (nil if none): unlike
// Last, background messages of other types do not get in the way.
func (p *Pipe) LastOf(t kmsproto.Type) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastOf[t]
}

// Pair is two ends A (leader) and B of link "A-B".
type Pair struct {
	A, B   *link.Link
	SA, SB keystore.Store
	PA, PB *Pipe
	index  uint64

	mk   func(self, peer qkd.NodeID, st keystore.Store, tr link.Transport) *link.Link
	mu   sync.Mutex
	stop map[qkd.NodeID]func() // guarded by mu: stops an end's loops
}

// Options tune NewPair; zero values take small test-friendly defaults.
type Options struct {
	PSKSlots int // per direction (default 32)
	Logger   *slog.Logger
	// SAEs places SAEs on nodes "A" and "B" (default SAE_A1 at A, SAE_B1 at B).
	SAEs map[qkd.SAEID]qkd.NodeID
	// MAC and MACEpoch are both ends' ITS MAC settings (zero: link's
	// defaults); MACB, if set, overrides B's scheme (a misconfiguration).
	MAC      itsmac.Scheme
	MACEpoch int
	MACB     itsmac.Scheme
	// SlotRefill overrides the test default of 16 slots per refill.
	SlotRefill int
	// CallTimeout is both ends' round-trip budget (zero: the link's
	// default); Reserve waits twice as long for an answer.
	CallTimeout time.Duration
	// Stores makes the two ends' stores (nil: two memstores). The caller
	// closes them, after the pair stops (register the Close cleanups
	// before NewPair).
	Stores func(t testing.TB) (a, b keystore.Store)
	// Observers are the ends' link observers (by node, "A" and "B").
	Observers map[qkd.NodeID]link.Observer
}

// NewPair starts two connected ends (on memstores unless o.Stores says
// otherwise); they stop at test end.
func NewPair(t testing.TB, o Options) *Pair {
	t.Helper()
	if o.PSKSlots == 0 {
		o.PSKSlots = 32
	}
	psk := make([]byte, 2*o.PSKSlots*keystore.SlotSize)
	_, _ = rand.Read(psk)
	p := &Pair{PA: &Pipe{}, PB: &Pipe{}, stop: map[qkd.NodeID]func(){}}
	if o.Stores != nil {
		p.SA, p.SB = o.Stores(t)
	} else {
		p.SA, p.SB = memstore.New(memstore.Options{}), memstore.New(memstore.Options{})
	}
	if o.SAEs == nil {
		o.SAEs = map[qkd.SAEID]qkd.NodeID{"SAE_A1": "A", "SAE_B1": "B"}
	}
	if o.SlotRefill == 0 {
		o.SlotRefill = 16
	}
	p.mk = func(self, peer qkd.NodeID, st keystore.Store, tr link.Transport) *link.Link {
		mac := o.MAC
		if self == "B" && o.MACB != 0 {
			mac = o.MACB
		}
		l, err := link.New(link.Options{ID: "A-B", Self: self, Peer: peer, Store: st, Transport: tr,
			PSK: secret.PSK{Bytes: secret.From(psk)}, BatchBlocks: 4, BatchDelay: 20 * time.Millisecond,
			SlotLowWater: 8, SlotRefill: o.SlotRefill, RetryDelay: 5 * time.Millisecond, StatusInterval: time.Hour,
			CallTimeout: o.CallTimeout, MAC: mac, MACEpoch: o.MACEpoch, Observer: o.Observers[self],
			Logger: o.Logger, LocalSAE: func(s qkd.SAEID) bool { return o.SAEs[s] == self }})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
		return l
	}
	p.A = p.mk("A", "B", p.SA, p.PA)
	p.B = p.mk("B", "A", p.SB, p.PB)
	p.PA.To, p.PB.To = link.NewMux([]*link.Link{p.B}), link.NewMux([]*link.Link{p.A})
	p.start("A", p.A)
	p.start("B", p.B)
	t.Cleanup(func() {
		p.mu.Lock()
		stops := p.stop
		p.stop = nil
		p.mu.Unlock()
		for _, stop := range stops {
			stop()
		}
	})
	return p
}

// start runs an end's loops until it is restarted or the test ends.
func (p *Pair) start(self qkd.NodeID, l *link.Link) {
	ctx, cancel := context.WithCancel(context.Background())
	wg := l.Start(ctx)
	p.mu.Lock()
	p.stop[self] = func() {
		cancel()
		wg.Wait()
	}
	p.mu.Unlock()
}

// Restart replaces end self ("A" or "B") with a new link.Link on the same
// store, as after a crash: its loops stop, everything it held in memory
// (retained messages, reply cache, the batch in flight) is lost, and the
// peer's pipe delivers to the new end. It returns the new end.
func (p *Pair) Restart(t testing.TB, self qkd.NodeID) *link.Link {
	t.Helper()
	p.mu.Lock()
	stop := p.stop[self]
	p.mu.Unlock()
	stop()
	if self == "A" {
		p.A = p.mk("A", "B", p.SA, p.PA)
		p.PB.SetTo(link.NewMux([]*link.Link{p.A}))
		p.start("A", p.A)
		return p.A
	}
	p.B = p.mk("B", "A", p.SB, p.PB)
	p.PA.SetTo(link.NewMux([]*link.Link{p.B}))
	p.start("B", p.B)
	return p.B
}

// Push gives both ends the same n random blocks of size bytes; mutate may
// change B's copy or tell an end to lose the block.
func (p *Pair) Push(t testing.TB, n, size int, mutate func(i int, b []byte) (skipA, skipB bool)) {
	t.Helper()
	for i := 0; i < n; i++ {
		blk := make([]byte, size)
		_, _ = rand.Read(blk)
		bb := bytes.Clone(blk)
		var skipA, skipB bool
		if mutate != nil {
			skipA, skipB = mutate(i, bb)
		}
		ctx := context.Background()
		if !skipA {
			if err := p.A.Ingest(ctx, p.index, secret.From(blk)); err != nil {
				t.Fatal(err)
			}
		}
		if !skipB {
			if err := p.B.Ingest(ctx, p.index, secret.From(bb)); err != nil {
				t.Fatal(err)
			}
		}
		p.index++
	}
}

// WaitFor polls cond until it holds or 10 s pass.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitWithin(t, 10*time.Second, what, cond)
}

// WaitWithin polls cond until it holds or d passes, and returns how long
// it took.
func WaitWithin(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
	}
	return time.Since(start)
}

// Stats returns a store's stats of link A-B.
func Stats(t testing.TB, s keystore.Store) keystore.LinkStats {
	t.Helper()
	st, err := s.Stats(context.Background(), "A-B")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Confirmed returns a store's confirmed free bytes of link A-B.
func Confirmed(t testing.TB, s keystore.Store) int64 {
	st := Stats(t, s)
	return st.ConfirmedBytes[0] + st.ConfirmedBytes[1]
}
