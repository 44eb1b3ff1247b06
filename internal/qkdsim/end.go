package qkdsim

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/device/pushproto"
	"github.com/qkms/qkms/internal/secret"
)

// End is one QKD module of a link: a bounded buffer of undelivered blocks,
// its fault switches and the CoAP server its KMS talks to.
type End struct {
	link   *Link
	name   string
	log    *slog.Logger
	router *coapx.Router

	srvMu sync.Mutex
	srv   *coapx.Server // guarded by srvMu; nil until served or after Shutdown

	mu      sync.Mutex
	buf     ring          // guarded by mu: undelivered blocks, oldest first
	faults  Faults        // guarded by mu
	holder  *holder       // guarded by mu: the KMS that opened the stream here
	obs     *observer     // guarded by mu: its GET_KEY registration
	changed chan struct{} // guarded by mu: closed when buf or faults change
	mids    midWindow     // guarded by mu: UDP message-ID budget
	obsSeq  uint32        // guarded by mu: last Observe sequence number sent
	stats   EndStats      // guarded by mu

	pushers sync.WaitGroup // running push loops
}

// holder is the application (KMS) that holds an end after OPEN_CONNECT.
type holder struct {
	source, destination string
	endpoint            string // CoAP endpoint of its latest OPEN_CONNECT
}

// EndStats are one end's counters.
type EndStats struct {
	Delivered uint64 // blocks acknowledged by the KMS (UDP) or written to it (TCP)
	Dropped   uint64 // blocks removed by the drop fault
	Flipped   uint64 // blocks changed by the flip fault
	Overflow  uint64 // undelivered blocks pushed out of the full buffer
	Buffered  int    // undelivered blocks now
}

func newEnd(l *Link, name string, f Faults) (*End, error) {
	e := &End{
		link:    l,
		name:    name,
		log:     l.log.With("end", name),
		buf:     newRing(l.opts.Buffer),
		faults:  f,
		changed: make(chan struct{}),
	}
	e.router = coapx.NewRouter(e.log)
	for _, r := range []struct {
		path, attrs string
		h           mux.HandlerFunc
	}{
		{pushproto.PathOpenConnect, `rt="etsi.qkd.004.open_connect";ct="60 50"`, e.serveOpenConnect},
		{pushproto.PathGetKey, `rt="etsi.qkd.004.get_key";obs;ct=60`, e.serveGetKey},
		{pushproto.PathClose, `rt="etsi.qkd.004.close";ct="60 50"`, e.serveClose},
		{PathFault, `rt="qkms.sim.fault";ct="60 50"`, e.serveFault},
	} {
		if err := e.router.Handle(r.path, r.attrs, r.h); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Name returns "a" or "b".
func (e *End) Name() string { return e.name }

// ServeUDP serves the end over CoAP/UDP on pc until Shutdown. Blocks must
// fit one message (MaxUDPBlockSize).
func (e *End) ServeUDP(pc *net.UDPConn) error {
	if e.link.opts.BlockSize > MaxUDPBlockSize {
		return ErrBlockTooLargeForUDP
	}
	s, err := e.server()
	if err != nil {
		return err
	}
	return s.ServeUDP(pc)
}

// ServeTCP serves the end over CoAP/TCP (RFC 8323) on l until Shutdown.
func (e *End) ServeTCP(l net.Listener) error {
	s, err := e.server()
	if err != nil {
		return err
	}
	return s.ServeTCP(l)
}

func (e *End) server() (*coapx.Server, error) {
	if e.link.isClosed() {
		return nil, ErrClosed
	}
	e.srvMu.Lock()
	defer e.srvMu.Unlock()
	if e.srv == nil {
		e.srv = coapx.NewServer(e.router.Mux(), e.log)
	}
	return e.srv, nil
}

// Shutdown stops the end's CoAP service and its KMS registration, as if the
// module's server restarted: buffered blocks, the stream and the faults
// stay, and ServeUDP/ServeTCP may be called again. Link.Shutdown ends it all.
func (e *End) Shutdown() {
	e.srvMu.Lock()
	s := e.srv
	e.srv = nil
	e.srvMu.Unlock()
	e.mu.Lock()
	if e.obs != nil {
		e.obs.cancel()
		e.obs = nil
	}
	e.mu.Unlock()
	if s != nil {
		s.Shutdown()
	}
	e.mu.Lock() // a registration that raced with the shutdown
	if e.obs != nil {
		e.obs.cancel()
		e.obs = nil
	}
	e.mu.Unlock()
	e.pushers.Wait()
}

// SetFaults replaces the end's fault switches.
func (e *End) SetFaults(f Faults) {
	e.mu.Lock()
	e.faults = f
	e.signalLocked()
	e.mu.Unlock()
}

// Faults returns the switches now (Drop and Flip count down as they act).
func (e *End) Faults() Faults {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.faults
}

// Stats returns a snapshot of the end's counters.
func (e *End) Stats() EndStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Buffered = e.buf.len()
	return s
}

// add applies the end's faults to b and buffers it; the end owns b.data.
// r supplies the flipped bit position (the caller serialises reads of r).
func (e *End) add(b block, r io.Reader) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.faults.Drop > 0 {
		e.faults.Drop--
		e.stats.Dropped++
		secret.Wipe(b.data)
		e.log.Info("qkdsim: fault: block dropped", "index", b.index)
		return nil
	}
	if e.faults.Flip > 0 {
		var p [4]byte
		if _, err := io.ReadFull(r, p[:]); err != nil {
			secret.Wipe(b.data)
			return fmt.Errorf("qkdsim: reading randomness: %w", err)
		}
		bit := binary.BigEndian.Uint32(p[:]) % uint32(len(b.data)*8)
		b.data[bit/8] ^= 1 << (bit % 8)
		e.faults.Flip--
		e.stats.Flipped++
		e.log.Info("qkdsim: fault: bit flipped", "index", b.index)
	}
	if old, ok := e.buf.push(b); ok {
		secret.Wipe(old.data)
		e.stats.Overflow++
		e.log.Debug("qkdsim: buffer full, oldest block dropped", "index", old.index)
	}
	e.signalLocked()
	return nil
}

// signalLocked wakes every sender waiting on e.changed.
func (e *End) signalLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// wipe discards every buffered block.
func (e *End) wipe() {
	e.mu.Lock()
	e.buf.wipe()
	e.signalLocked()
	e.mu.Unlock()
}

// isOpen reports whether a KMS holds the end.
func (e *End) isOpen() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder != nil
}
