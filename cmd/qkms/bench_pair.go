package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/bench"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// pairBenchOptions are the flags of `qkms bench pair`.
type pairBenchOptions struct {
	scale    float64
	warmup   time.Duration
	duration time.Duration
	clients  int
	number   int
	size     int
	keepDir  bool
}

func benchPairCmd() *cobra.Command {
	var o pairBenchOptions
	cmd := &cobra.Command{
		Use:   "pair",
		Short: "Measure one direction of a neighbour pair, saturated, against the link's SKR − internal use",
		Long: "Starts the built-in two-node network (line2, link rate × --scale), spends the ready pool in a warm-up,\n" +
			"then saturates SAE_A1→SAE_B1 with enc_keys at A and fetches every key again with dec_keys at B,\n" +
			"comparing the bytes. The baseline, over the same window, is the link's ESKR = SKR − IKR (both ends)\n" +
			"from QUICKS link/performance. Target (docs/performance.md): delivered ≥ 0.9 × ESKR, 0 mismatches.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPairBench(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.Float64Var(&o.scale, "scale", 40, "multiply line2's link rate (50 kbit/s) by this")
	f.DurationVar(&o.warmup, "warmup", 20*time.Second, "warm-up under load before the window (spends the stock)")
	f.DurationVar(&o.duration, "duration", 30*time.Second, "measured window under load")
	f.IntVar(&o.clients, "clients", 8, "concurrent clients, each enc_keys at A then dec_keys at B")
	f.IntVar(&o.number, "number", 128, "keys per request")
	f.IntVar(&o.size, "size", 256, "key size, bits")
	f.BoolVar(&o.keepDir, "keep", false, "keep the network's directory (logs, configs)")
	return cmd
}

func runPairBench(ctx context.Context, out io.Writer, o pairBenchOptions) error {
	raw, err := builtinTopologies.ReadFile("topologies/line2.json")
	if err != nil {
		return err
	}
	t, err := topology.Parse(raw)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "qkms bench pair: line2 ×%g, %v window after %v warm-up, %d clients × (enc_keys number=%d size=%d at A, dec_keys at B)\n",
		o.scale, o.duration, o.warmup, o.clients, o.number, o.size)
	rn, err := upRelayNet(ctx, out, t, o.scale, o.keepDir, nil)
	if err != nil {
		return err
	}
	defer rn.close()
	const master, slave = qkd.SAEID("SAE_A1"), qkd.SAEID("SAE_B1")
	if err := rn.firstKeys(ctx, master, slave, 1, o.size); err != nil {
		return err
	}
	var chk bench.Checked
	dec := rn.urls[rn.nodeOf(slave)].ETSI014URL + "/api/v1/keys/" + string(master) + "/dec_keys"
	do := bench.EncDec(rn.saes[master], rn.encURL(master, slave, o.number, o.size), rn.saes[slave], dec, &chk)
	w0 := time.Now()
	bench.DriveKeys(ctx, o.clients, o.warmup, 20*time.Millisecond, do)
	fmt.Fprintf(out, "  warm-up %.1fs\n", time.Since(w0).Seconds())
	from := time.Now()
	d := bench.DriveKeys(ctx, o.clients, o.duration, 20*time.Millisecond, do)
	to := from.Add(d.Elapsed)
	waitEntries(to)
	l := t.Links[0]
	w, err := rn.measure(ctx, l, rn.nodeOf(master), o.scale, from, to)
	if err != nil {
		return err
	}
	if d.FirstError != nil {
		fmt.Fprintf(out, "  first failure: %v\n", d.FirstError)
	}
	bits := float64(d.Keys*o.size) / d.Elapsed.Seconds()
	fmt.Fprintf(out, "  %-44s %12s\n", fmt.Sprintf("over the window (%.1fs)", d.Elapsed.Seconds()), "bit/s")
	fmt.Fprintf(out, "  %-44s %12.0f  (%d requests, %d keys, %d failed)\n", "delivered A→B, checked at both ends", bits, d.Requests, d.Keys, d.Errors)
	fmt.Fprintf(out, "  %-44s %12.0f  (nominal %.0f)\n", "link SKR (mean of both ends)", w.skr()*8, w.nominal)
	fmt.Fprintf(out, "  %-44s %12.0f  (%.2f%% of the SKR)\n", "internal use IKR (both ends)", w.ikr()*8, 100*w.ikrShare())
	fmt.Fprintf(out, "  %-44s %12.2f  (target ≥ 0.9)\n", "ratio delivered / (SKR − IKR)", bits/(w.eskr()*8))
	fmt.Fprintf(out, "  %-44s %12d  keys compared %d, missing at B %d (target 0)\n", "mismatches", chk.Mismatches.Load(), chk.Keys.Load(), chk.Missing.Load())
	if e := chk.FirstMiss.Load(); e != nil {
		fmt.Fprintf(out, "  first dec_keys failure: %v\n", e)
	}
	fmt.Fprintf(out, "  KAV at A %d→%d B over the window\n", w.src.KAVFrom, w.src.KAVTo)
	return nil
}
