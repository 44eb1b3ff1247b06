package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/keystore/sqlite"
	"github.com/qkms/qkms/internal/pki"
)

var zeroizeFiles = sqlite.ZeroizeFiles

func pkiCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "pki", Short: "Manage the network's certificates"}
	var dir string
	var servers, clients []string
	initCmd := &cobra.Command{
		Use:   "init --dir DIR [--server KME_A ...] [--client SAE_A1 ...]",
		Short: "Create (or load) a CA and issue node server and SAE/operator client certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := pki.InitCA(dir, pki.Options{})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "ca", ca.CertFile())
			for _, s := range servers {
				p, err := ca.IssueServer(s, nil)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, "server", p.CertFile, p.KeyFile)
			}
			for _, c := range clients {
				p, err := ca.IssueClient(c)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, "client", p.CertFile, p.KeyFile)
			}
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "pki", "directory of the CA and the issued files")
	initCmd.Flags().StringSliceVar(&servers, "server", nil, "node server certificate to issue (CN = KME ID; SAN localhost, 127.0.0.1)")
	initCmd.Flags().StringSliceVar(&clients, "client", nil, "client certificate to issue (CN = SAE ID or operator)")
	cmd.AddCommand(initCmd)
	return cmd
}
