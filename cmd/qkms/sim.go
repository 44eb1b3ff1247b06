package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/sim"
	"github.com/qkms/qkms/internal/topology"
)

// simOptions are the flags of `qkms sim`.
type simOptions struct {
	families   []string
	nodes      []int
	topologies []string
	seed       int64
	pairs      int
	duration   time.Duration
	warmup     time.Duration
	scale      float64
	number     int
	clients    int
	quick      bool
	jsonFile   string
	svgFile    string
	keep       bool
	dir        string
}

// Defaults of the full campaign, sized to a 2-core machine (about
// 12 minutes there).
var (
	simDefaultFamilies = slices.Clone(sim.Families)
	simDefaultNodes    = []int{10, 20, 40}
)

const simLong = `Runs whole qkms networks in this process, one after the other, and measures each beside
its bounds, in the terms of the published campaign of the Rust KMS dkms (docs/performance.md,
"Scale campaign (qkms sim)"): served/offered, p50/p99 latency, fibre utilisation, Jain's index.

Networks: every family of --families at every N of --nodes (generated, deterministic by
--seed), every built-in topology named in --families (cmd/qkms/topologies, e.g. ring5,
metro-mesh-9, cn-beijing-shanghai-backbone) and every --topology FILE, once each.
  star    hub n1, N−1 leaves             ring    the cycle C_N
  bridge  two cycles of N/2 joined by the single link (1, N/2+1)
  mesh    r×c four-neighbour grid, as square as N allows (10 = 2×5, 100 = 10×10)
  rgg     N uniform points on a square of side 30·√(πN/4) km, a link if ≤ 30 km, components
          joined by their closest cross pair; each link at its own length
  random  random spanning tree plus random links up to max(N−1, 3N/2), connected
Links run at dkms's model R₀·10^(−αd/10), R₀ = 2000 keys of 256 bits/s, α = 0.2 dB/km,
d = 5 km (406.7 kbit/s) except in rgg, times --scale (the default 0.25 keeps a 2-core
machine below its own ceiling; ratios do not depend on it). One SAE per generated node.

Per network: --pairs ordered SAE pairs (seeded; the first a neighbour pair, the others
uniform, so most are relayed), each set up with a first request, then
  paced      each pair offered half its share bound: the bottleneck over its widest
             single path (sdn.WidestPath) of rate / pairs crossing the hop; --warmup, then
             a --duration window;
  saturated  --clients closed-loop clients per pair, enc_keys back to back (100 ms pause
             after a refusal); --warmup (drains the stock), then a --duration window.
Every key enc_keys delivers is fetched by dec_keys at the slave's node and compared byte for
byte (mismatched and missing must be 0). The network routes as deployed (single widest
path); each pair records its widest-path and max-flow bounds (JSON "bound").

Columns: served/offered (paced), enc_keys p50/p99; saturated keys/s and /Σshare (Σ delivered
/ Σ share bound), util = Σ key material taken (QUICKS EXKR, mean of both ends) / Σ nominal
rate over every link (dkms's Σtaken/Σcap), util routes = the same over the pairs' route
links, Jain of keys served per pair, worst pair / uniform share.

Reproduce a row: the table of docs/performance.md is the default campaign, run as
  qkms sim --dir /dev/shm --json sim.json --svg sim.svg
(the key stores on a tmpfs), and any one row of it is the same flags with that row's family
and N, e.g. the row ring-20:
  qkms sim --dir /dev/shm --families ring --nodes 20
The topology and the pairs depend only on --seed, the family and N, so a row run alone
loads the same pairs over the same links; the measured figures depend on the machine (run
nothing else beside it), the ratio columns far less than the absolute ones.
  --quick                       star and ring at N = 5 in about 30 s
  --families ring5,metro-mesh-9 the built-in topologies instead of generated ones
  --nodes 10,20,…,100           dkms's sizes (N = 100 needs minutes per network here)`

