package e2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sae"
	"github.com/qkms/qkms/internal/telemetry"
)

// linkMACs returns the scheme each node's links started with, from the
// links' "link MAC" log lines (node ID → mac).
func linkMACs(t *testing.T, logs string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			Peer string `json:"peer"`
			MAC  string `json:"mac"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "link MAC" {
			continue
		}
		out["end facing "+rec.Peer] = rec.MAC
	}
	return out
}

// TestWegmanCarterLine2 runs line2 with links[].mac: wegman_carter at both
// ends (short epochs, so that hash keys change during the test) and gets
// identical keys at both ends through ETSI 014, in both directions.
func TestWegmanCarterLine2(t *testing.T) {
	var logs syncBuffer
	log := telemetry.NewLogger(&logs, slog.LevelInfo, "json")
	n := startNet(t, "line2.json", log, func(c *config.Config) {
		for i := range c.Links {
			c.Links[i].MAC = config.MACWegmanCarter
			c.Links[i].MACEpoch = 64
		}
	})
	macs := linkMACs(t, logs.String())
	if len(macs) != 2 {
		t.Fatalf("link MAC log lines: %v, want one per end of A-B", macs)
	}
	for end, mac := range macs {
		if mac != config.MACWegmanCarter {
			t.Fatalf("link at the %s started with mac %q although configured %q", end, mac, config.MACWegmanCarter)
		}
	}
	info := n.Info
	ctx := context.Background()
	for _, pair := range [][2]qkd.SAEID{{"SAE_A1", "SAE_B1"}, {"SAE_B1", "SAE_A1"}} {
		m, s := saeOf(info, pair[0]), saeOf(info, pair[1])
		mc, err := sae.New(nodeOf(info, m.Node).ETSI014URL, info.CA, m.Cert, m.Key)
		if err != nil {
			t.Fatal(err)
		}
		defer mc.Close()
		sc, err := sae.New(nodeOf(info, s.Node).ETSI014URL, info.CA, s.Cert, s.Key)
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		for round := range 4 {
			keys, err := mc.EncKeys(ctx, string(s.ID), 8, 256)
			if err != nil {
				t.Fatalf("%s→%s round %d: enc_keys: %v", m.ID, s.ID, round, err)
			}
			ids := make([]string, len(keys))
			for i, k := range keys {
				ids[i] = k.ID
			}
			got, err := sc.DecKeys(ctx, string(m.ID), ids)
			if err != nil {
				t.Fatalf("%s→%s round %d: dec_keys: %v", m.ID, s.ID, round, err)
			}
			if len(got) != len(keys) {
				t.Fatalf("dec_keys returned %d keys, want %d", len(got), len(keys))
			}
			for i := range keys {
				if got[i].ID != keys[i].ID || !got[i].Key.Equal(keys[i].Key) || keys[i].Key.Len() != 32 {
					t.Fatalf("%s→%s round %d: key %s differs between the ends", m.ID, s.ID, round, keys[i].ID)
				}
			}
		}
	}
	if l := logs.String(); strings.Contains(l, "ITS tag") || strings.Contains(l, "another ITS MAC scheme") || strings.Contains(l, "failed authentication") {
		t.Errorf("a message failed authentication on an honest network:\n%s", l)
	}
}
