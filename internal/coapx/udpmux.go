package coapx

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
)

// ListenDTLSOn is ListenDTLS on a UDP socket bound beforehand: the
// listener owns pc from then on (closing it closes pc). A caller that
// binds every port of a process before starting anything (qkms net up)
// thus never loses a DTLS port to another socket between choosing it and
// serving it.
func ListenDTLSOn(pc net.PacketConn, opts []piondtls.ServerOption) (net.Listener, error) {
	l, err := piondtls.NewListenerWithOptions(newUDPMux(pc, dtlsHandshake), opts...)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	return l, nil
}

// dtlsHandshake reports whether a datagram starts with a DTLS record of
// the handshake content type (RFC 6347 §4.1: type, version, epoch,
// sequence number, length; 13 bytes): only those open a session, as
// pion's own UDP listener decides.
func dtlsHandshake(pkt []byte) bool {
	const recordHeader, handshake = 13, 22
	return len(pkt) >= recordHeader && pkt[0] == handshake
}

// udpMux demultiplexes one UDP socket into a connection per remote
// address, as pion's internal UDP listener does for a socket it binds
// itself (dtlsnet.PacketListener). A datagram from an unknown address
// opens a connection only if accept says so; Accept hands it out. A
// connection's datagrams wait in a bounded queue (dropped when it is full,
// as UDP may).
type udpMux struct {
	pc     net.PacketConn
	accept func([]byte) bool

	mu     sync.Mutex
	conns  map[string]*muxConn // guarded by mu
	closed bool                // guarded by mu

	backlog chan *muxConn
	done    chan struct{}
	once    sync.Once
}

// Bounds of the queues: connections not yet accepted, datagrams per
// connection not yet read.
const (
	muxBacklog   = 128
	muxQueue     = 64
	muxMaxPacket = 64 << 10
)

func newUDPMux(pc net.PacketConn, accept func([]byte) bool) *udpMux {
	m := &udpMux{pc: pc, accept: accept, conns: map[string]*muxConn{},
		backlog: make(chan *muxConn, muxBacklog), done: make(chan struct{})}
	go m.readLoop()
	return m
}

var _ dtlsnet.PacketListener = (*udpMux)(nil)

func (m *udpMux) readLoop() {
	buf := make([]byte, muxMaxPacket)
	for {
		n, addr, err := m.pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			_ = m.Close()
			return
		}
		m.route(buf[:n], addr)
	}
}

// route queues one datagram for its connection, opening one if it may.
func (m *udpMux) route(pkt []byte, addr net.Addr) {
	key := addr.String()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	c := m.conns[key]
	if c == nil {
		if !m.accept(pkt) {
			m.mu.Unlock()
			return
		}
		c = newMuxConn(m, addr)
		select {
		case m.backlog <- c:
			m.conns[key] = c
		default: // too many connections waiting to be accepted: drop it
			m.mu.Unlock()
			return
		}
	}
	m.mu.Unlock()
	c.push(append([]byte(nil), pkt...))
}

// Accept implements dtlsnet.PacketListener.
func (m *udpMux) Accept() (net.PacketConn, net.Addr, error) {
	select {
	case c := <-m.backlog:
		return c, c.raddr, nil
	case <-m.done:
		return nil, nil, net.ErrClosed
	}
}

// Close implements dtlsnet.PacketListener: the socket and every
// connection close.
func (m *udpMux) Close() error {
	var err error
	m.once.Do(func() {
		m.mu.Lock()
		m.closed = true
		conns := m.conns
		m.conns = map[string]*muxConn{}
		m.mu.Unlock()
		close(m.done)
		err = m.pc.Close()
		for _, c := range conns {
			c.shut()
		}
	})
	return err
}

// Addr implements dtlsnet.PacketListener.
func (m *udpMux) Addr() net.Addr { return m.pc.LocalAddr() }

// forget removes c from the table (it closed): a later handshake from its
// address opens a new connection.
func (m *udpMux) forget(c *muxConn) {
	m.mu.Lock()
	if m.conns[c.raddr.String()] == c {
		delete(m.conns, c.raddr.String())
	}
	m.mu.Unlock()
}

// muxConn is one remote address's datagrams on a udpMux (a
// net.PacketConn that reads only from its address and writes to it).
type muxConn struct {
	m     *udpMux
	raddr net.Addr
	in    chan []byte
	done  chan struct{}
	once  sync.Once

	mu       sync.Mutex
	deadline time.Time     // guarded by mu: read deadline
	changed  chan struct{} // guarded by mu: closed when the deadline changes
}

func newMuxConn(m *udpMux, raddr net.Addr) *muxConn {
	return &muxConn{m: m, raddr: raddr, in: make(chan []byte, muxQueue), done: make(chan struct{}), changed: make(chan struct{})}
}

// push queues a datagram; it is dropped if the queue is full or c closed.
func (c *muxConn) push(pkt []byte) {
	select {
	case <-c.done:
	case c.in <- pkt:
	default:
	}
}

// ReadFrom implements net.PacketConn.
func (c *muxConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl, changed := c.deadline, c.changed
		c.mu.Unlock()
		var timeout <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(d)
			timeout = t.C
		}
		n, err, again := 0, error(nil), false
		select {
		case pkt := <-c.in:
			n = copy(p, pkt)
		case <-c.done:
			err = net.ErrClosed
		case <-timeout:
			err = os.ErrDeadlineExceeded
		case <-changed: // a new deadline: wait again under it
			again = true
		}
		if t != nil {
			t.Stop()
		}
		if again {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		return n, c.raddr, nil
	}
}

// WriteTo implements net.PacketConn.
func (c *muxConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	return c.m.pc.WriteTo(p, addr)
}

// Close implements net.PacketConn: the connection leaves the mux; the
// socket stays.
func (c *muxConn) Close() error {
	c.shut()
	c.m.forget(c)
	return nil
}

func (c *muxConn) shut() { c.once.Do(func() { close(c.done) }) }

// LocalAddr implements net.PacketConn.
func (c *muxConn) LocalAddr() net.Addr { return c.m.pc.LocalAddr() }

// SetDeadline implements net.PacketConn (reads only: writes to a UDP
// socket do not block).
func (c *muxConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *muxConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline implements net.PacketConn (a no-op, as above).
func (c *muxConn) SetWriteDeadline(time.Time) error { return nil }
