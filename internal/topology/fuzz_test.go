package topology

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(ring5))
	f.Add([]byte(`{"nodes": [{"id": "A"}], "links": [{"a": "A", "b": "A", "skr_bps": 1}]}`))
	f.Add([]byte(`{"nodes": [{"id": "A"}, {"id": "B"}], "links": [{"a": "A", "b": "B", "skr_bps": 1e-300}, {"id": "A-B", "a": "B", "b": "A", "skr_bps": 2}]}`))
	if files, _ := filepath.Glob(filepath.Join(sharedDir, "*.json")); len(files) > 0 {
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil && len(data) < 16<<10 {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := Parse(data)
		if err != nil {
			return
		}
		if err := topo.Validate(); err != nil {
			t.Fatalf("Parse(%q) succeeded but Validate() = %v", data, err)
		}
		for _, s := range topo.SAEs {
			if _, ok := topo.NodeOf(s.ID); !ok {
				t.Fatalf("NodeOf(%q) not found", s.ID)
			}
		}
		for _, n := range topo.Nodes {
			for _, m := range topo.Neighbours(n.ID) {
				if len(topo.LinksBetween(n.ID, m)) == 0 {
					t.Fatalf("Neighbours(%q) has %q but LinksBetween is empty", n.ID, m)
				}
			}
		}
		// Re-encoding and parsing again gives the same topology.
		out, err := json.Marshal(topo)
		if err != nil {
			t.Fatalf("json.Marshal = %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(%q))) = %v", data, err)
		}
		if diff := cmp.Diff(topo, again, ignoreIndex); diff != "" {
			t.Fatalf("re-parse differs (-first +second):\n%s", diff)
		}
	})
}
