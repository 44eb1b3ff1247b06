package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qkms/qkms/internal/quicks"
)

// Drive is the outcome of a saturating key load (DriveKeys).
type Drive struct {
	Requests int // successful requests
	Keys     int // keys they returned
	Errors   int // failed requests (503 when the route has no key, ...)
	Elapsed  time.Duration
	// FirstError is the first failure seen, if any.
	FirstError error
}

// KeysPerSecond is the delivered key rate.
func (d Drive) KeysPerSecond() float64 { return float64(d.Keys) / d.Elapsed.Seconds() }

// DriveKeys runs do from clients goroutines for d; do returns how many keys
// one request delivered. After a failed request a client waits backoff, so
// that an exhausted route does not turn the load into a busy loop.
func DriveKeys(ctx context.Context, clients int, d, backoff time.Duration, do func(context.Context) (int, error)) Drive {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var reqs, keys, errs atomic.Int64
	var wg sync.WaitGroup
	var first sync.Once
	var firstErr error
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n, err := do(ctx)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						first.Do(func() { firstErr = err })
						select {
						case <-ctx.Done():
						case <-time.After(backoff):
						}
					}
					continue
				}
				reqs.Add(1)
				keys.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	return Drive{Requests: int(reqs.Load()), Keys: int(keys.Load()), Errors: int(errs.Load()), Elapsed: time.Since(start), FirstError: firstErr}
}

// EncKeys returns a request function for DriveKeys: GET url (an ETSI 014
// enc_keys URL with its query) and count the keys of a 200 answer.
func EncKeys(c *http.Client, url string) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
		}
		var body struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return 0, err
		}
		return len(body.Keys), nil
	}
}

// Performance reads QUICKS GET link/performance/{link_id} (all history) from
// a KMS's QUICKS base URL (…/api/v2/sdn) with a client allowed to (the
// operator's certificate).
func Performance(ctx context.Context, c *http.Client, quicksURL, linkUUID string) (quicks.Performance, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, quicksURL+"/link/performance/"+linkUUID, nil)
	if err != nil {
		return quicks.Performance{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return quicks.Performance{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return quicks.Performance{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return quicks.Performance{}, fmt.Errorf("link/performance: HTTP %d: %s", resp.StatusCode, b)
	}
	return quicks.DecodePerformance(b)
}

// Rates are a link end's mean QUICKS rates over a window, bytes/s, and its
// KAV (bytes) at the window's first and last entries.
type Rates struct {
	Seconds         float64 // covered by the entries used
	SKR, IKR, EXKR  float64
	KAVFrom, KAVTo  int64
	Entries         int
	FirstAt, LastAt time.Time
}

// Window averages the entries of p that end within (from, to], weighted by
// their delta_t (each entry covers delta_t milliseconds up to its
// timestamp). Entries are one second long, so the window's edges are
// rounded to whole entries.
func Window(p quicks.Performance, from, to time.Time) Rates {
	es := append([]quicks.PerformanceEntry{p.Current}, p.History...)
	slices.SortFunc(es, func(a, b quicks.PerformanceEntry) int { return a.Timestamp.Compare(b.Timestamp) })
	var r Rates
	var skr, ikr, exkr float64
	for _, e := range es {
		if e.DeltaT <= 0 || !e.Timestamp.After(from) || e.Timestamp.After(to) {
			continue
		}
		dt := float64(e.DeltaT) / 1000
		skr += float64(e.SKR) * dt
		ikr += float64(e.IKR) * dt
		exkr += float64(e.EXKR) * dt
		r.Seconds += dt
		if r.Entries == 0 {
			r.KAVFrom, r.FirstAt = int64(e.KAV), e.Timestamp
		}
		r.KAVTo, r.LastAt = int64(e.KAV), e.Timestamp
		r.Entries++
	}
	if r.Seconds > 0 {
		r.SKR, r.IKR, r.EXKR = skr/r.Seconds, ikr/r.Seconds, exkr/r.Seconds
	}
	return r
}

// Spread is the minimum, median and maximum of a sample.
type Spread struct{ Min, Median, Max float64 }

// SpreadOf returns the spread of v (zeros for an empty v).
func SpreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Min: s[0], Median: med, Max: s[len(s)-1]}
}
