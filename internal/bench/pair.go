package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Checked counts the keys a verifying load fetched at both ends.
type Checked struct {
	Keys       atomic.Int64 // keys fetched at both ends and compared
	Mismatches atomic.Int64 // keys whose bytes differ between the ends
	Missing    atomic.Int64 // keys the slave's node did not deliver
	RoundTrips atomic.Int64 // enc_keys answered and their dec_keys tried
	// FirstMiss is the first dec_keys failure (an error), if any.
	FirstMiss atomic.Value
}

// decTimeout bounds the dec_keys that checks the keys of one enc_keys.
const decTimeout = 30 * time.Second

type keyJSON struct {
	ID  string `json:"key_ID"`
	Key string `json:"key"`
}

// EncDec returns a request function for DriveKeys that checks every key
// (Exchange).
func EncDec(enc *http.Client, encURL string, dec *http.Client, decURL string, chk *Checked) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		n, _, _, err := Exchange(ctx, enc, encURL, dec, decURL, chk)
		return n, err
	}
}

// Exchange makes one checked round trip: GET encURL (enc_keys at the
// master's node), then POST the key IDs to decURL (dec_keys at the slave's
// node, with the slave's client) and compare the bytes. It returns the
// keys delivered, the time to enc_keys's answer and to dec_keys's. A key
// the slave's node does not deliver, or delivers with other bytes, is
// counted in chk; the exchange then fails. Errors never carry key bytes.
func Exchange(ctx context.Context, enc *http.Client, encURL string, dec *http.Client, decURL string, chk *Checked) (n int, encLat, rtLat time.Duration, err error) {
	t0 := time.Now()
	var got struct {
		Keys []keyJSON `json:"keys"`
	}
	if err := DoJSON(ctx, enc, http.MethodGet, encURL, nil, &got); err != nil {
		return 0, 0, 0, fmt.Errorf("enc_keys: %w", err)
	}
	encLat = time.Since(t0)
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
	chk.RoundTrips.Add(1)
	if err := DoJSON(dctx, dec, http.MethodPost, decURL, body, &back); err != nil {
		chk.Missing.Add(int64(len(got.Keys)))
		err = fmt.Errorf("dec_keys: %w", err)
		chk.FirstMiss.CompareAndSwap(nil, err)
		return 0, encLat, 0, err
	}
	rtLat = time.Since(t0)
	byID := make(map[string]string, len(back.Keys))
	for _, k := range back.Keys {
		byID[k.ID] = k.Key
	}
	bad := 0
	for _, k := range got.Keys {
		v, ok := byID[k.ID]
		switch {
		case !ok:
			chk.Missing.Add(1)
			bad++
		case v != k.Key:
			chk.Mismatches.Add(1)
			bad++
		}
	}
	clear(byID)
	chk.Keys.Add(int64(len(got.Keys)))
	if bad > 0 {
		return 0, encLat, rtLat, fmt.Errorf("%d of %d keys differ or are missing at the slave's node", bad, len(got.Keys))
	}
	return len(got.Keys), encLat, rtLat, nil
}

// DoJSON sends a request (body, if any, as JSON) and decodes a 200
// answer into into; any other status is an error with the start of the
// answer's body (ETSI 014 error bodies carry no key bytes).
func DoJSON(ctx context.Context, c *http.Client, method, url string, body []byte, into any) error {
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
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}
