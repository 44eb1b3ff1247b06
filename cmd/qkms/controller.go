package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/httpsx"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/telemetry"
	"github.com/qkms/qkms/internal/topology"
)

func controllerCmd() *cobra.Command {
	var topo, listen, ca, cert, key, operatorCN, level string
	var nodeTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "controller --topology T.json --ca ca.pem --cert controller.pem --key controller-key.pem",
		Short: "Run the network's SDN controller (agents of the nodes report to it and get their relay configuration)",
		Long: "Runs the SDN controller: it keeps the topology, the links' reported performance and the rates it promised,\n" +
			"chooses routes (widest-shortest path on available key rate) when a KMS asks its agent for a key stream\n" +
			"(QUICKS link/registration), configures every KMS on the route through its agent, and reroutes streams\n" +
			"when a link or node fails. Its API (under /sdn/v1) accepts the nodes' KME certificates and the operator's.\n" +
			"Nodes name it in their configuration: sdn.controller_url.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := topology.Load(topo)
			if err != nil {
				return err
			}
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := telemetry.NewLogger(os.Stderr, lv, "json")
			serverTLS, err := pki.ServerTLSConfig(ca, cert, key)
			if err != nil {
				return err
			}
			clientTLS, err := pki.ClientTLSConfig(ca, cert, key, "")
			if err != nil {
				return err
			}
			c, err := controller.New(controller.Options{Topology: t, ClientTLS: clientTLS, OperatorCN: operatorCN,
				Logger: log, NodeTimeout: nodeTimeout})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "controller of %s (%d nodes, %d links) on https://%s%s\n", t.Name, len(t.Nodes), len(t.Links),
				ln.Addr(), controller.BasePath)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); c.Run(ctx) }()
			err = httpsx.NewRunner("controller", c.Handler(), log).Serve(ctx, ln, serverTLS)
			stop()
			wg.Wait()
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&topo, "topology", "", "topology file (JSON: nodes, links, saes)")
	f.StringVar(&listen, "listen", "127.0.0.1:8446", "HTTPS listen address")
	f.StringVar(&ca, "ca", "", "network CA certificate (PEM)")
	f.StringVar(&cert, "cert", "", "controller certificate (PEM; CN must match the nodes' sdn.controller_cn, default \"controller\")")
	f.StringVar(&key, "key", "", "controller private key (PEM)")
	f.StringVar(&operatorCN, "operator-cn", "operator", "CN of the operator's client certificate")
	f.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	f.DurationVar(&nodeTimeout, "node-timeout", controller.DefaultNodeTimeout, "take a node out of the routes when its agent has not reported for this long (keep it well above the agents' heartbeat, 3 s)")
	for _, r := range []string{"topology", "ca", "cert", "key"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}
