package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/device/pushproto"
	"github.com/qkms/qkms/internal/qkdsim"
	"github.com/qkms/qkms/internal/telemetry"
)

func qkdSimCmd() *cobra.Command {
	var rate float64
	var block int
	var listenA, listenB, transport, addrFile, ksid string
	cmd := &cobra.Command{
		Use:   "qkd-sim --rate BPS --listen-a ADDR --listen-b ADDR",
		Short: "Simulate one QKD link pair serving both KMSes through ETSI 004 push mode over CoAP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := telemetry.NewLogger(os.Stderr, slog.LevelInfo, "json")
			opts := qkdsim.Options{Rate: rate, BlockSize: block, Logger: log}
			if ksid != "" {
				id, err := pushproto.ParseKeyStreamID(ksid)
				if err != nil {
					return err
				}
				opts.KeyStreamID = id
			}
			sim, err := qkdsim.NewLink(opts)
			if err != nil {
				return err
			}
			defer sim.Shutdown()
			addrs := map[string]string{}
			for name, addr := range map[string]string{"a": listenA, "b": listenB} {
				bound, err := serveEnd(sim.End(name), transport, addr)
				if err != nil {
					return err
				}
				addrs[name] = bound
			}
			if addrFile != "" {
				b, _ := json.Marshal(addrs)
				if err := os.WriteFile(addrFile, b, 0o600); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "qkd-sim: end a %s, end b %s (%s), %.0f bit/s, %d-byte blocks\n", addrs["a"], addrs["b"], transport, rate, sim.BlockSize())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return sim.Run(ctx)
		},
	}
	cmd.Flags().Float64Var(&rate, "rate", 50000, "secret key rate, bit/s")
	cmd.Flags().IntVar(&block, "block-size", 2048, "key block size, bytes")
	cmd.Flags().StringVar(&listenA, "listen-a", "127.0.0.1:0", "CoAP listen address of end a")
	cmd.Flags().StringVar(&listenB, "listen-b", "127.0.0.1:0", "CoAP listen address of end b")
	cmd.Flags().StringVar(&transport, "transport", "tcp", "CoAP transport: tcp or udp")
	cmd.Flags().StringVar(&addrFile, "addr-file", "", "write the bound addresses as JSON {\"a\":..., \"b\":...} to this file")
	cmd.Flags().StringVar(&ksid, "key-stream-id", "", "predefined key stream ID (UUID)")
	return cmd
}

func serveEnd(e *qkdsim.End, transport, addr string) (string, error) {
	switch transport {
	case "tcp":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", err
		}
		go func() { _ = e.ServeTCP(ln) }()
		return ln.Addr().String(), nil
	case "udp":
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return "", err
		}
		pc, err := net.ListenUDP("udp", ua)
		if err != nil {
			return "", err
		}
		go func() { _ = e.ServeUDP(pc) }()
		return pc.LocalAddr().String(), nil
	}
	return "", fmt.Errorf("transport %q: want tcp or udp", transport)
}
