package e2e

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sae"
	"github.com/qkms/qkms/internal/telemetry"
)

// TestNoKeyBytesInLogs runs a network with debug logging, delivers keys in
// both directions (also through failures), then searches every log line
// for every delivered key and every pre-shared key in base64 and hex.
func TestNoKeyBytesInLogs(t *testing.T) {
	var logs syncBuffer
	log := telemetry.NewLogger(&logs, slog.LevelDebug, "json")
	n := startNet(t, "line2.json", log, nil)
	info := n.Info
	ctx := context.Background()
	var secrets [][]byte
	for _, pair := range [][2]qkd.SAEID{{"SAE_A1", "SAE_B1"}, {"SAE_B1", "SAE_A1"}} {
		m, s := saeOf(info, pair[0]), saeOf(info, pair[1])
		mc, err := sae.New(nodeOf(info, m.Node).ETSI014URL, info.CA, m.Cert, m.Key)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := sae.New(nodeOf(info, s.Node).ETSI014URL, info.CA, s.Cert, s.Key)
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{256, 512, 1024, 64} {
			keys, err := mc.EncKeys(ctx, string(s.ID), 5, size)
			if err != nil {
				t.Fatalf("enc_keys: %v", err)
			}
			ids := []string{}
			for _, k := range keys {
				ids = append(ids, k.ID)
				secrets = append(secrets, append([]byte(nil), k.Key.Expose()...))
			}
			if _, err := sc.DecKeys(ctx, string(m.ID), ids); err != nil {
				t.Fatalf("dec_keys: %v", err)
			}
			_, _ = sc.DecKeys(ctx, string(m.ID), ids) // fails: logged as an error path
		}
		mc.Close()
		sc.Close()
	}
	psks, _ := filepath.Glob(filepath.Join(n.Info.Nodes[0].DataDir, "..", "..", "..", "psk", "*.psk"))
	for _, p := range psks {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+32 <= len(b); i += 256 {
			secrets = append(secrets, b[i:i+32])
		}
	}
	if len(psks) == 0 {
		t.Fatal("no PSK files found")
	}
	n.Close() // flush everything the nodes log on the way out
	out := logs.String()
	if !strings.Contains(out, `"level":"DEBUG"`) || len(out) < 1000 {
		t.Fatalf("logs look empty (%d bytes): verbose logging is not on", len(out))
	}
	for _, k := range secrets {
		pre := k[:min(12, len(k))]
		for _, form := range []string{
			base64.StdEncoding.EncodeToString(k), base64.RawStdEncoding.EncodeToString(k),
			base64.URLEncoding.EncodeToString(k), hex.EncodeToString(k), strings.ToUpper(hex.EncodeToString(k)),
			base64.StdEncoding.EncodeToString(pre), hex.EncodeToString(pre),
		} {
			if strings.Contains(out, form) {
				t.Fatalf("key material found in the logs (as %q)", form[:8]+"…")
			}
		}
	}
	t.Logf("searched %d bytes of logs for %d secrets", len(out), len(secrets))
}
