package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCampaignEndToEnd runs a tiny campaign, two real networks in this
// process, and checks what it measured, not how fast: keys were delivered
// under both loads, every key matched at both ends, and the JSON holds
// one row per network with its pairs.
func TestCampaignEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two whole networks (about 30 s)")
	}
	var nws []Network
	for _, fn := range []struct {
		f string
		n int
	}{{"star", 4}, {"ring", 5}} {
		g, err := Generate(fn.f, fn.n, 42)
		if err != nil {
			t.Fatal(err)
		}
		nws = append(nws, Network{Family: fn.f, N: fn.n, Topology: g})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	r, err := Run(ctx, Options{Networks: nws, Seed: 42, Pairs: 3, Warmup: time.Second, Duration: 2 * time.Second,
		Scale: 0.1, Progress: &progress, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Networks) != 2 || back.Networks[0].Name != "star-4" || back.Networks[1].Name != "ring-5" {
		t.Fatalf("rows: %+v", back.Networks)
	}
	for _, n := range back.Networks {
		if len(n.Pairs) != 3 {
			t.Errorf("%s: %d pairs, want 3", n.Name, len(n.Pairs))
		}
		if n.Mismatches != 0 || n.Missing != 0 {
			t.Errorf("%s: %d keys mismatched, %d missing", n.Name, n.Mismatches, n.Missing)
		}
		if n.Saturated.ServedKeys <= 0 || n.Paced.ServedKeys <= 0 || n.Paced.OfferedKeys <= 0 {
			t.Errorf("%s: served %d keys saturated, %d of %d offered paced", n.Name, n.Saturated.ServedKeys, n.Paced.ServedKeys, n.Paced.OfferedKeys)
		}
		if n.RoundTrips <= 0 || n.KeysCompared < n.Saturated.ServedKeys+n.Paced.ServedKeys {
			t.Errorf("%s: %d round trips, %d keys compared", n.Name, n.RoundTrips, n.KeysCompared)
		}
		for _, p := range n.Pairs {
			if p.Bound != BoundWidestPath || p.MaxFlowBps < p.WidestBps || p.WidestBps <= 0 || p.RouteHops < 1 {
				t.Errorf("%s %s→%s: bound %q, max-flow %v, widest %v, %d hops", n.Name, p.Master, p.Slave, p.Bound, p.MaxFlowBps, p.WidestBps, p.RouteHops)
			}
		}
		if n.Saturated.JainKeys <= 0 || n.Saturated.JainKeys > 1 {
			t.Errorf("%s: Jain %v", n.Name, n.Saturated.JainKeys)
		}
	}
	if got := strings.Count(progress.String(), "saturated:"); got != 2 {
		t.Errorf("progress has %d saturated lines:\n%s", got, progress.String())
	}
}
