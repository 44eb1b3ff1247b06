package device_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/device"
	"github.com/qkms/qkms/internal/device/pushproto"
	"github.com/qkms/qkms/internal/qkdsim"
)

func TestBothEndsGetIdenticalBlocks(t *testing.T) {
	for _, nw := range networks {
		t.Run(nw, func(t *testing.T) {
			s := newSim(t, nw, qkdsim.Options{BlockSize: 256, Buffer: 128})
			ctx := context.Background()
			a := s.kms(ctx, "a", "kms://A", nil)
			b := s.kms(ctx, "b", "kms://B", nil)
			const n = 60
			s.produce(n)
			a.waitFor(t, "60 blocks at a", count(n))
			b.waitFor(t, "60 blocks at b", count(n))
			for i := uint64(0); i < n; i++ {
				if x, y := a.block(i), b.block(i); len(x) != 256 || !bytes.Equal(x, y) {
					t.Fatalf("block %d: a has %d bytes, b %d, equal=%v", i, len(x), len(y), bytes.Equal(x, y))
				}
			}
			if got := a.delivered(); got[0] != 0 || got[n-1] != n-1 {
				t.Errorf("a delivered %v, want 0..%d in order", got, n-1)
			}
			if ka, kb := a.client.KeyStreamID(), b.client.KeyStreamID(); ka.IsZero() || ka != kb || ka != s.link.KeyStreamID() {
				t.Errorf("KSIDs: a %s, b %s, link %s; want one non-NULL KSID", ka, kb, s.link.KeyStreamID())
			}
			for _, k := range []*kms{a, b} {
				waitUntil(t, "client counts delivery", func() bool { return k.client.Stats().Delivered == n })
				if st := k.client.Stats(); st.Missing != 0 || st.Stale != 0 {
					t.Errorf("client stats = %+v, want nothing missing or stale", st)
				}
			}
			waitUntil(t, "sim counts delivery", func() bool {
				st := s.link.Stats()
				return st.A.Delivered == n && st.B.Delivered == n && st.A.Buffered == 0
			})
		})
	}
}

func TestLargeBlocksOverTCP(t *testing.T) {
	s := newSim(t, "tcp", qkdsim.Options{BlockSize: 1 << 20, Buffer: 4})
	ctx := context.Background()
	a := s.kms(ctx, "a", "kms://A", nil)
	b := s.kms(ctx, "b", "kms://B", nil)
	s.produce(3)
	a.waitFor(t, "3 blocks at a", count(3))
	b.waitFor(t, "3 blocks at b", count(3))
	for i := uint64(0); i < 3; i++ {
		if x, y := a.block(i), b.block(i); len(x) != 1<<20 || !bytes.Equal(x, y) {
			t.Errorf("block %d: %d bytes at a, equal at b: %v", i, len(x), bytes.Equal(x, y))
		}
	}
}

func TestDropAtOneEndIsAGapThere(t *testing.T) {
	for _, nw := range networks {
		t.Run(nw, func(t *testing.T) {
			s := newSim(t, nw, qkdsim.Options{BlockSize: 64})
			ctx := context.Background()
			a := s.kms(ctx, "a", "kms://A", nil)
			b := s.kms(ctx, "b", "kms://B", nil)
			s.produce(5)
			a.waitFor(t, "block 4 at a", upTo(4))
			s.link.End("a").SetFaults(qkdsim.Faults{Drop: 2})
			s.produce(5)
			a.waitFor(t, "block 9 at a", upTo(9))
			b.waitFor(t, "block 9 at b", upTo(9))
			want := []uint64{0, 1, 2, 3, 4, 7, 8, 9}
			if got := a.delivered(); !equal(got, want) {
				t.Errorf("a delivered %v, want %v", got, want)
			}
			if got := b.delivered(); len(got) != 10 {
				t.Errorf("b delivered %v, want 0..9", got)
			}
			if st := a.client.Stats(); st.Missing != 2 {
				t.Errorf("a stats = %+v, want Missing 2", st)
			}
			if st := b.client.Stats(); st.Missing != 0 {
				t.Errorf("b stats = %+v, want Missing 0", st)
			}
			if st := s.link.Stats(); st.A.Dropped != 2 || st.B.Dropped != 0 {
				t.Errorf("sim stats = %+v, want 2 dropped at a only", st)
			}
		})
	}
}