func simCmd() *cobra.Command {
	var o simOptions
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Scale campaign: star, ring, bridge, mesh, random geometric and random networks of N nodes under a paced and a saturating load, every key checked at both ends",
		Long:  simLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if o.quick {
				if !f.Changed("families") {
					o.families = []string{"star", "ring"}
				}
				if !f.Changed("nodes") {
					o.nodes = []int{5}
				}
				if !f.Changed("pairs") {
					o.pairs = 4
				}
				if !f.Changed("warmup") {
					o.warmup = time.Second
				}
				if !f.Changed("duration") {
					o.duration = 3 * time.Second
				}
			}
			return runSim(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.families, "families", simDefaultFamilies, "generated families (star, ring, bridge, mesh, rgg, random) and built-in topologies (ring5, metro-mesh-9, …; run once each)")
	f.IntSliceVar(&o.nodes, "nodes", simDefaultNodes, "N of every generated family")
	f.StringSliceVar(&o.topologies, "topology", nil, "extra topology file(s), run once each")
	f.Int64Var(&o.seed, "seed", 42, "seed of the random families and of the pair choice")
	f.IntVar(&o.pairs, "pairs", 10, "ordered SAE pairs per network (0: all)")
	f.DurationVar(&o.duration, "duration", 8*time.Second, "measured window of each load")
	f.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up before each window, same load")
	f.Float64Var(&o.scale, "scale", 0.25, "multiply every link rate by this")
	f.IntVar(&o.number, "number", 8, "keys per enc_keys request (dkms: 1; more keeps the closed loop from measuring the clients' round trips)")
	f.IntVar(&o.clients, "clients", 2, "closed-loop clients per pair")
	f.BoolVar(&o.quick, "quick", false, "a small fast run: star and ring, N = 5, 4 pairs, 1 s warm-up, 3 s windows (flags given explicitly still apply)")
	f.StringVar(&o.jsonFile, "json", "", "write the report as JSON to this file")
	f.StringVar(&o.svgFile, "svg", "", "write an SVG chart (delivered rate per pair against its max-flow bound) to this file")
	f.StringVar(&o.dir, "dir", "", "make the networks' directories (key stores included) under this directory (default: the system's temporary directory; a tmpfs such as /dev/shm takes the disk out of the measurement)")
	f.BoolVar(&o.keep, "keep", false, "keep the networks' directories (configs, qkms.log)")
	return cmd
}

// simNetworks resolves the families, sizes and files into networks.
func simNetworks(o simOptions) ([]sim.Network, error) {
	var nws []sim.Network
	for _, fam := range o.families {
		fam = strings.TrimSpace(fam)
		if _, ok := sim.MinNodes[fam]; ok {
			for _, n := range o.nodes {
				t, err := sim.Generate(fam, n, o.seed)
				if err != nil {
					return nil, err
				}
				nws = append(nws, sim.Network{Family: fam, N: n, Topology: t})
			}
			continue
		}
		raw, err := builtinTopologies.ReadFile("topologies/" + strings.TrimSuffix(fam, ".json") + ".json")
		if err != nil {
			return nil, fmt.Errorf("--families: %q is neither a family (%s) nor a built-in topology", fam, strings.Join(sim.Families, ", "))
		}
		t, err := topology.Parse(raw)
		if err != nil {
			return nil, err
		}
		nws = append(nws, sim.Network{Family: "builtin", Topology: t})
	}
	for _, p := range o.topologies {
		t, err := topology.Load(p)
		if err != nil {
			return nil, err
		}
		nws = append(nws, sim.Network{Family: "file", Topology: t})
	}
	if len(nws) == 0 {
		return nil, fmt.Errorf("no network to run")
	}
	return nws, nil
}

func runSim(ctx context.Context, out, progress io.Writer, o simOptions) error {
	nws, err := simNetworks(o)
	if err != nil {
		return err
	}
	start := time.Now()
	r, err := sim.Run(ctx, sim.Options{Networks: nws, Seed: o.seed, Pairs: o.pairs, Warmup: o.warmup, Duration: o.duration,
		Scale: o.scale, Number: o.number, Clients: o.clients, Progress: progress, Dir: o.dir, Keep: o.keep})
	if r != nil && len(r.Networks) > 0 {
		if werr := writeSimReport(out, r, o); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "sim: %d networks in %v\n", len(r.Networks), time.Since(start).Round(time.Second))
	for _, n := range r.Networks {
		if n.Mismatches > 0 || n.Missing > 0 {
			return fmt.Errorf("%s: %d keys mismatched, %d missing at the slave's node", n.Name, n.Mismatches, n.Missing)
		}
	}
	return nil
}

func writeSimReport(out io.Writer, r *sim.Report, o simOptions) error {
	if err := r.WriteTable(out); err != nil {
		return err
	}
	write := func(path string, f func(io.Writer) error) error {
		if path == "" {
			return nil
		}
		w, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := f(w); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	}
	if err := write(o.jsonFile, r.WriteJSON); err != nil {
		return err
	}
	return write(o.svgFile, r.WriteSVG)
}
