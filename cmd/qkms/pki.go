package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/keystore/sqlite"
	"github.com/qkms/qkms/internal/pki"
)

var zeroizeFiles = sqlite.ZeroizeFiles

func pkiCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "pki", Short: "Manage the network's certificates"}
	cmd.AddCommand(pkiInitCmd(), pkiRotatePQCmd(), pkiRevokePQCmd())
	return cmd
}

func pkiInitCmd() *cobra.Command {
	var dir, pqAlg string
	var servers, clients, pqNodes []string
	initCmd := &cobra.Command{
		Use:   "init --dir DIR [--server KME_A ...] [--client SAE_A1 ...] [--pq-node A ...] [--pq-alg ML-DSA-65]",
		Short: "Create (or load) a CA and issue node server, SAE/operator client and node ML-DSA certificates",
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
			if len(pqNodes) == 0 && pqAlg == "" {
				return nil
			}
			return pkiInitPQ(out, dir, pqAlg, pqNodes)
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "pki", "directory of the CA and the issued files")
	initCmd.Flags().StringSliceVar(&servers, "server", nil, "node server certificate to issue (CN = KME ID; SAN localhost, 127.0.0.1)")
	initCmd.Flags().StringSliceVar(&clients, "client", nil, "client certificate to issue (CN = SAE ID or operator)")
	initCmd.Flags().StringSliceVar(&pqNodes, "pq-node", nil, "node ML-DSA key and certificate to issue in DIR/pq (subject = node ID, e.g. A; not the KME ID)")
	initCmd.Flags().StringVar(&pqAlg, "pq-alg", "", "ML-DSA parameter set of a new PQ CA and of node keys (ML-DSA-44, -65, -87; default ML-DSA-65, or an existing CA's)")
	return initCmd
}

// pkiInitPQ creates or loads the PQ CA and issues the nodes' ML-DSA pairs.
func pkiInitPQ(out io.Writer, dir, alg string, nodes []string) error {
	ca, err := pki.InitPQCA(dir, alg)
	if err != nil {
		return err
	}
	defer ca.Wipe()
	fmt.Fprintln(out, "pq-ca", ca.CertFile(), ca.CRLFile())
	for _, n := range nodes {
		p, err := ca.IssueNode(n, alg)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "pq-node", p.CertFile, p.KeyFile, "serial", p.Serial)
	}
	return nil
}

func pkiRotatePQCmd() *cobra.Command {
	var dir, node, alg string
	c := &cobra.Command{
		Use:   "rotate-pq --dir DIR --node A [--pq-alg ML-DSA-65]",
		Short: "Issue a node a new ML-DSA key and certificate; the old certificate stays valid until revoked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := pki.LoadPQCA(dir, pki.Options{})
			if err != nil {
				return err
			}
			defer ca.Wipe()
			p, err := ca.RotateNode(node, alg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "pq-node", p.CertFile, p.KeyFile, "serial", p.Serial)
			if p.Archived != "" {
				fmt.Fprintln(out, "archived", p.Archived)
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "pki", "PKI directory (the PQ files are in DIR/pq)")
	c.Flags().StringVar(&node, "node", "", "node ID (subject of its ML-DSA certificate)")
	c.Flags().StringVar(&alg, "pq-alg", "", "ML-DSA parameter set of the new key (default: the CA's)")
	_ = c.MarkFlagRequired("node")
	return c
}

func pkiRevokePQCmd() *cobra.Command {
	var dir, node string
	var serial uint64
	c := &cobra.Command{
		Use:   "revoke-pq --dir DIR --node A --serial N",
		Short: "Add a node's ML-DSA certificate to the revocation list DIR/pq/crl.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := pki.LoadPQCA(dir, pki.Options{})
			if err != nil {
				return err
			}
			defer ca.Wipe()
			if err := ca.Revoke(node, serial); err != nil {
				return err
			}
			l, err := ca.RevocationList()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "crl", ca.CRLFile(), "number", l.Number)
			_, _, certFile, _ := pki.PQNodeFiles(dir, node)
			if cur, err := pki.ReadPQCertificate(certFile); err == nil && cur.Serial == serial {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: serial %d is %s's current certificate: issue a new one with qkms pki rotate-pq --dir %s --node %s\n",
					serial, node, dir, node)
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "pki", "PKI directory (the PQ files are in DIR/pq)")
	c.Flags().StringVar(&node, "node", "", "node ID (subject of the certificate)")
	c.Flags().Uint64Var(&serial, "serial", 0, "serial number of the certificate to revoke")
	_ = c.MarkFlagRequired("node")
	_ = c.MarkFlagRequired("serial")
	return c
}
