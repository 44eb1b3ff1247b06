package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/bench"
	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/pki"
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
		Tune: func(c *config.Config) { c.Keys.Prereserve = 12000; c.Keys.MaxKeyCount = 1 << 30 }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(n.Close)
	// Let the reserved pool fill before measuring.
	m := n.Nodes["A"].Metrics()
	deadline := time.Now().Add(time.Minute)
	for readyKeys(m) < 9000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
	return n
}

// run measures b.N requests from clients goroutines and reports req/s and
// latency percentiles.
func run(b *testing.B, c *http.Client, url string, clients int) bench.Result {
	b.Helper()
	b.ResetTimer()
	r := bench.Load(context.Background(), b.Name(), clients, time.Hour, b.N, bench.GetOK(c, url))
	b.StopTimer()
	if r.Errors > 0 {
		b.Errorf("%d requests failed", r.Errors)
	}
	b.ReportMetric(r.PerSecond(), "req/s")
	b.ReportMetric(float64(r.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
	return r
}

// BenchmarkEncKeys measures ETSI 014 enc_keys (1 × 256-bit key, mTLS
// keep-alive, loopback) on a real node beside the bare TLS baseline of
// docs/performance.md, in the same run: compare req/s and p99 of the
// sub-benchmarks. `qkms bench` prints the ratios directly.
func BenchmarkEncKeys(b *testing.B) {
	n := benchNet(b)
	info := n.Info
	sa := saeOf(info, "SAE_A1")
	c := httpsClient(&testing.T{}, info.CA, sa.Cert, sa.Key)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	pkiDir := filepath.Dir(info.CA)
	srv, err := pki.ServerTLSConfig(info.CA, filepath.Join(pkiDir, "KME_A.pem"), filepath.Join(pkiDir, "KME_A-key.pem"))
	if err != nil {
		b.Fatal(err)
	}
	bare, err := bench.StartBare(srv)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	url := nodeOf(info, "A").ETSI014URL + "/api/v1/keys/SAE_B1/enc_keys"
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("bare/clients=%d", clients), func(b *testing.B) { run(b, c, bare.URL, clients) })
		b.Run(fmt.Sprintf("enc_keys/clients=%d", clients), func(b *testing.B) { run(b, c, url, clients) })
	}
	b.Run("enc_keys-128x256/clients=1", func(b *testing.B) {
		r := run(b, c, url+"?number=128&size=256", 1)
		b.ReportMetric(r.PerSecond()*128*32/1e6, "keyMB/s")
	})
}

// readyKeys reads qkms_keys{state="ready"} from a node's registry.
func readyKeys(m *telemetry.Metrics) float64 { return gauge(m, "qkms_keys", "state", "ready") }

// gauge reads the first series of name with the given label value.
func gauge(m *telemetry.Metrics, name, label, value string) float64 {
	v, _ := m.Value(name, map[string]string{label: value})
	return v
}
