package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sae"
	"github.com/qkms/qkms/internal/sdn"
)

// TestMultipathRing5 runs ring5 with the multipath policies side by side
// (docs/relay-design.md "Multipath relay"): SAE_A1 takes the default
// (spread), SAE_A2 split, SAE_E1 off. Each pair's keys are identical at
// both ends through ETSI 014; the controller routed A1's stream over
// several paths, A2's over two node-disjoint ones, E1's over one.
func TestMultipathRing5(t *testing.T) {
	n := startNet(t, "ring5.json", nil, func(c *config.Config) {
		for i := range c.SAEs {
			switch c.SAEs[i].ID {
			case "SAE_A2":
				c.SAEs[i].Multipath = config.MultipathSplit
			case "SAE_E1":
				c.SAEs[i].Multipath = config.MultipathOff
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := func(id qkd.SAEID) *sae.Client { return saeClient(t, n.Info, id) }
	for _, tt := range []struct {
		master, slave qkd.SAEID
		mode          string
		minPaths      int
	}{
		{"SAE_A1", "SAE_C1", sdn.MultipathSpread, 2},
		{"SAE_A2", "SAE_C1", sdn.MultipathSplit, 2},
		{"SAE_E1", "SAE_C1", "", 1},
	} {
		t.Run(string(tt.master)+"→"+string(tt.slave), func(t *testing.T) {
			m, s := client(tt.master), client(tt.slave)
			var keys []sae.Key
			waitFor(t, 2*time.Minute, "enc_keys "+string(tt.master)+"→"+string(tt.slave), func() bool {
				var err error
				keys, err = m.EncKeys(ctx, string(tt.slave), 16, 256)
				if err != nil {
					t.Logf("enc_keys: %v", err)
				}
				return err == nil
			})
			ids := make([]string, len(keys))
			for i, k := range keys {
				ids[i] = k.ID
			}
			got, err := s.DecKeys(ctx, string(tt.master), ids)
			if err != nil {
				t.Fatalf("dec_keys: %v", err)
			}
			for i := range keys {
				if !keys[i].Key.Equal(got[i].Key) {
					t.Fatalf("key %s differs between the ends", ids[i])
				}
			}
			paths, mode, ok := n.Paths(tt.master, tt.slave)
			if !ok || mode != tt.mode || len(paths) < tt.minPaths || tt.mode == "" && len(paths) != 1 {
				t.Fatalf("paths %v, mode %q; want mode %q over at least %d", paths, mode, tt.mode, tt.minPaths)
			}
			if tt.mode != sdn.MultipathSplit {
				return
			}
			if len(paths) != 2 {
				t.Fatalf("split over %d paths, want 2", len(paths))
			}
			for _, x := range paths[0][1 : len(paths[0])-1] {
				if slices.Contains(paths[1], x) {
					t.Fatalf("split paths %v share node %s", paths, x)
				}
			}
			// Delivered once: a second dec_keys of the same ID is refused.
			if _, err := s.DecKeys(ctx, string(tt.master), ids[:1]); err == nil {
				t.Fatal("a split key was delivered twice")
			}
		})
	}
}
