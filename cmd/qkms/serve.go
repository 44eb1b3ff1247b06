package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/node"
	"github.com/qkms/qkms/internal/telemetry"
)

func serveCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config node.yaml",
		Short: "Run one KMS node (SIGUSR1 zeroises it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			log := telemetry.NewLogger(os.Stderr, cfg.Log.SlogLevel(), cfg.Log.Format)
			log.Info("configuration", "config", cfg.Sanitized())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := node.New(ctx, node.Options{Config: cfg, Logger: log, Version: version})
			if err != nil {
				return err
			}
			zero := make(chan os.Signal, 1)
			signal.Notify(zero, syscall.SIGUSR1)
			defer signal.Stop(zero)
			go func() {
				for range zero {
					log.Warn("SIGUSR1: zeroising")
					if err := n.Zeroize(context.Background()); err != nil {
						log.Error("zeroisation failed", "err", err)
					}
				}
			}()
			return n.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "node configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func zeroizeCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "zeroize --config node.yaml",
		Short: "Destroy a stopped node's key store and key-encryption keys",
		Long: "Destroys all key material of a node that is not running: the key-encryption key file is overwritten\n" +
			"and removed, then the database files. For a running node send SIGUSR1 or POST /admin/zeroize\n" +
			"with the operator certificate.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if err := zeroizeFiles(cfg.Store.Path, cfg.Store.KEKFile); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "zeroised: key store and key-encryption keys destroyed")
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "node configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