func TestFlipChangesExactlyOneBit(t *testing.T) {
	for _, nw := range networks {
		t.Run(nw, func(t *testing.T) {
			s := newSim(t, nw, qkdsim.Options{BlockSize: 128, B: qkdsim.Faults{Flip: 1}})
			ctx := context.Background()
			a := s.kms(ctx, "a", "kms://A", nil)
			b := s.kms(ctx, "b", "kms://B", nil)
			s.produce(3)
			a.waitFor(t, "3 blocks at a", count(3))
			b.waitFor(t, "3 blocks at b", count(3))
			for i, want := range []int{1, 0, 0} {
				if got := bitDiff(a.block(uint64(i)), b.block(uint64(i))); got != want {
					t.Errorf("block %d differs in %d bits, want %d", i, got, want)
				}
			}
		})
	}
}

func TestReconnectAfterEndRestart(t *testing.T) {
	for _, nw := range networks {
		t.Run(nw, func(t *testing.T) {
			s := newSim(t, nw, qkdsim.Options{BlockSize: 64, Heartbeat: 100 * time.Millisecond})
			a := s.kms(context.Background(), "a", "kms://A", func(o *device.Options) { o.Silence = 2 * time.Second }) // 20 heartbeats
			s.produce(3)
			a.waitFor(t, "blocks 0..2", upTo(2))
			s.link.End("a").Shutdown()
			s.produce(3) // buffered at a while its server is down
			s.serve("a", s.addr["a"])
			a.waitFor(t, "blocks 3..5 after the restart", upTo(5))
			if got := a.delivered(); !equal(got, []uint64{0, 1, 2, 3, 4, 5}) {
				t.Errorf("delivered %v, want 0..5 once each", got)
			}
		})
	}
}

