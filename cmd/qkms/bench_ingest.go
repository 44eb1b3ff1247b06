package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
	"github.com/qkms/qkms/internal/telemetry"
	"github.com/qkms/qkms/internal/topology"
)

// ingestBenchOptions are the flags of `qkms bench ingest`.
type ingestBenchOptions struct {
	scale    float64
	warmup   time.Duration
	duration time.Duration
	keepDir  bool
	capMiB   int
}

func benchIngestCmd() *cobra.Command {
	var o ingestBenchOptions
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Measure key ingest of one link: blocks the QKD module pushed against blocks confirmed with the peer and stored",
		Long: "Starts the built-in two-node network (line2, link rate × --scale; ×2400 is 120 Mbit/s, above the\n" +
			"published single-link record of 115.8 Mbit/s) with no application load and counts, over a window,\n" +
			"the blocks the simulated QKD module produced against the blocks both KMSes confirmed (new_key_batch)\n" +
			"and stored, and the blocks the modules had to drop because a KMS did not take them in time. The\n" +
			"baseline, measured in the same run, is the CPU time raw XOR + Poly1305 take over the same bytes.\n" +
			"Target (docs/performance.md): ≥ 0.95 of what the module pushed is confirmed and stored.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runIngestBench(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.Float64Var(&o.scale, "scale", 2400, "multiply line2's link rate (50 kbit/s) by this")
	f.DurationVar(&o.warmup, "warmup", 2*time.Second, "time before the window")
	f.IntVar(&o.capMiB, "max-link-material", 4096, "keys.max_link_material of both nodes, MiB (no application takes keys here)")
	f.DurationVar(&o.duration, "duration", 20*time.Second, "measured window")
	f.BoolVar(&o.keepDir, "keep", false, "keep the network's directory (logs, configs)")
	return cmd
}

// ingestCounts are the counters of one link at one instant.
type ingestCounts struct {
	produced, overflowA, overflowB uint64
	receivedA, storedA, droppedA   float64
	receivedB, storedB, confirmedA float64
	confirmedB, discardA, discardB float64
}

func readIngest(n *netsim.Network, l topology.Link) ingestCounts {
	st := n.Sims[l.ID].Stats()
	c := ingestCounts{produced: st.Produced, overflowA: st.A.Overflow, overflowB: st.B.Overflow}
	val := func(id qkd.NodeID, r telemetry.BlockResult) float64 {
		v, _ := n.Nodes[id].Metrics().Value("qkms_link_blocks_total", map[string]string{"link": string(l.ID), "result": string(r)})
		return v
	}
	c.receivedA, c.storedA, c.droppedA = val(l.A, telemetry.BlocksReceived), val(l.A, telemetry.BlocksStored), val(l.A, telemetry.BlocksDropped)
	c.receivedB, c.storedB = val(l.B, telemetry.BlocksReceived), val(l.B, telemetry.BlocksStored)
	c.confirmedA, c.confirmedB = val(l.A, telemetry.BlocksConfirmed), val(l.B, telemetry.BlocksConfirmed)
	c.discardA, c.discardB = val(l.A, telemetry.BlocksDiscarded), val(l.B, telemetry.BlocksDiscarded)
	return c
}

func runIngestBench(ctx context.Context, out io.Writer, o ingestBenchOptions) error {
	raw, err := builtinTopologies.ReadFile("topologies/line2.json")
	if err != nil {
		return err
	}
	t, err := topology.Parse(raw)
	if err != nil {
		return err
	}
	l := t.Links[0]
	rate := l.SKRbps * o.scale
	fmt.Fprintf(out, "qkms bench ingest: line2 ×%g = %.1f Mbit/s, blocks of %d B, %v window after %v\n",
		o.scale, rate/1e6, netsim.BlockSize(rate), o.duration, o.warmup)
	dir, err := os.MkdirTemp("", "qkms-bench-ingest-")
	if err != nil {
		return err
	}
	if !o.keepDir {
		defer os.RemoveAll(dir)
	}
	logf, log, err := fileLogger(dir, "warn")
	if err != nil {
		return err
	}
	defer logf.Close()
	// No application takes keys here: the cap on a link's unused material
	// must not be what stops the ingest within the window.
	n, err := netsim.Up(ctx, netsim.Options{Topology: t, Dir: dir, Logger: log, Scale: o.scale,
		Tune: func(c *config.Config) { c.Keys.MaxLinkMaterial = config.ByteSize(o.capMiB) * config.MiB }})
	if err != nil {
		return err
	}
	defer n.Close()
	time.Sleep(o.warmup)
	c0, t0 := readIngest(n, l), time.Now()
	time.Sleep(o.duration)
	c1, t1 := readIngest(n, l), time.Now()
	secs := t1.Sub(t0).Seconds()
	bs := float64(netsim.BlockSize(rate))
	mbit := func(blocks float64) float64 { return blocks * bs * 8 / secs / 1e6 }
	produced := float64(c1.produced - c0.produced)
	conf := c1.confirmedA - c0.confirmedA
	fmt.Fprintf(out, "  %-46s %10s %10s\n", fmt.Sprintf("over the window (%.1fs)", secs), "blocks", "Mbit/s")
	row := func(name string, v float64) { fmt.Fprintf(out, "  %-46s %10.0f %10.1f\n", name, v, mbit(v)) }
	row("produced by the QKD module (each end)", produced)
	row("received from the module at A / at B", c1.receivedA-c0.receivedA)
	row("", c1.receivedB-c0.receivedB)
	row("stored at A / at B", c1.storedA-c0.storedA)
	row("", c1.storedB-c0.storedB)
	row("dropped at A (max_link_material reached)", c1.droppedA-c0.droppedA)
	row("lost in the module's buffer at A / at B", float64(c1.overflowA-c0.overflowA))
	row("", float64(c1.overflowB-c0.overflowB))
	row("confirmed with the peer (leader A)", conf)
	row("discarded at A (mismatch or lost)", c1.discardA-c0.discardA)
	fmt.Fprintf(out, "  %-46s %10.3f  (target ≥ 0.95)\n", "ratio confirmed / produced", conf/max(produced, 1))
	// Baseline: raw XOR + Poly1305 over the same bytes, on this machine now.
	bytes := int(produced * bs)
	cpu := rawCost(min(bytes, 256<<20))
	if bytes > 256<<20 {
		cpu = cpu * time.Duration(bytes/(256<<20))
	}
	fmt.Fprintf(out, "  baseline: raw XOR + Poly1305 of those %d MB takes %v of one core = %.2f%% of the window\n",
		bytes>>20, cpu.Round(time.Millisecond), 100*cpu.Seconds()/secs)
	return nil
}

// rawCost is the time one core takes to XOR n bytes with a pad and
// Poly1305 them, in 64 KiB pieces.
func rawCost(n int) time.Duration {
	const piece = 64 << 10
	a, b, dst := make([]byte, piece), make([]byte, piece), make([]byte, piece)
	_, _ = rand.Read(a)
	_, _ = rand.Read(b)
	var raw [itsmac.KeySize]byte
	_, _ = rand.Read(raw[:])
	key := secret.MACKey{Bytes: secret.Adopt(raw[:])}
	start := time.Now()
	for done := 0; done < n; done += piece {
		subtle.XORBytes(dst, a, b)
		_, _ = itsmac.Sum(key, dst)
	}
	return time.Since(start)
}
