package sim

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qkms/qkms/internal/bench"
)

// backoff is how long a client waits after a refused or failed request
// (the dkms load client pauses 100 ms after a 429/503).
const backoff = 100 * time.Millisecond

// maxInFlight bounds the requests of one paced pair in flight; a request
// due while that many are still out is counted offered and not served.
const maxInFlight = 4

// phase collects one load phase of a network.
type phase struct {
	mu       sync.Mutex
	enc, rt  []time.Duration // enc_keys; enc_keys + dec_keys
	firstErr string
}

func (ph *phase) ok(enc, rt time.Duration) {
	ph.mu.Lock()
	ph.enc = append(ph.enc, enc)
	ph.rt = append(ph.rt, rt)
	ph.mu.Unlock()
}

func (ph *phase) fail(err error) {
	ph.mu.Lock()
	if ph.firstErr == "" {
		ph.firstErr = err.Error()
	}
	ph.mu.Unlock()
}

// pairLoad is one pair's counters in one phase.
type pairLoad struct {
	offered, served, failed, requests atomic.Int64
}

// client is one pair's endpoints: enc_keys at the master's node, dec_keys
// at the slave's.
type client struct {
	enc, dec       *http.Client
	encURL, decURL string
}

// exchange makes one checked round trip (bench.Exchange): enc_keys, then
// dec_keys of the same key IDs at the slave's node, comparing the bytes.
func (c *client) exchange(ctx context.Context, in *bench.Checked) (int, time.Duration, time.Duration, error) {
	return bench.Exchange(ctx, c.enc, c.encURL, c.dec, c.decURL, in)
}

// once runs one exchange and books it in pl and ph.
func (c *client) once(ctx context.Context, in *bench.Checked, pl *pairLoad, ph *phase) error {
	n, enc, rt, err := c.exchange(ctx, in)
	if err != nil {
		if ctx.Err() == nil {
			pl.failed.Add(1)
			ph.fail(err)
		}
		return err
	}
	pl.requests.Add(1)
	pl.served.Add(int64(n))
	ph.ok(enc, rt)
	return nil
}

// paced offers number keys every number/keysPerSecond seconds for d, each
// offer one exchange, at most maxInFlight of them out at once; an offer
// due while that many are out is not served. It returns once every
// exchange it started has ended.
func (c *client) paced(ctx context.Context, d time.Duration, keysPerSecond float64, number int, in *bench.Checked, pl *pairLoad, ph *phase) {
	if keysPerSecond <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	interval := time.Duration(float64(number) / keysPerSecond * float64(time.Second))
	start := time.Now()
	end := start.Add(d)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var wg sync.WaitGroup
	var out atomic.Int32
	for next := start; next.Before(end); next = next.Add(interval) {
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
		pl.offered.Add(int64(number))
		if out.Add(1) > maxInFlight {
			out.Add(-1)
			continue
		}
		wg.Go(func() {
			defer out.Add(-1)
			_ = c.once(ctx, in, pl, ph)
		})
	}
	wg.Wait()
}

// closed runs clients back-to-back exchanges for d, each pausing backoff
// after a failure.
func (c *client) closed(ctx context.Context, d time.Duration, clients int, in *bench.Checked, pl *pairLoad, ph *phase) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := c.once(ctx, in, pl, ph); err != nil {
					select {
					case <-ctx.Done():
					case <-time.After(backoff):
					}
				}
			}
		})
	}
	wg.Wait()
}

// first makes exchanges until one succeeds (the first sets the pair's key
// stream up through the controller), for at most limit.
func (c *client) first(ctx context.Context, in *bench.Checked, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, _, _, err = c.exchange(ctx, in); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}
