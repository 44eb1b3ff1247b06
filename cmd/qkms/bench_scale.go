package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/bench"
	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// scaleBenchOptions are the flags of `qkms bench scale`.
type scaleBenchOptions struct {
	topology  string
	multipath string
	settle    time.Duration
	window    time.Duration
	pairs     int
	seed      uint64
	keep      bool
}

func benchScaleCmd() *cobra.Command {
	var o scaleBenchOptions
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Run a large network in this process: time to ready, idle CPU, memory and goroutines, then random pairs of its application nodes",
		Long: "Starts every node of the topology in this process (as `qkms net up` does), then measures:\n" +
			"  ready: the time until every node is ready;\n" +
			"  idle: this process's CPU time over --window after --settle, in % of one core (from /proc/self/stat),\n" +
			"        its RSS per node (/proc/self/status) and its goroutines;\n" +
			"  pairs: --pairs random pairs of SAEs on different nodes (for EuroQCI: the capitals), each asking\n" +
			"         enc_keys once at the master's node and dec_keys for the same IDs at the slave's node; the\n" +
			"         keys must be identical, and every request's time is reported (the target is ≤ 5 s).\n" +
			"Default topology: the built-in EuroQCI synthetic network (277 nodes, 302 links).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runScaleBench(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.topology, "topology", "", "topology file (default: the built-in cmd/qkms/topologies/euroqci-synthetic.json)")
	f.StringVar(&o.multipath, "multipath", config.MultipathSpread, "keys.multipath of every node: spread, split or off")
	f.DurationVar(&o.settle, "settle", 20*time.Second, "wait after ready before the idle window")
	f.DurationVar(&o.window, "window", 30*time.Second, "idle window")
	f.IntVar(&o.pairs, "pairs", 20, "random SAE pairs to test after the idle window")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the pair choice")
	f.BoolVar(&o.keep, "keep", false, "keep the network's directory")
	return cmd
}

func runScaleBench(ctx context.Context, out io.Writer, o scaleBenchOptions) error {
	var t *topology.Topology
	var err error
	if o.topology == "" {
		var raw []byte
		if raw, err = builtinTopologies.ReadFile("topologies/euroqci-synthetic.json"); err == nil {
			t, err = topology.Parse(raw)
		}
	} else {
		t, err = topology.Load(o.topology)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "qkms bench scale: %s, %d nodes, %d links, keys.multipath %s, one process (GOMAXPROCS %d)\n",
		t.Name, len(t.Nodes), len(t.Links), o.multipath, runtime.GOMAXPROCS(0))
	rn, err := upRelayNet(ctx, out, t, 1, o.keep, func(c *config.Config) { c.Keys.Multipath = o.multipath })
	if err != nil {
		return err
	}
	defer rn.close()

	time.Sleep(o.settle)
	cpu0, at0 := cpuTime(), time.Now()
	time.Sleep(o.window)
	cpu1, at1 := cpuTime(), time.Now()
	busy := 100 * (cpu1 - cpu0).Seconds() / at1.Sub(at0).Seconds()
	rss := rssBytes()
	fmt.Fprintf(out, "  idle over %v (after %v): CPU %.0f %% of one core (target ≤ 60 %%), RSS %.0f MiB = %.1f MiB per node (target ≤ 30), %d goroutines = %.1f per link end\n",
		o.window, o.settle, busy, float64(rss)/(1<<20), float64(rss)/(1<<20)/float64(len(t.Nodes)), runtime.NumGoroutine(),
		float64(runtime.NumGoroutine())/float64(2*len(t.Links)))

	// Random pairs of SAEs on different nodes.
	saes := slices.Clone(t.SAEs)
	slices.SortFunc(saes, func(a, b topology.SAE) int { return strings.Compare(string(a.ID), string(b.ID)) })
	if len(saes) < 2 {
		return fmt.Errorf("%s has fewer than two SAEs", t.Name)
	}
	r := rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15))
	var worst time.Duration
	ok := 0
	for i := 0; i < o.pairs; i++ {
		m := saes[r.IntN(len(saes))]
		s := saes[r.IntN(len(saes))]
		if m.Node == s.Node {
			i--
			continue
		}
		enc, dec, n, err := scalePair(ctx, rn, m.ID, s.ID)
		worst = max(worst, enc, dec)
		if err != nil {
			fmt.Fprintf(out, "  pair %2d %s→%s: FAILED after enc %.2fs dec %.2fs: %v\n", i+1, m.ID, s.ID, enc.Seconds(), dec.Seconds(), err)
			continue
		}
		ok++
		paths, mode, _ := rn.n.Paths(m.ID, s.ID)
		hops := 0
		for _, p := range paths {
			hops = max(hops, len(p)-1)
		}
		fmt.Fprintf(out, "  pair %2d %s→%s: %d keys identical at both ends; enc_keys %.2fs, dec_keys %.2fs; %d route(s) %s, up to %d hops\n",
			i+1, m.ID, s.ID, n, enc.Seconds(), dec.Seconds(), len(paths), mode, hops)
	}
	fmt.Fprintf(out, "  pairs: %d of %d identical at both ends; slowest request %.2fs (target ≤ 5 s)\n", ok, o.pairs, worst.Seconds())
	if ok != o.pairs {
		return fmt.Errorf("%d of %d pairs failed", o.pairs-ok, o.pairs)
	}
	return nil
}

// scalePair fetches 4 keys for master→slave and the same IDs at the
// slave's node, and compares them (bench.Exchange).
func scalePair(ctx context.Context, rn *relayNet, master, slave qkd.SAEID) (enc, dec time.Duration, n int, err error) {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	decURL := rn.urls[rn.nodeOf(slave)].ETSI014URL + "/api/v1/keys/" + string(master) + "/dec_keys"
	n, enc, rt, err := bench.Exchange(rctx, rn.saes[master], rn.encURL(master, slave, 4, 256), rn.saes[slave], decURL, &bench.Checked{})
	if rt > 0 {
		dec = rt - enc
	}
	return enc, dec, n, err
}

// cpuTime is this process's user + system CPU time (/proc/self/stat).
func cpuTime() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// rssBytes is this process's resident set size (/proc/self/status).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
