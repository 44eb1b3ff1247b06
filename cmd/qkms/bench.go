package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/bench"
	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/pki"
)

func benchCmd() *cobra.Command {
	var d time.Duration
	var clients []int
	var runs int
	var scale float64
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure ETSI 014 enc_keys on a local two-node network beside a bare TLS handler, in the same run",
		Long: "Starts the built-in two-node network (links scaled up so that key supply is not the limit), fills the\n" +
			"ready pool, then alternates loads against a bare Go TLS handler that returns one random 32-byte key\n" +
			"(the baseline of docs/performance.md) and against enc_keys, and prints medians and their ratios.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := os.MkdirTemp("", "qkms-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			return runBench(cmd.Context(), cmd.OutOrStdout(), dir, d, clients, runs, scale)
		},
	}
	cmd.Flags().DurationVar(&d, "duration", 3*time.Second, "length of each load")
	cmd.Flags().IntSliceVar(&clients, "clients", []int{1, 8}, "concurrent clients (keep-alive connections)")
	cmd.Flags().IntVar(&runs, "runs", 3, "alternating runs per measurement (medians are reported)")
	cmd.Flags().Float64Var(&scale, "scale", 400, "multiply the link rate (50 kbit/s in line2) by this")
	cmd.AddCommand(benchRelayCmd(), benchPairCmd(), benchIngestCmd(), benchScaleCmd())
	return cmd
}

func runBench(ctx context.Context, out io.Writer, dir string, d time.Duration, clients []int, runs int, scale float64) error {
	t, logf, log, err := builtin("line2.json", dir, "warn")
	if err != nil {
		return err
	}
	defer logf.Close()
	n, err := netsim.Up(ctx, netsim.Options{Topology: t, Dir: dir, Logger: log, Scale: scale,
		Tune: func(c *config.Config) { c.Keys.Prereserve = 12000; c.Keys.MaxKeyCount = 1 << 30 }})
	if err != nil {
		return err
	}
	defer n.Close()
	info := n.Info
	a := info.Nodes[0]
	pkiDir := filepath.Dir(info.CA)
	srvTLS, err := pki.ServerTLSConfig(info.CA, filepath.Join(pkiDir, string(a.KMEID)+".pem"), filepath.Join(pkiDir, string(a.KMEID)+"-key.pem"))
	if err != nil {
		return err
	}
	bare, err := bench.StartBare(srvTLS)
	if err != nil {
		return err
	}
	defer bare.Close()
	master, slave := info.SAEs[0], info.SAEs[1]
	cliTLS, err := pki.ClientTLSConfig(info.CA, master.Cert, master.Key, "")
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cliTLS, MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
	enc := a.ETSI014URL + "/api/v1/keys/" + string(slave.ID) + "/enc_keys"
	fmt.Fprintf(out, "qkms bench: %s, link rate ×%.0f, %v per load, %d alternating runs, medians\n", t.Name, scale, d, runs)
	status := a.ETSI014URL + "/api/v1/keys/" + string(slave.ID) + "/status"
	fmt.Fprintln(out, "filling the ready pool…")
	waitPair(ctx, c, status, 9000)
	for _, k := range clients {
		b := medianOf(runs, func() bench.Result {
			return bench.Load(ctx, fmt.Sprintf("bare TLS, %d clients", k), k, d, 0, bench.GetOK(c, bare.URL))
		})
		e := medianOf(runs, func() bench.Result {
			return bench.Load(ctx, fmt.Sprintf("enc_keys, %d clients", k), k, d, 0, bench.GetOK(c, enc))
		})
		fmt.Fprintln(out, b)
		fmt.Fprintln(out, e)
		fmt.Fprintf(out, "  ratio enc_keys/bare: throughput %.2f (target ≥ 0.8), p99 %.2f (target ≤ 2)\n",
			e.PerSecond()/b.PerSecond(), float64(e.P99)/float64(b.P99))
	}
	// number=128 against number=1, each from a full pool: the pool is
	// refilled before each, and each load stops before it could empty it
	// (so that neither measures the restocking of the pool). One request
	// of the kind first, and a second to settle: the node sizes the pair's
	// in-memory pool by the requests it sees and refills it in the
	// background (the first request for 128 keys reads them from the
	// store).
	// The pool is keys.prereserve (12000) full; each load takes at most
	// half of 9000 keys, so restocking (below half of prereserve) does
	// not start during it either.
	const poolKeys, fullPool = 9000, 11000
	warm := func(url string) {
		if err := bench.GetOK(c, url)(ctx); err != nil {
			fmt.Fprintf(out, "  warm-up request failed: %v\n", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		waitPair(ctx, c, status, fullPool)
	}
	warm(enc)
	single := bench.Load(ctx, "enc_keys 1×256, 1 client", 1, d, poolKeys/2, bench.GetOK(c, enc))
	many128 := enc + "?number=128&size=256"
	warm(many128)
	many := bench.Load(ctx, "enc_keys 128×256, 1 client", 1, d, poolKeys/2/128, bench.GetOK(c, many128))
	fmt.Fprintln(out, single)
	fmt.Fprintln(out, many)
	fmt.Fprintf(out, "  key bytes/s from a full pool, 128 keys per request vs 1: %.1f× (target ≥ 50×); at the median request: %.1f×\n",
		many.PerSecond()*128/single.PerSecond(), 128*float64(single.P50)/float64(max(many.P50, 1)))
	return nil
}

// medianOf runs f n times and returns the run with the median throughput.
func medianOf(n int, f func() bench.Result) bench.Result {
	rs := make([]bench.Result, n)
	for i := range rs {
		rs[i] = f()
	}
	slices.SortFunc(rs, func(a, b bench.Result) int {
		switch {
		case a.PerSecond() < b.PerSecond():
			return -1
		case a.PerSecond() > b.PerSecond():
			return 1
		}
		return 0
	})
	return rs[n/2]
}

// waitPair waits until the pair of statusURL (ETSI 014 Get status) holds
// at least want keys (stored_key_count: the keys the caller may take; the
// node's qkms_keys gauge also counts the reverse pair's stock).
func waitPair(ctx context.Context, c *http.Client, statusURL string, want int) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var st struct {
			Stored int `json:"stored_key_count"`
		}
		if resp, err := c.Get(statusURL); err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && st.Stored >= want {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