func TestSecondKMSIsRefused(t *testing.T) {
	for _, nw := range networks {
		t.Run(nw, func(t *testing.T) {
			s := newSim(t, nw, qkdsim.Options{BlockSize: 64})
			ctx := context.Background()
			first := s.kms(ctx, "a", "kms://A", nil)
			s.produce(1)
			first.waitFor(t, "block 0", count(1))
			second := s.kms(ctx, "a", "kms://intruder", nil)
			select {
			case err := <-second.done:
				if !errors.Is(err, device.ErrRefused) {
					t.Fatalf("second KMS: Run = %v, want ErrRefused", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("second KMS: Run did not return")
			}
			second.done <- nil // for cleanup
			s.produce(1)
			first.waitFor(t, "block 1 still at the first KMS", upTo(1))

			// The same application from a new connection (a restarted KMS)
			// takes the end over.
			again := s.kms(ctx, "a", "kms://A", func(o *device.Options) { o.NextIndex = 2 })
			waitUntil(t, "takeover", func() bool { return again.client.Stats().Sessions > 0 })
			s.produce(1)
			again.waitFor(t, "block 2 at the restarted KMS", upTo(2))
		})
	}
}

func TestFetchByIndex(t *testing.T) {
	for _, nw := range networks {
		t.Run(nw, func(t *testing.T) {
			// Blocks at a are held back by a long delay, so they stay buffered.
			s := newSim(t, nw, qkdsim.Options{BlockSize: 64, A: qkdsim.Faults{Delay: time.Hour}})
			ctx := context.Background()
			a := s.kms(ctx, "a", "kms://A", nil)
			b := s.kms(ctx, "b", "kms://B", nil)
			waitUntil(t, "a registered", func() bool { return a.client.Stats().Sessions > 0 })
			s.produce(3)
			b.waitFor(t, "3 blocks at b", count(3))
			blk, err := a.client.Fetch(ctx, 1)
			if err != nil {
				t.Fatalf("Fetch(1) = %v", err)
			}
			defer blk.Data.Wipe()
			if blk.Index != 1 || !bytes.Equal(blk.Data.Expose(), b.block(1)) {
				t.Errorf("Fetch(1) = block %d, equal to b's block 1: %v", blk.Index, bytes.Equal(blk.Data.Expose(), b.block(1)))
			}
			if _, err := a.client.Fetch(ctx, 7); !errors.Is(err, device.ErrNotBuffered) {
				t.Errorf("Fetch(7) = %v, want ErrNotBuffered", err)
			}
			if got := a.delivered(); len(got) != 0 {
				t.Errorf("a delivered %v while delayed", got)
			}
		})
	}
}

func TestIndexWrapsPast32Bits(t *testing.T) {
	s := newSim(t, "tcp", qkdsim.Options{BlockSize: 32, FirstIndex: 1<<32 - 2})
	a := s.kms(context.Background(), "a", "kms://A", nil)
	s.produce(4)
	a.waitFor(t, "4 blocks", count(4))
	want := []uint64{1<<32 - 2, 1<<32 - 1, 1 << 32, 1<<32 + 1}
	if got := a.delivered(); !equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

func TestWellKnownCore(t *testing.T) {
	for _, nw := range networks {
		t.Run(nw, func(t *testing.T) {
			s := newSim(t, nw, qkdsim.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var resp *pool.Message
			var err error
			if nw == "udp" {
				c, derr := coapx.DialUDP(ctx, s.addr["a"], nil)
				if derr != nil {
					t.Fatal(derr)
				}
				defer c.Close()
				resp, err = c.Get(ctx, coapx.WellKnownCore)
			} else {
				c, derr := coapx.DialTCP(ctx, s.addr["a"], nil)
				if derr != nil {
					t.Fatal(derr)
				}
				defer c.Close()
				resp, err = c.Get(ctx, coapx.WellKnownCore)
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := resp.ReadBody()
			for _, p := range []string{pushproto.PathOpenConnect, pushproto.PathGetKey, pushproto.PathClose, qkdsim.PathFault} {
				if !strings.Contains(string(body), "<"+p+">") {
					t.Errorf("GET %s = %s, missing %s", coapx.WellKnownCore, body, p)
				}
			}
			if !strings.Contains(string(body), `<`+pushproto.PathGetKey+`>;rt="etsi.qkd.004.get_key";obs`) {
				t.Errorf("GET %s = %s, get_key not marked observable", coapx.WellKnownCore, body)
			}
		})
	}
}

// TestLibcoapClient talks to a simulated end with libcoap's coap-client.
func TestLibcoapClient(t *testing.T) {
	bin := ""
	for _, name := range []string{"coap-client", "coap-client-notls", "coap-client-openssl", "coap-client-gnutls"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("coap-client (libcoap3-bin) not on PATH")
	}
	s := newSim(t, "udp", qkdsim.Options{BlockSize: 64})
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("coap-client %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	uri := "coap://" + s.addr["a"]
	if out := run("-m", "get", uri+coapx.WellKnownCore); !strings.Contains(out, "<"+pushproto.PathGetKey+">") {
		t.Errorf("coap-client GET %s = %s", coapx.WellKnownCore, out)
	}
	out := run("-m", "post", "-t", "50", "-e", `{"source":"coap-client://test","qos":{"key_chunk_size":64}}`, uri+pushproto.PathOpenConnect)
	var rep struct {
		Status      int    `json:"status"`
		KeyStreamID string `json:"key_stream_id"`
		QoS         struct {
			KeyChunkSize int `json:"key_chunk_size"`
		} `json:"qos"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); err != nil {
		t.Fatalf("coap-client POST %s = %s: %v", pushproto.PathOpenConnect, out, err)
	}
	if rep.Status != 1 || rep.QoS.KeyChunkSize != 64 || rep.KeyStreamID != s.link.KeyStreamID().String() {
		t.Errorf("OPEN_CONNECT in JSON = %+v, want status 1, chunk 64, KSID %s", rep, s.link.KeyStreamID())
	}
}

func TestKeyBytesNeverLogged(t *testing.T) {
	for _, nw := range networks {
		t.Run(nw, func(t *testing.T) {
			s := newSim(t, nw, qkdsim.Options{BlockSize: 64, A: qkdsim.Faults{Drop: 1, Flip: 1}})
			ctx := context.Background()
			a := s.kms(ctx, "a", "kms://A", nil)
			b := s.kms(ctx, "b", "kms://B", nil)
			s.produce(20)
			b.waitFor(t, "20 blocks at b", count(20))
			a.waitFor(t, "block 19 at a", upTo(19))
			logged := logsOf(t)
			if !strings.Contains(logged, "fault") {
				t.Fatalf("expected fault log lines, got:\n%s", logged)
			}
			for i := uint64(0); i < 20; i++ {
				blk := b.block(i)
				for _, form := range []string{string(blk[:16]), hex.EncodeToString(blk[:8]), strings.ToUpper(hex.EncodeToString(blk[:8])),
					base64.StdEncoding.EncodeToString(blk[:12]), base64.RawURLEncoding.EncodeToString(blk[:12])} {
					if strings.Contains(logged, form) {
						t.Fatalf("block %d appears in the logs", i)
					}
				}
			}
		})
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
