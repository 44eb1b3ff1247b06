package device_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/device"
	"github.com/qkms/qkms/internal/qkdsim"
)

// benchCases: 64 KiB blocks over TCP, the largest single-message block over
// UDP (1 KiB does not fit one message with its metadata; see qkdsim).
var benchCases = []struct {
	network string
	size    int
}{
	{"tcp", 64 << 10},
	{"udp", qkdsim.MaxUDPBlockSize},
}

// BenchmarkPush measures blocks pushed end to end, sim end → one client,
// with production as fast as the client takes the blocks (no rate limit).
func BenchmarkPush(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(fmt.Sprintf("%s/%dB", bc.network, bc.size), func(b *testing.B) { benchPush(b, bc.network, bc.size) })
	}
}

func benchPush(b *testing.B, network string, size int) {
	// Over UDP an end slows down after MaxUDPBurst notifications to one KMS
	// (message IDs, see qkdsim): measure bursts on fresh links.
	chunk := b.N
	if network == "udp" {
		chunk = qkdsim.MaxUDPBurst / 2
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	var elapsed time.Duration
	for done := 0; done < b.N; done += chunk {
		b.StopTimer()
		elapsed += pushBlocks(b, network, size, min(chunk, b.N-done))
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "blocks/s")
	b.ReportMetric(float64(b.N)*float64(size)*8/elapsed.Seconds()/1e6, "Mbit/s")
}

// pushBlocks sets up a link and a client (untimed), then times n blocks
// pushed through them.
func pushBlocks(b *testing.B, network string, size, n int) time.Duration {
	const buffer = 256
	link, err := qkdsim.NewLink(qkdsim.Options{BlockSize: size, Buffer: buffer, Rand: rand.NewChaCha8([32]byte{1})})
	if err != nil {
		b.Fatal(err)
	}
	defer link.Shutdown()
	addr := serveBench(b, link.End("a"), network)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := device.Dial(ctx, device.Options{Network: network, Addr: addr, Source: "kms://bench"})
	if err != nil {
		b.Fatal(err)
	}
	var delivered atomic.Int64
	more := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(_ context.Context, blk device.Block) error {
			blk.Data.Wipe()
			delivered.Add(1)
			select {
			case more <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	defer func() { cancel(); <-done }()
	for c.Stats().Sessions == 0 { // registered (startup, not measured)
		time.Sleep(time.Millisecond)
	}
	b.StartTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		for int64(i)-delivered.Load() >= buffer/2 { // never overflow the end's buffer
			<-more
		}
		if err := link.Produce(1); err != nil {
			b.Fatal(err)
		}
	}
	for delivered.Load() < int64(n) {
		<-more
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if st := c.Stats(); st.Missing != 0 || st.Stale != 0 {
		b.Errorf("client stats %+v", st)
	}
	return elapsed
}

func serveBench(b *testing.B, e *qkdsim.End, network string) string {
	if network == "udp" {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = e.ServeUDP(pc) }()
		return pc.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = e.ServeTCP(l) }()
	return l.Addr().String()
}

// BenchmarkBaseline moves the same blocks without CoAP, for the ratio:
// over TCP a length-prefixed stream, over UDP one datagram per block
// answered by a 1-byte acknowledgement (stop-and-wait, like a confirmable
// notification).
func BenchmarkBaseline(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(fmt.Sprintf("%s/%dB", bc.network, bc.size), func(b *testing.B) {
			if bc.network == "udp" {
				baselineUDP(b, bc.size)
			} else {
				baselineTCP(b, bc.size)
			}
		})
	}
}

func baselineTCP(b *testing.B, size int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		buf := make([]byte, size)
		var hdr [4]byte
		for {
			if _, err := io.ReadFull(conn, hdr[:]); err != nil {
				done <- nil
				return
			}
			if _, err := io.ReadFull(conn, buf[:binary.BigEndian.Uint32(hdr[:])]); err != nil {
				done <- err
				return
			}
		}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{1})
	msg := make([]byte, 4+size)
	binary.BigEndian.PutUint32(msg, uint32(size))
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		_, _ = r.Read(msg[4:])
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	conn.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	report(b, size, time.Since(start))
}

func baselineUDP(b *testing.B, size int) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteToUDP(buf[:min(n, 1)], from)
		}
	}()
	conn, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r := rand.NewChaCha8([32]byte{1})
	msg, ack := make([]byte, size), make([]byte, 16)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		_, _ = r.Read(msg)
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Read(ack); err != nil {
			b.Fatal(err)
		}
	}
	report(b, size, time.Since(start))
}

func report(b *testing.B, size int, elapsed time.Duration) {
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "blocks/s")
	b.ReportMetric(float64(b.N)*float64(size)*8/elapsed.Seconds()/1e6, "Mbit/s")
}
