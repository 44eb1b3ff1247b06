package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/telemetry"
	"github.com/qkms/qkms/internal/topology"
)

func netCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "net", Short: "Run a whole QKD network on this machine"}
	var topo, dir, transport, logLevel string
	var scale float64
	var hybridOn bool
	var multipath string
	up := &cobra.Command{
		Use:   "up --topology FILE --dir DIR",
		Short: "Start every node and link of a topology; write DIR/network.json when ready; run until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := topology.Load(topo)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logf, log, err := fileLogger(dir, logLevel)
			if err != nil {
				return err
			}
			defer logf.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "starting %s: %d nodes, %d links (logs: %s)\n", t.Name, len(t.Nodes), len(t.Links), logf.Name())
			n, err := netsim.Up(ctx, netsim.Options{Topology: t, Dir: dir, Logger: log, Scale: scale, PeerTransport: transport,
				Hybrid: hybridOn, Tune: func(c *config.Config) { c.Keys.Multipath = multipath }})
			if err != nil {
				return err
			}
			defer n.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "ready: %s\n", filepath.Join(dir, "network.json"))
			err = n.Wait(ctx)
			fmt.Fprintln(cmd.OutOrStdout(), "shutting down")
			return err
		},
	}
	up.Flags().StringVar(&topo, "topology", "", "topology file (JSON: nodes, links, saes)")
	up.Flags().StringVar(&dir, "dir", "", "directory for PKI, configs, data, logs and network.json")
	up.Flags().StringVar(&transport, "peer-transport", "tcp", "KMS↔KMS CoAP transport: tcp or udp")
	up.Flags().Float64Var(&scale, "scale", 1, "multiply every link's secret key rate")
	up.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	up.Flags().StringVar(&multipath, "multipath", config.MultipathSpread, "keys.multipath of every node: spread (keys of a relayed pair over the paths of a max-flow), split (every key XOR-split over two node-disjoint routes) or off (one route); docs/relay-design.md")
	up.Flags().BoolVar(&hybridOn, "hybrid", false, "post-quantum hybrid keys on every node (hybrid.mode: on): relayed keys combine QKD with ML-KEM, forwarding paths signed with ML-DSA")
	_ = up.MarkFlagRequired("topology")
	_ = up.MarkFlagRequired("dir")
	cmd.AddCommand(up)
	return cmd
}

// fileLogger logs JSON (redacted) to DIR/qkms.log.
func fileLogger(dir, level string) (*os.File, *slog.Logger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "qkms.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("log level: %w", err)
	}
	return f, telemetry.NewLogger(io.Writer(f), lv, "json"), nil
}
