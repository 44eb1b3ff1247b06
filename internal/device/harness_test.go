package device_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/device"
	"github.com/qkms/qkms/internal/qkdsim"
)

var networks = []string{"udp", "tcp"}

// sim is a link served on loopback for one network.
type sim struct {
	t       *testing.T
	network string
	link    *qkdsim.Link
	addr    map[string]string // end → address
}

func newSim(t *testing.T, network string, opts qkdsim.Options) *sim {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	link, err := qkdsim.NewLink(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(link.Shutdown)
	s := &sim{t: t, network: network, link: link, addr: map[string]string{}}
	for _, end := range []string{"a", "b"} {
		s.addr[end] = s.serve(end, "127.0.0.1:0")
	}
	return s
}

// serve starts end on addr (":0" picks a port) and returns its address.
func (s *sim) serve(end, addr string) string {
	s.t.Helper()
	e := s.link.End(end)
	if s.network == "udp" {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			s.t.Fatal(err)
		}
		pc, err := net.ListenUDP("udp", ua)
		if err != nil {
			s.t.Fatal(err)
		}
		go func() { _ = e.ServeUDP(pc) }()
		return pc.LocalAddr().String()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatal(err)
	}
	go func() { _ = e.ServeTCP(l) }()
	return l.Addr().String()
}

// produce makes n blocks.
func (s *sim) produce(n int) {
	s.t.Helper()
	if err := s.link.Produce(n); err != nil {
		s.t.Fatal(err)
	}
}

// kms is a device client and everything it delivered.
type kms struct {
	client *device.Client
	done   chan error // Run's result

	mu      sync.Mutex
	order   []uint64          // guarded by mu
	blocks  map[uint64][]byte // guarded by mu: copies, for comparison
	changed chan struct{}     // guarded by mu
}

func (s *sim) kms(ctx context.Context, end, source string, mod func(*device.Options)) *kms {
	s.t.Helper()
	opts := device.Options{
		Network:     s.network,
		Addr:        s.addr[end],
		Source:      source,
		Destination: "kms://peer-of-" + end,
		// Long enough for a 1 MiB block on a loaded machine under -race:
		// only the tests of silence detection shorten it.
		Silence:    30 * time.Second,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
		Logger:     testLogger(s.t).With("kms", source),
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := device.Dial(ctx, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	k := &kms{client: c, done: make(chan error, 1), blocks: map[uint64][]byte{}, changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	s.t.Cleanup(func() {
		cancel()
		select {
		case <-k.done:
		case <-time.After(10 * time.Second):
			s.t.Errorf("%s: Run did not return", source)
		}
	})
	go func() { k.done <- c.Run(ctx, k.deliver) }()
	return k
}

func (k *kms) deliver(_ context.Context, b device.Block) error {
	defer b.Data.Wipe()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.order = append(k.order, b.Index)
	k.blocks[b.Index] = bytes.Clone(b.Data.Expose())
	close(k.changed)
	k.changed = make(chan struct{})
	return nil
}

// waitFor waits until cond holds for the delivered blocks, or fails after 10 s.
func (k *kms) waitFor(t *testing.T, what string, cond func(order []uint64) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		k.mu.Lock()
		ok, ch := cond(k.order), k.changed
		got := fmt.Sprint(k.order)
		k.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("waiting for %s: delivered %s", what, got)
		}
	}
}

func (k *kms) block(i uint64) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.blocks[i]
}

func (k *kms) delivered() []uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]uint64(nil), k.order...)
}

// count returns a condition: at least n blocks delivered.
func count(n int) func([]uint64) bool { return func(o []uint64) bool { return len(o) >= n } }

// upTo returns a condition: index i delivered.
func upTo(i uint64) func([]uint64) bool {
	return func(o []uint64) bool { return len(o) > 0 && o[len(o)-1] >= i }
}

// waitUntil polls cond (for state without a change signal) until a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// logBuf collects every test log line so tests can check what was logged.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

var logs = map[*testing.T]*logBuf{}
var logsMu sync.Mutex

// testLogger logs at debug level into a buffer per test (see logsOf).
func testLogger(t *testing.T) *slog.Logger {
	logsMu.Lock()
	defer logsMu.Unlock()
	lb, ok := logs[t]
	if !ok {
		lb = &logBuf{}
		logs[t] = lb
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("logs:\n%s", lb.String())
			}
			logsMu.Lock()
			delete(logs, t)
			logsMu.Unlock()
		})
	}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func logsOf(t *testing.T) string {
	logsMu.Lock()
	defer logsMu.Unlock()
	if lb := logs[t]; lb != nil {
		return lb.String()
	}
	return ""
}

// bitDiff counts differing bits.
func bitDiff(a, b []byte) int {
	n := 0
	for i := range a {
		x := a[i] ^ b[i]
		for ; x != 0; x &= x - 1 {
			n++
		}
	}
	return n
}
