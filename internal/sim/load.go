package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// decTimeout bounds the dec_keys that checks the keys of one enc_keys.
const decTimeout = 30 * time.Second

// backoff is how long a client waits after a refused or failed request
// (the dkms load client pauses 100 ms after a 429/503).
const backoff = 100 * time.Millisecond

// maxInFlight bounds the requests of one paced pair in flight; a request
// due while that many are still out is counted offered and not served.
const maxInFlight = 4

// integrity counts every key fetched at both ends, over a network's run.
type integrity struct {
	roundTrips atomic.Int64 // enc_keys answered and their dec_keys tried
	compared   atomic.Int64 // keys delivered at both ends and compared
	mismatches atomic.Int64 // keys whose bytes differ between the ends
	missing    atomic.Int64 // keys the slave's node did not deliver
}

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

type keyJSON struct {
	ID  string `json:"key_ID"`
	Key string `json:"key"`
}

// exchange makes one round trip: enc_keys, then dec_keys of the same key
// IDs at the slave's node, comparing the bytes. It returns the keys
// delivered identically at both ends; keys missing or different are
// counted in in and fail the exchange. Errors never carry key material.
func (c *client) exchange(ctx context.Context, in *integrity) (int, time.Duration, time.Duration, error) {
	t0 := time.Now()
	var got struct {
		Keys []keyJSON `json:"keys"`
	}
	if err := doJSON(ctx, c.enc, http.MethodGet, c.encURL, nil, &got); err != nil {
		return 0, 0, 0, fmt.Errorf("enc_keys: %w", err)
	}
	encLat := time.Since(t0)
	defer func() {
		for i := range got.Keys {
			got.Keys[i].Key = ""
		}
	}()
	ids := make([]map[string]string, len(got.Keys))
	for i, k := range got.Keys {
		ids[i] = map[string]string{"key_ID": k.ID}
	}
	body, _ := json.Marshal(map[string]any{"key_IDs": ids})
	var back struct {
		Keys []keyJSON `json:"keys"`
	}
	// Keys taken at the master's node are fetched at the slave's even if
	// the window ends meanwhile: cut off, they would count as missing.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), decTimeout)
	defer cancel()
	in.roundTrips.Add(1)
	if err := doJSON(dctx, c.dec, http.MethodPost, c.decURL, body, &back); err != nil {
		in.missing.Add(int64(len(got.Keys)))
		return 0, 0, 0, fmt.Errorf("dec_keys: %w", err)
	}
	rtLat := time.Since(t0)
	byID := make(map[string]string, len(back.Keys))
	for _, k := range back.Keys {
		byID[k.ID] = k.Key
	}
	bad := 0
	for _, k := range got.Keys {
		v, ok := byID[k.ID]
		switch {
		case !ok:
			in.missing.Add(1)
			bad++
		case v != k.Key:
			in.mismatches.Add(1)
			bad++
		}
	}
	clear(byID)
	for i := range back.Keys {
		back.Keys[i].Key = ""
	}
	in.compared.Add(int64(len(got.Keys) - bad))
	if bad > 0 {
		return 0, 0, 0, fmt.Errorf("%d of %d keys differ or are missing at the slave's node", bad, len(got.Keys))
	}
	return len(got.Keys), encLat, rtLat, nil
}

func doJSON(ctx context.Context, c *http.Client, method, url string, body []byte, into any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// once runs one exchange and books it in pl and ph.
func (c *client) once(ctx context.Context, in *integrity, pl *pairLoad, ph *phase) error {
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
func (c *client) paced(ctx context.Context, d time.Duration, keysPerSecond float64, number int, in *integrity, pl *pairLoad, ph *phase) {
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
func (c *client) closed(ctx context.Context, d time.Duration, clients int, in *integrity, pl *pairLoad, ph *phase) {
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
func (c *client) first(ctx context.Context, in *integrity, limit time.Duration) error {
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
