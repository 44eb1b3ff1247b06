package netsim

import (
	"net"
	"testing"
)

// TestBindAllHoldsEveryPort: every port a node will serve is bound, and
// stays bound, before any node starts — the DTLS port (the UDP twin of the
// ETSI 004 TLS port) too, so no other socket of the process can take it
// in between (a released port did: "etsi004 dtls listener: … bind: address
// already in use" in large networks).
func TestBindAllHoldsEveryPort(t *testing.T) {
	var all []*bound
	t.Cleanup(func() {
		for _, b := range all {
			for _, l := range []net.Listener{b.etsi014, b.peerTCP, b.metrics, b.quicks, b.agent, b.etsi004, b.etsi004TCP} {
				_ = l.Close()
			}
			_ = b.peerUDP.Close()
			_ = b.etsi004UDP.Close()
		}
	})
	udpPorts := map[int]bool{}
	for range 50 {
		b, err := bindAll()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b)
		tcp := b.etsi004.Addr().(*net.TCPAddr)
		udp := b.etsi004UDP.LocalAddr().(*net.UDPAddr)
		if tcp.Port != udp.Port {
			t.Fatalf("ETSI 004 TLS port %d, DTLS port %d: want one port number", tcp.Port, udp.Port)
		}
		for _, p := range []int{udp.Port, b.peerUDP.LocalAddr().(*net.UDPAddr).Port} {
			if udpPorts[p] {
				t.Fatalf("UDP port %d handed out twice", p)
			}
			udpPorts[p] = true
		}
		// Held: nobody else can bind it now.
		if c, err := net.ListenUDP("udp", udp); err == nil {
			_ = c.Close()
			t.Fatalf("UDP port %d is free after bindAll: the node's DTLS listener could lose it", udp.Port)
		}
	}
}
