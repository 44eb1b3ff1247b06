package main

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sae"
	"github.com/qkms/qkms/internal/sdn"
	"github.com/qkms/qkms/internal/topology"
)

//go:embed topologies/*.json
var builtinTopologies embed.FS

func demoCmd() *cobra.Command {
	var dir string
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the built-in ring5 QKD network: keys between neighbours, relayed over three hops, and rerouted around a cut link",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				d, err := os.MkdirTemp("", "qkms-demo-")
				if err != nil {
					return err
				}
				dir = d
				if !keep {
					defer os.RemoveAll(d)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Minute)
			defer cancel()
			return runDemo(ctx, cmd.OutOrStdout(), dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "working directory (default: a temporary one, removed afterwards)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temporary directory")
	return cmd
}

// builtin loads a built-in topology and opens DIR/qkms.log at level.
func builtin(name, dir, level string) (*topology.Topology, *os.File, *slog.Logger, error) {
	raw, err := builtinTopologies.ReadFile("topologies/" + name)
	if err != nil {
		return nil, nil, nil, err
	}
	t, err := topology.Parse(raw)
	if err != nil {
		return nil, nil, nil, err
	}
	logf, log, err := fileLogger(dir, level)
	if err != nil {
		return nil, nil, nil, err
	}
	return t, logf, log, nil
}

func runDemo(ctx context.Context, out io.Writer, dir string) error {
	t, logf, log, err := builtin("ring5.json", dir, "info")
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(out, "qkms demo: network %q — %d trusted nodes, %d QKD links (%s)\n", t.Name, len(t.Nodes), len(t.Links), t.Description)
	fmt.Fprintf(out, "  working directory %s (logs in qkms.log)\n", dir)
	start := time.Now()
	// SAE_A2's keys are post-quantum hybrid keys (docs/hybrid.md), split
	// over two node-disjoint routes (docs/relay-design.md "Multipath
	// relay"): its own policy. The other pairs take the default, spread.
	hybridSAE := func(c *config.Config) {
		for i := range c.SAEs {
			if c.SAEs[i].ID == "SAE_A2" {
				c.SAEs[i].Hybrid = config.HybridOn
				c.SAEs[i].Multipath = config.MultipathSplit
			}
		}
	}
	n, err := netsim.Up(ctx, netsim.Options{Topology: t, Dir: dir, Logger: log, Tune: hybridSAE})
	if err != nil {
		return err
	}
	defer n.Close()
	fmt.Fprintf(out, "  network ready in %.1fs: links confirmed, keys available\n\n", time.Since(start).Seconds())
	byID := map[qkd.SAEID]netsim.SAEInfo{}
	for _, s := range n.Info.SAEs {
		byID[s.ID] = s
	}
	// Neighbours (one link), then a pair the controller routes over three hops.
	for _, p := range [][2]qkd.SAEID{{"SAE_A1", "SAE_B1"}, {"SAE_B1", "SAE_A1"}, {"SAE_A1", "SAE_D1"}} {
		if err := demoPair(ctx, out, n, byID[p[0]], byID[p[1]], false); err != nil {
			return err
		}
	}
	if err := demoPair(ctx, out, n, byID["SAE_A2"], byID["SAE_C1"], true); err != nil {
		return err
	}
	if err := demoReroute(ctx, out, n, t, byID["SAE_A1"], byID["SAE_D1"]); err != nil {
		return err
	}
	fmt.Fprintln(out, "demo finished: every key arrived identical at both ends and was deleted after delivery")
	return nil
}

