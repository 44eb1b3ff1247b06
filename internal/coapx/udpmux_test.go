package coapx

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func udpSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// handshake is a datagram that opens a connection (the record type only
// matters to the filter).
func handshake(body string) []byte {
	return append([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(body))}, body...)
}

// TestUDPMux: datagrams are routed to a connection per remote address;
// only a handshake opens one; replies go back from the mux's socket;
// read deadlines and closing behave as on a socket; a closed connection's
// address can open a new one.
func TestUDPMux(t *testing.T) {
	srv := udpSocket(t)
	m := newUDPMux(srv, dtlsHandshake)
	defer m.Close()
	if m.Addr().String() != srv.LocalAddr().String() {
		t.Fatalf("Addr = %v, want the socket's %v", m.Addr(), srv.LocalAddr())
	}
	a, b := udpSocket(t), udpSocket(t)
	send := func(from *net.UDPConn, pkt []byte) {
		t.Helper()
		if _, err := from.WriteTo(pkt, srv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	accept := func() net.PacketConn {
		t.Helper()
		type res struct {
			c   net.PacketConn
			err error
		}
		ch := make(chan res, 1)
		go func() { c, _, err := m.Accept(); ch <- res{c, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r.c
		case <-time.After(10 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}
	read := func(c net.PacketConn) []byte {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 100)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}

	send(a, []byte("not a handshake")) // dropped: opens nothing
	send(a, handshake("a1"))
	ca := accept()
	if got := read(ca); !bytes.Equal(got, handshake("a1")) {
		t.Fatalf("first datagram of a = %q", got)
	}
	send(b, handshake("b1"))
	cb := accept()
	send(a, []byte("a2")) // a's session: any record now
	if got := read(ca); string(got) != "a2" {
		t.Fatalf("a's connection read %q, want a2", got)
	}
	if got := read(cb); !bytes.Equal(got, handshake("b1")) {
		t.Fatalf("b's connection read %q, want b's handshake", got)
	}
	// A reply leaves from the mux's socket to the peer.
	if _, err := ca.WriteTo([]byte("to a"), a.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := a.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "to a" || from.String() != srv.LocalAddr().String() {
		t.Fatalf("a got %q from %v, %v; want \"to a\" from %v", buf[:n], from, err, srv.LocalAddr())
	}
	// A past deadline: the read fails as a timeout, and the conn stays usable.
	_ = cb.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := cb.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	// A deadline moved while a read waits wakes it under the new one.
	_ = cb.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, _, err := cb.ReadFrom(buf); done <- err }()
	_ = cb.SetReadDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("waiting read after SetReadDeadline = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting read ignored a new deadline")
	}
	// A closed connection reads nothing more; its address opens a new one
	// with its next handshake.
	_ = ca.Close()
	if _, _, err := ca.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close = %v", err)
	}
	send(a, handshake("a3"))
	ca2 := accept()
	if got := read(ca2); !bytes.Equal(got, handshake("a3")) {
		t.Fatalf("new connection of a read %q", got)
	}
	// Closing the mux closes the socket and every connection.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v", err)
	}
	if _, _, err := ca2.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("connection read after the mux closed = %v", err)
	}
	if _, err := srv.WriteTo([]byte("x"), a.LocalAddr()); err == nil {
		t.Fatal("the socket is still open after the mux closed")
	}
}
