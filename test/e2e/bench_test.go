package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/telemetry"
	"github.com/qkms/qkms/internal/topology"
)

// benchNet is a line2 network with fast links and a deep ready pool, so
// enc_keys is served from keys both ends already hold.
func benchNet(b *testing.B) *netsim.Network {
	b.Helper()
	topo, err := topology.Load(topoPath("line2.json"))
	if err != nil {
		b.Skip("shared topologies not found")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := netsim.Up(ctx, netsim.Options{Topology: topo, Dir: b.TempDir(), Scale: 400,
		Tune: func(c *config.Config) { c.Keys.Prereserve = 4096; c.Keys.MaxKeyCount = 1 << 30 }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(n.Close)
	// Let the reserved pool fill before measuring.
	m := n.Nodes["A"].Metrics()
	deadline := time.Now().Add(time.Minute)
	for readyKeys(m) < 3000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
	return n
}

// bareServer is the baseline: a Go TLS 1.3 server with client certificates
// that returns one random 32-byte key as JSON.
func bareServer(b *testing.B, info netsim.Info) *httptest.Server {
	b.Helper()
	node := info.Nodes[0]
	cfg, err := pki.ServerTLSConfig(info.CA, node.DataDir+"/../../../pki/KME_A.pem", node.DataDir+"/../../../pki/KME_A-key.pem")
	if err != nil {
		b.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var k [32]byte
		_, _ = rand.Read(k[:])
		id, _ := qkd.NewKeyID(nil)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{"key_ID": id.String(), "key": base64.StdEncoding.EncodeToString(k[:])}}})
	}))
	s.TLS = cfg
	s.StartTLS()
	b.Cleanup(s.Close)
	return s
}

// load runs b.N requests from `clients` goroutines and reports req/s and
// latency percentiles.
func load(b *testing.B, c *http.Client, method, url, body string, clients int) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	var next int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				req, _ := http.NewRequest(method, url, stringsReader(body))
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("HTTP %d: %s", resp.StatusCode, body)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func stringsReader(s string) io.Reader {
	if s == "" {
		return nil
	}
	return &stringReader{s: s}
}

type stringReader struct{ s string }

func (r *stringReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

// BenchmarkEncKeys measures ETSI 014 enc_keys (1 × 256-bit key, mTLS
// keep-alive, loopback) on a real node beside the bare TLS baseline, in the
// same run: compare req/s and p99 of the sub-benchmarks.
func BenchmarkEncKeys(b *testing.B) {
	n := benchNet(b)
	info := n.Info
	sa := saeOf(info, "SAE_A1")
	c := httpsClient(&testing.T{}, info.CA, sa.Cert, sa.Key)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	bare := bareServer(b, info)
	url := nodeOf(info, "A").ETSI014URL + "/api/v1/keys/SAE_B1/enc_keys"
	for _, clients := range []int{1, 8} {
		b.Run("bare/clients="+itoa(clients), func(b *testing.B) { load(b, c, "GET", bare.URL, "", clients) })
		b.Run("enc_keys/clients="+itoa(clients), func(b *testing.B) { load(b, c, "GET", url, "", clients) })
	}
	b.Run("enc_keys-128x256/clients=1", func(b *testing.B) {
		load(b, c, "GET", url+"?number=128&size=256", "", 1)
		b.ReportMetric(float64(b.N)*128*32/b.Elapsed().Seconds()/1e6, "keyMB/s")
	})
}

// readyKeys reads qkms_keys{state="ready"} from a node's registry.
func readyKeys(m *telemetry.Metrics) float64 { return gauge(m, "qkms_keys", "state", "ready") }

// gauge reads the first series of a gauge with the given label value.
func gauge(m *telemetry.Metrics, name, label, value string) float64 {
	mfs, err := m.Registry().Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return mt.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func itoa(i int) string { return string(rune('0'+i/10%10)) + string(rune('0'+i%10)) }
