package node

import (
	"testing"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/qkd"
)

// TestHybridPolicy: an application's saes[].hybrid wins over hybrid.mode;
// the master's setting first, then any slave's "on".
func TestHybridPolicy(t *testing.T) {
	saes := []config.SAE{{ID: "ON", Hybrid: config.HybridOn}, {ID: "OFF", Hybrid: config.HybridOff}, {ID: "X"}, {ID: "Y"}}
	for _, tt := range []struct {
		mode   string
		master qkd.SAEID
		slaves []qkd.SAEID
		want   bool
	}{
		{config.HybridOff, "X", []qkd.SAEID{"Y"}, false},
		{config.HybridOn, "X", []qkd.SAEID{"Y"}, true},
		{config.HybridOff, "ON", []qkd.SAEID{"Y"}, true},
		{config.HybridOff, "X", []qkd.SAEID{"Y", "ON"}, true},
		{config.HybridOn, "OFF", []qkd.SAEID{"Y"}, false},
		{config.HybridOn, "OFF", []qkd.SAEID{"ON"}, true},
		{config.HybridOn, "X", []qkd.SAEID{"OFF"}, true}, // a slave's "off" does not override the master's node
	} {
		c := &config.Config{SAEs: saes, Hybrid: config.Hybrid{Mode: tt.mode}}
		if got := newHybridPolicy(c).wants(tt.master, tt.slaves); got != tt.want {
			t.Errorf("mode %s, %s → %v: wants = %v, want %v", tt.mode, tt.master, tt.slaves, got, tt.want)
		}
	}
}
