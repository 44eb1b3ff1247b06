package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/kmsproto"
)

// Run with -benchtime=3s or more: go-coap's UDP server slows down as its
// response cache fills (docs/performance.md). calls/s counts round trips; MB/s
// counts request payload bytes (the echo sends as many back).

func BenchmarkCallUDP(b *testing.B) { benchCall(b, "udp", ClientOptions{}, false, 64, 16<<10) }

func BenchmarkCallTCP(b *testing.B) { benchCall(b, "tcp", ClientOptions{}, false, 64, 16<<10) }

// BenchmarkCallUDPVariants measures the UDP client settings that matter.
// norotate is stock go-coap: one socket whose message IDs wrap after 65536
// messages, after which the server answers from its 247 s response cache
// and calls stall until their deadline (counted as stalls/op, not failed:
// expect them from about 20 s of 64 B calls). nstart8 allows 8
// outstanding requests (RFC 7252 NSTART is 1).
func BenchmarkCallUDPVariants(b *testing.B) {
	b.Run("norotate", func(b *testing.B) { benchCall(b, "udp", ClientOptions{UDPRotate: -1}, true, 64) })
	b.Run("nstart8", func(b *testing.B) { benchCall(b, "udp", ClientOptions{MaxInFlight: 8}, false, 64, 16<<10) })
}

func benchCall(b *testing.B, network string, opts ClientOptions, tolerateStalls bool, sizes ...int) {
	for _, size := range sizes {
		for _, mode := range []string{"seq", "par"} {
			name := fmt.Sprintf("%dB/%s", size, mode)
			if size >= 1<<10 {
				name = fmt.Sprintf("%dKiB/%s", size>>10, mode)
			}
			b.Run(name, func(b *testing.B) {
				s := startServer(b, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
				c := dial(b, network, s.addr[network], opts)
				var seq, stalls atomic.Uint64
				// Every call sends distinct bytes, so a reply from the
				// wrong exchange (a reused message ID) cannot pass.
				call := func(payload []byte) {
					binary.BigEndian.PutUint64(payload, seq.Add(1))
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					got, err := c.Call(ctx, kmsproto.ForwardKeys, payload)
					switch {
					case err != nil && tolerateStalls && ctx.Err() != nil:
						stalls.Add(1)
					case err != nil || !bytes.Equal(got, payload):
						b.Errorf("Call(%d bytes) = %d bytes, %v; want the payload echoed", size, len(got), err)
					}
				}
				b.ResetTimer()
				if mode == "par" {
					b.SetParallelism(4) // 4 × GOMAXPROCS callers
					b.RunParallel(func(pb *testing.PB) {
						payload := pattern(size, 1)
						for pb.Next() {
							call(payload)
						}
					})
				} else {
					payload := pattern(size, 1)
					for range b.N {
						call(payload)
					}
				}
				b.StopTimer()
				perSec := float64(b.N) / b.Elapsed().Seconds()
				b.ReportMetric(perSec, "calls/s")
				b.ReportMetric(perSec*float64(size)/1e6, "MB/s")
				if tolerateStalls {
					b.ReportMetric(float64(stalls.Load())/float64(b.N), "stalls/op")
				}
			})
		}
	}
}