// demoReroute cuts the first QKD link of a pair's route and shows the keys
// taking another route.
func demoReroute(ctx context.Context, out io.Writer, n *netsim.Network, t *topology.Topology, master, slave netsim.SAEInfo) error {
	route, ok := n.Route(master.ID, slave.ID)
	if !ok || len(route) < 2 {
		return errors.New("demo: no route to cut")
	}
	uses := func(paths [][]qkd.NodeID) bool { // a path takes the cut hop
		for _, p := range paths {
			for i := 1; i < len(p); i++ {
				if p[i-1] == route[0] && p[i] == route[1] {
					return true
				}
			}
		}
		return false
	}
	var cut qkd.LinkID
	for _, l := range t.LinksBetween(route[0], route[1]) {
		n.Sims[l.ID].Pause(true)
		cut = l.ID
	}
	fmt.Fprintf(out, "cutting QKD link %s (its modules stop producing key); waiting for the controller to reroute…\n", cut)
	deadline := time.Now().Add(time.Minute)
	for {
		if ps, _, ok := n.Paths(master.ID, slave.ID); ok && !uses(ps) {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("demo: the controller did not reroute")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return demoPair(ctx, out, n, master, slave, false)
}

// relayedHow describes the paths of a relayed pair.
func relayedHow(ps [][]qkd.NodeID, mode string) string {
	switch mode {
	case sdn.MultipathSpread:
		return fmt.Sprintf("multipath (spread) over %d routes %v: each key along one of them, one-time pad per hop", len(ps), ps)
	case sdn.MultipathSplit:
		return fmt.Sprintf("multipath (split) over %d node-disjoint routes %v: each key the XOR of one share per route,\n  so no single intermediate node learns it; one-time pad per hop", len(ps), ps)
	}
	return fmt.Sprintf("relayed over %d hops %v, one-time pad per hop", len(ps[0])-1, ps[0])
}

func nodeURL(info netsim.Info, sae netsim.SAEInfo) string {
	for _, nd := range info.Nodes {
		if nd.ID == sae.Node {
			return nd.ETSI014URL
		}
	}
	return ""
}

// demoPair: master fetches 3 keys at its node, slave fetches them by ID at
// its node; both sides' fingerprints are printed and compared. hybrid:
// the request requires post-quantum hybrid keys (qkms_hybrid).
func demoPair(ctx context.Context, out io.Writer, n *netsim.Network, master, slave netsim.SAEInfo, hybrid bool) error {
	info := n.Info
	mc, err := sae.New(nodeURL(info, master), info.CA, master.Cert, master.Key)
	if err != nil {
		return err
	}
	defer mc.Close()
	sc, err := sae.New(nodeURL(info, slave), info.CA, slave.Cert, slave.Key)
	if err != nil {
		return err
	}
	defer sc.Close()
	st, err := mc.Status(ctx, string(slave.ID))
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	enc := mc.EncKeys
	if hybrid {
		enc = mc.EncKeysHybrid
	}
	keys, err := enc(ctx, string(slave.ID), 3, 256)
	if err != nil {
		return fmt.Errorf("enc_keys: %w", err)
	}
	how := "neighbours: keys from their QKD link"
	if ps, mode, ok := n.Paths(master.ID, slave.ID); ok {
		how = relayedHow(ps, mode)
	}
	if hybrid {
		how += ";\n  post-quantum hybrid keys: relayed key combined with an ML-KEM-768 secret of the two end KMSes,\n  every forwarding step signed with ML-DSA-65 and checked against the configured route"
	}
	fmt.Fprintf(out, "%s (at %s) → %s (at %s): key_size %d bits; %s\n",
		master.ID, st.SourceKMEID, slave.ID, st.TargetKMEID, st.KeySize, how)
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	got, err := sc.DecKeys(ctx, string(master.ID), ids)
	if err != nil {
		return fmt.Errorf("dec_keys: %w", err)
	}
	fmt.Fprintf(out, "  %-36s  %-16s  %-16s\n", "key_ID", "master sha256", "slave sha256")
	for i := range keys {
		a, b := fingerprint(keys[i].Key.Expose()), fingerprint(got[i].Key.Expose())
		fmt.Fprintf(out, "  %-36s  %-16s  %-16s\n", keys[i].ID, a, b)
		if got[i].ID != keys[i].ID || !keys[i].Key.Equal(got[i].Key) {
			return errors.New("demo: the two ends got different keys")
		}
		keys[i].Key.Wipe()
		got[i].Key.Wipe()
	}
	if _, err := sc.DecKeys(ctx, string(master.ID), ids[:1]); err == nil {
		return errors.New("demo: a key was delivered twice")
	} else {
		fmt.Fprintf(out, "  asking again for %s: %v\n\n", ids[0], err)
	}
	return nil
}

// fingerprint is the first 8 bytes of SHA-256, in hex: it identifies a key
// without revealing it.
func fingerprint(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}
