package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sae"
	"github.com/qkms/qkms/internal/topology"
)

// topoPath is a topology of the repository (cmd/qkms/topologies).
func topoPath(name string) string {
	return filepath.Join("..", "..", "cmd", "qkms", "topologies", name)
}

func loadTopology(t *testing.T, name string) *topology.Topology {
	t.Helper()
	p := topoPath(name)
	topo, err := topology.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// syncBuffer collects logs from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startNet runs a network from a shared topology in a temp dir.
func startNet(t *testing.T, name string, log *slog.Logger, tune func(*config.Config)) *netsim.Network {
	t.Helper()
	return startNetScaled(t, name, 1, log, tune)
}

// startNetScaled is startNet with every link rate multiplied by scale.
func startNetScaled(t *testing.T, name string, scale float64, log *slog.Logger, tune func(*config.Config)) *netsim.Network {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-node test skipped under -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := netsim.Up(ctx, netsim.Options{Topology: loadTopology(t, name), Dir: t.TempDir(), Logger: log, Tune: tune, Scale: scale})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// readInfo reads DIR/network.json the way a user would.
func readInfo(t *testing.T, dir string) netsim.Info {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "network.json"))
	if err != nil {
		t.Fatal(err)
	}
	var info netsim.Info
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// httpsClient is a raw HTTPS client with the given certificate (none if
// cert is "").
func httpsClient(t *testing.T, ca, cert, key string) *http.Client {
	t.Helper()
	cfg, err := pki.ClientTLSConfig(ca, cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

type reply struct {
	code int
	body []byte
	hdr  http.Header
}

func do(t *testing.T, c *http.Client, method, url, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, b, resp.Header}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// saeClient is an ETSI 014 client of SAE id at its node, closed with the
// test.
func saeClient(t *testing.T, info netsim.Info, id qkd.SAEID) *sae.Client {
	t.Helper()
	s := saeOf(info, id)
	c, err := sae.New(nodeOf(info, s.Node).ETSI014URL, info.CA, s.Cert, s.Key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
