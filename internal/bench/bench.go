// Package bench measures request throughput and latency against a baseline
// in the same run (docs/performance.md: ratios, not absolute times). It is used
// by `qkms bench` and by the end-to-end benchmarks.
package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// Result is one measured load.
type Result struct {
	Name     string
	Requests int
	Errors   int
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// PerSecond is the request rate.
func (r Result) PerSecond() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

func (r Result) String() string {
	return fmt.Sprintf("%-28s %9.0f req/s  p50 %8v  p99 %8v  (%d requests, %d errors)",
		r.Name, r.PerSecond(), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Requests, r.Errors)
}

// Load runs do from clients goroutines for d (or until max requests, if > 0).
func Load(ctx context.Context, name string, clients int, d time.Duration, max int, do func(context.Context) error) Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var n, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil && (max <= 0 || n.Add(1) <= int64(max)) {
				t0 := time.Now()
				if err := do(ctx); err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := Result{Name: name, Requests: len(lat), Errors: int(errs.Load()), Elapsed: time.Since(start)}
	slices.Sort(lat)
	if len(lat) > 0 {
		r.P50, r.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}

// GetOK returns a request function that GETs url and wants 200.
func GetOK(c *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
}

// BareServer is the baseline of docs/performance.md: a Go TLS server (the same
// TLS configuration as the node, client certificates required) whose
// handler returns one random 32-byte key as ETSI 014 JSON.
type BareServer struct {
	URL string
	srv *http.Server
}

// StartBare serves the baseline on a loopback port.
func StartBare(cfg *tls.Config) (*BareServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(bareKey), TLSConfig: cfg.Clone(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	return &BareServer{URL: "https://" + ln.Addr().String(), srv: srv}, nil
}

// Close stops the server.
func (b *BareServer) Close() { _ = b.srv.Close() }

func bareKey(w http.ResponseWriter, _ *http.Request) {
	var k [32]byte
	_, _ = rand.Read(k[:])
	id, _ := qkd.NewKeyID(nil)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"keys":[{"key_ID":"`+id.String()+`","key":"`+base64.StdEncoding.EncodeToString(k[:])+`"}]}`)
}
