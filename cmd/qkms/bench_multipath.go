package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/bench"
	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sdn"
	"github.com/qkms/qkms/internal/topology"
)

// multipathCase is one pair of a topology measured by `qkms bench relay
// --only multipath`.
type multipathCase struct {
	file          string // under topologies/
	scale         float64
	master, slave qkd.SAEID
}

// multipathRow is one measured pair and mode.
type multipathRow struct {
	c                     multipathCase
	mode                  string
	bits, maxFlow, widest float64 // bit/s
	// cutSKR is what the min-cut's links produced over the window and
	// cutTaken what was taken from them (keys and relay pads: QUICKS
	// EXKR), bit/s; cutTaken/cutSKR is how much of the cut the pair used,
	// whatever stock the links held before.
	cutSKR, cutTaken float64
	paths            int
	chk              *bench.Checked
}

// multipathModes are measured side by side, each on its own network (the
// node setting keys.multipath), in this order.
var multipathModes = []string{config.MultipathOff, config.MultipathSpread, config.MultipathSplit}

// benchMultipath measures, for ring5's A→C and the metro mesh's pairs
// across its min-cut, the rate a relayed pair gets with one route, with
// keys spread over the paths of a max-flow, and with every key split over
// two node-disjoint routes, each against the pair's max-flow and widest
// single route at the links' nominal rates (the bounds routing knows).
func benchMultipath(ctx context.Context, out io.Writer, o relayBenchOptions) error {
	cases := []multipathCase{
		{file: "ring5.json", scale: o.ringScale, master: "SAE_A1", slave: "SAE_C1"},
		{file: "metro-mesh-9.json", scale: o.meshScale, master: "SAE_S2_1", slave: "SAE_S4_1"},
		{file: "metro-mesh-9.json", scale: o.meshScale, master: "SAE_S4_1", slave: "SAE_S6_1"},
	}
	var rows []multipathRow
	// A fresh network for every pair and mode: links store what they
	// produce until a pair draws on them, and a pair measured later would
	// spend what its links stored meanwhile.
	for _, mode := range o.modes {
		if !slices.Contains(multipathModes, mode) {
			return fmt.Errorf("--modes: unknown mode %q (off, spread, split)", mode)
		}
		for _, c := range cases {
			if len(o.mpPairs) > 0 && !slices.Contains(o.mpPairs, string(c.master)) {
				continue
			}
			raw, err := builtinTopologies.ReadFile("topologies/" + c.file)
			if err != nil {
				return err
			}
			t, err := topology.Parse(raw)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\n== multipath: %s %s→%s, keys.multipath %s ==\n", t.Name, c.master, c.slave, mode)
			rn, err := upRelayNet(ctx, out, t, c.scale, o.keepDir, func(cfg *config.Config) {
				cfg.Keys.Prereserve = 0
				cfg.Keys.RelayAhead = config.Duration(o.ahead)
				cfg.Keys.Multipath = mode
			})
			if err != nil {
				return err
			}
			r, err := multipathPair(ctx, out, rn, o, c, t)
			rn.close()
			if err != nil {
				return err
			}
			r.mode = mode
			rows = append(rows, r)
		}
	}
	fmt.Fprintf(out, "\n== multipath summary (%v windows, %d clients × enc_keys number=%d size=%d, every key compared at both ends) ==\n",
		o.duration, o.clients, o.number, o.size)
	fmt.Fprintf(out, "  %-32s %-7s %5s %10s %10s %10s %10s %8s %8s %8s %11s\n", "pair", "mode", "paths", "delivered", "max-flow", "widest", "cut SKR", "/maxflow", "/widest", "cut use", "mismatch")
	for _, r := range rows {
		fmt.Fprintf(out, "  %-32s %-7s %5d %10.0f %10.0f %10.0f %10.0f %8.2f %8.2f %8.2f %5d/%-5d\n",
			fmt.Sprintf("%s %s→%s", r.c.file[:len(r.c.file)-5], r.c.master, r.c.slave), r.mode, r.paths, r.bits, r.maxFlow, r.widest, r.cutSKR,
			r.bits/r.maxFlow, r.bits/r.widest, r.cutTaken/r.cutSKR, r.chk.Mismatches.Load(), r.chk.Missing.Load())
	}
	fmt.Fprintln(out, "  (cut SKR: what the links of the pair's min-cut produced over the window; cut use: the share of it taken for keys and")
	fmt.Fprintln(out, "   relay pads (QUICKS EXKR at both ends) — stock the links held before the window does not count)")
	fmt.Fprintln(out, "  (bit/s at the links' nominal rates × scale; split delivers at most the narrower of its two routes:")
	fmt.Fprintln(out, "   a key hidden from every single node costs its length on both — docs/relay-design.md \"Multipath relay\")")
	return nil
}

// multipathPair loads one pair of a running network and returns its row.
func multipathPair(ctx context.Context, out io.Writer, rn *relayNet, o relayBenchOptions, c multipathCase, t *topology.Topology) (multipathRow, error) {
	var r multipathRow
	r.c, r.chk = c, &bench.Checked{}
	from, _ := t.NodeOf(c.master)
	to, _ := t.NodeOf(c.slave)
	mf, err := sdn.MaxFlow(t, from, to)
	if err != nil {
		return r, err
	}
	wp, err := sdn.WidestPath(t, from, to)
	if err != nil {
		return r, err
	}
	r.maxFlow, r.widest = mf*c.scale, wp.Capacity*c.scale
	if err := rn.firstKeys(ctx, c.master, c.slave, 1, o.size); err != nil {
		return r, err
	}
	paths, _, _ := rn.n.Paths(c.master, c.slave)
	r.paths = len(paths)
	fmt.Fprintf(out, "  pair %s→%s: max-flow %.0f bit/s, widest route %.0f bit/s; routes %v\n", c.master, c.slave, r.maxFlow, r.widest, paths)
	dec := rn.urls[to].ETSI014URL + "/api/v1/keys/" + string(c.master) + "/dec_keys"
	do := bench.EncDec(rn.saes[c.master], rn.encURL(c.master, c.slave, o.number, o.size), rn.saes[c.slave], dec, r.chk)
	bench.DriveKeys(ctx, o.clients, o.warmup, 20*time.Millisecond, do)
	from0 := time.Now()
	d := bench.DriveKeys(ctx, o.clients, o.duration, 20*time.Millisecond, do)
	r.bits = float64(d.Keys*o.size) / d.Elapsed.Seconds()
	waitEntries(from0.Add(d.Elapsed))
	cut, err := sdn.MinCut(t, from, to)
	if err != nil {
		return r, err
	}
	for _, l := range cut {
		w, err := rn.measure(ctx, l, l.A, c.scale, from0, from0.Add(d.Elapsed))
		if err != nil {
			return r, err
		}
		r.cutSKR += 8 * w.skr()
		r.cutTaken += 8 * (w.src.EXKR + w.dst.EXKR) // each end takes pads from its own half
	}
	fmt.Fprintf(out, "  delivered %.0f bit/s over %.1fs (%.2f of the max-flow, %.2f of the widest route); the min-cut's %d links produced %.0f bit/s, %.2f of it taken; %d requests failed; %d keys compared, %d mismatched, %d missing\n",
		r.bits, d.Elapsed.Seconds(), r.bits/r.maxFlow, r.bits/r.widest, len(cut), r.cutSKR, r.cutTaken/r.cutSKR, d.Errors, r.chk.Keys.Load(), r.chk.Mismatches.Load(), r.chk.Missing.Load())
	return r, nil
}
