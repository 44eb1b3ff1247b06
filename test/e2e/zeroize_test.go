package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/sae"
)

// TestZeroizeByAPI: POST /admin/zeroize is refused to an SAE and accepted
// from the operator certificate; the node then serves no keys, reports
// inactive, and its key-encryption key file is gone.
func TestZeroizeByAPI(t *testing.T) {
	n := startNet(t, "line2.json", nil, nil)
	info := n.Info
	a := nodeOf(info, "A")
	sa := saeOf(info, "SAE_A1")
	saeClient := httpsClient(t, info.CA, sa.Cert, sa.Key)
	op := httpsClient(t, info.CA, info.Operator.Cert, info.Operator.Key)
	if r := do(t, saeClient, "POST", a.ETSI014URL+"/admin/zeroize", ""); r.code != 401 {
		t.Fatalf("zeroize by an SAE = %d %s, want 401", r.code, r.body)
	}
	if r := do(t, saeClient, "GET", a.ETSI014URL+"/api/v1/keys/SAE_B1/status", ""); r.code != 200 {
		t.Fatalf("status before zeroisation = %d", r.code)
	}
	if r := do(t, op, "POST", a.ETSI014URL+"/admin/zeroize", ""); r.code != 200 {
		t.Fatalf("zeroize by the operator = %d %s", r.code, r.body)
	}
	wantError(t, "enc_keys after zeroisation", do(t, saeClient, "GET", a.ETSI014URL+"/api/v1/keys/SAE_B1/enc_keys", ""), 503, "KME is inactive")
	resp, err := http.Get(a.MetricsURL[:len(a.MetricsURL)-len("/metrics")] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("/healthz after zeroisation = %d, want 503", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(a.DataDir, "keys.db.kek")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("KEK file still there after zeroisation: %v", err)
	}
}

// TestZeroizeBySignalAndCommand: SIGUSR1 zeroises a running `qkms serve`;
// `qkms zeroize` destroys a stopped node's store files.
func TestZeroizeBySignalAndCommand(t *testing.T) {
	a, b, _, cl := twoProcesses(t)
	if err := a.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "node A inactive", func() bool {
		_, err := cl["SAE_A1"].EncKeys(context.Background(), "SAE_B1", 1, 256)
		var e *sae.Error
		return errors.As(err, &e) && e.Code == 503
	})
	waitFor(t, 10*time.Second, "KEK file destroyed", func() bool {
		_, err := os.Stat(a.cfg.Store.KEKFile)
		return errors.Is(err, os.ErrNotExist)
	})
	// The peer learned it (post_status): it keeps running but serves no
	// keys that A can no longer deliver.
	waitFor(t, 10*time.Second, "node B refusing keys for its zeroised peer", func() bool {
		_, err := cl["SAE_B1"].EncKeys(context.Background(), "SAE_A1", 1, 256)
		var e *sae.Error
		return errors.As(err, &e) && e.Code == 503
	})
	b.kill9(t)
	out, err := exec.Command(qkmsBinary(t), "zeroize", "--config", b.cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("qkms zeroize: %v\n%s", err, out)
	}
	for _, f := range []string{b.cfg.Store.Path, b.cfg.Store.KEKFile, b.cfg.Store.Path + "-wal"} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after qkms zeroize: %v", f, err)
		}
	}
	// Restarting on the same pre-shared key would reuse one-time MAC keys:
	// the node refuses and says why.
	out, err = exec.Command(qkmsBinary(t), "serve", "--config", b.cfgPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pre-shared key was used before") {
		t.Errorf("qkms serve after zeroisation with the old PSK = %v\n%s", err, out)
	}
}
