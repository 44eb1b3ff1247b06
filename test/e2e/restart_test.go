package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/qkdsim"
	"github.com/qkms/qkms/internal/sae"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// qkmsBinary builds cmd/qkms once per test run.
func qkmsBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qkms-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "qkms")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/qkms").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freePort returns a loopback address that was free a moment ago, for a
// node process to listen on (its first start and every restart). The port
// is taken below the kernel's ephemeral range where the system tells it:
// a port from that range (what ":0" gives) can become the local end of
// any outgoing connection of the test once released — a proxy's dial to
// the other node, say — and the process then fails with "address already
// in use" (seen when a node restarted).
func freePort(t *testing.T) string {
	t.Helper()
	if low := ephemeralLow(); low > 2048 {
		for range 100 {
			addr := fmt.Sprintf("127.0.0.1:%d", 1024+mrand.IntN(low-1024))
			if l, err := net.Listen("tcp", addr); err == nil {
				l.Close()
				return addr
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ephemeralLow is the first port of Linux's ephemeral range, 0 if unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var low, high int
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil {
		return 0
	}
	return low
}

// procNode is a node running as a separate `qkms serve` process.
type procNode struct {
	id      qkd.NodeID
	cfgPath string
	cfg     *config.Config
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

func (p *procNode) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(qkmsBinary(t), "serve", "--config", p.cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	p.exited = exited
	go func() { _ = p.cmd.Wait(); f.Close(); close(exited) }()
}

// dumpLog prints the last lines of a node's log (for failed tests).
func (p *procNode) dumpLog(t *testing.T) {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("last log lines of node %s:\n%s", p.id, strings.Join(lines, "\n"))
}

func (p *procNode) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("killed process did not exit")
	}
}

func (p *procNode) ready() bool {
	resp, err := http.Get("http://" + p.cfg.Listen.Metrics + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// twoProcesses sets up PKI, PSK, an in-process QKD link simulator and two
// node processes A and B.
func twoProcesses(t *testing.T) (a, b *procNode, ca string, cl map[qkd.SAEID]*sae.Client) {
	t.Helper()
	return twoProcessesVia(t, nil)
}

// twoProcessesVia is twoProcesses where each node reaches its peer's
// KMS↔KMS listener at via(peer, its address) (a proxy; nil: directly).
func twoProcessesVia(t *testing.T, via func(peer qkd.NodeID, addr string) string) (a, b *procNode, ca string, cl map[qkd.SAEID]*sae.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test skipped under -short")
	}
	dir := t.TempDir()
	p, err := pki.InitCA(filepath.Join(dir, "pki"), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	psk := filepath.Join(dir, "A-B.psk")
	key := make([]byte, 8192)
	_, _ = rand.Read(key)
	if err := os.WriteFile(psk, key, 0o600); err != nil {
		t.Fatal(err)
	}
	sim, err := qkdsim.NewLink(qkdsim.Options{Rate: 200000, BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	ends := [2]string{}
	for i, name := range []string{"a", "b"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ends[i] = l.Addr().String()
		e := sim.End(name)
		go func() { _ = e.ServeTCP(l) }()
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = sim.Run(ctx) }()
	t.Cleanup(func() { cancel(); sim.Shutdown() })

	peers := map[qkd.NodeID]string{"A": freePort(t), "B": freePort(t)}
	dial := map[qkd.NodeID]string{"A": peers["A"], "B": peers["B"]}
	if via != nil {
		for id, addr := range peers {
			dial[id] = via(id, addr)
		}
	}
	nodes := map[qkd.NodeID]*procNode{}
	for i, id := range []qkd.NodeID{"A", "B"} {
		other := qkd.NodeID("B")
		if id == "B" {
			other = "A"
		}
		kme := string(qkd.KMEOf(id))
		pair, err := p.IssueServer(kme, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := config.Default()
		c.NodeID, c.DataDir = id, filepath.Join(dir, string(id), "data")
		c.Listen = config.Listen{ETSI014: freePort(t), PeerTCP: peers[id], PeerUDP: "", Metrics: freePort(t)}
		c.TLS = config.TLS{CAFile: p.CertFile(), CertFile: pair.CertFile, KeyFile: pair.KeyFile}
		c.SAEs = []config.SAE{{ID: "SAE_A1", Node: "A"}, {ID: "SAE_B1", Node: "B"}}
		c.Links = []config.Link{{ID: "A-B", Peer: other, PeerAddr: dial[other], Transport: "tcp", PSKFile: psk,
			Device: config.Device{Addr: ends[i], Transport: "tcp"}}}
		c.Log.Level = "debug"
		raw, err := config.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, string(id)+".yaml")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		loaded, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		nodes[id] = &procNode{id: id, cfgPath: path, cfg: loaded, logPath: filepath.Join(dir, string(id)+".log")}
	}
	cl = map[qkd.SAEID]*sae.Client{}
	for sid, nid := range map[qkd.SAEID]qkd.NodeID{"SAE_A1": "A", "SAE_B1": "B"} {
		pair, err := p.IssueClient(string(sid))
		if err != nil {
			t.Fatal(err)
		}
		c, err := sae.New("https://"+nodes[nid].cfg.Listen.ETSI014, p.CertFile(), pair.CertFile, pair.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		cl[sid] = c
	}
	for _, n := range nodes {
		n.start(t)
		t.Cleanup(func() {
			_ = n.cmd.Process.Signal(syscall.SIGKILL)
			<-n.exited
			if t.Failed() {
				n.dumpLog(t)
			}
		})
	}
	for _, n := range nodes {
		waitFor(t, 60*time.Second, "node "+string(n.id)+" ready", n.ready)
	}
	return nodes["A"], nodes["B"], p.CertFile(), cl
}

// issued is a key handed to a master, to be fetched by its slave.
type issued struct {
	id            string
	bytes         []byte
	master, slave qkd.SAEID
	fetched       bool
}

// TestKill9Restart: keys flow both ways while first B, then A is killed with
// SIGKILL and restarted on its data directory. Every key a master got is
// then served once, byte-identical, to its slave; none is served twice.
func TestKill9Restart(t *testing.T) {
	a, b, _, cl := twoProcesses(t)
	var mu sync.Mutex
	var keys []*issued
	take := func(master, slave qkd.SAEID) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ks, err := cl[master].EncKeys(ctx, string(slave), 4, 256)
		if err != nil {
			return // the node or its peer may be down: no keys, nothing owed
		}
		mu.Lock()
		for _, k := range ks {
			keys = append(keys, &issued{id: k.ID, bytes: append([]byte(nil), k.Key.Expose()...), master: master, slave: slave})
		}
		mu.Unlock()
	}
	fetch := func(k *issued) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := cl[k.slave].DecKeys(ctx, string(k.master), []string{k.id})
		if err != nil {
			return err
		}
		if len(got) != 1 || got[0].ID != k.id || string(got[0].Key.Expose()) != string(k.bytes) {
			t.Fatalf("key %s: the slave got different bytes than the master", k.id)
		}
		return nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, dir := range [][2]qkd.SAEID{{"SAE_A1", "SAE_B1"}, {"SAE_B1", "SAE_A1"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				take(dir[0], dir[1])
			}
		}()
	}
	// count returns how many keys each master got so far.
	count := func() map[qkd.SAEID]int {
		mu.Lock()
		defer mu.Unlock()
		c := map[qkd.SAEID]int{}
		for _, k := range keys {
			c[k.master]++
		}
		return c
	}
	// waitMore waits until both masters got 20 more keys than in base.
	waitMore := func(base map[qkd.SAEID]int) {
		waitFor(t, 60*time.Second, "keys flowing in both directions", func() bool {
			c := count()
			return c["SAE_A1"] >= base["SAE_A1"]+20 && c["SAE_B1"] >= base["SAE_B1"]+20
		})
	}
	waitMore(nil)
	// Fetch some keys before the crash.
	mu.Lock()
	early := append([]*issued(nil), keys[:10]...)
	mu.Unlock()
	for _, k := range early {
		if err := fetch(k); err != nil {
			t.Fatalf("dec_keys before the crash: %v", err)
		}
		k.fetched = true
	}
	for _, victim := range []*procNode{b, a} {
		victim.kill9(t)
		base := count()
		victim.start(t)
		waitFor(t, 60*time.Second, "restarted node "+string(victim.id)+" ready", victim.ready)
		waitMore(base) // traffic resumes in both directions
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.id] {
			t.Fatalf("key ID %s issued twice", k.id)
		}
		seen[k.id] = true
		if !k.fetched {
			if err := fetch(k); err != nil {
				t.Fatalf("dec_keys of %s (%s→%s) after the restarts: %v", k.id, k.master, k.slave, err)
			}
		}
		if err := fetch(k); err == nil {
			t.Fatalf("key %s delivered twice", k.id)
		}
	}
	t.Logf("%d keys issued across two kill -9 restarts; each delivered once to its slave, identical", len(keys))
}
