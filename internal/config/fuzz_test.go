package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(full))
	f.Add([]byte(minimal + link))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("keys: {ttl: 1h, max_link_material: 1GiB}\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse(data) // must not panic
		// Whatever decodes (valid or not) survives Marshal and decoding again.
		c, err := decode(data)
		if c == nil || err != nil {
			return
		}
		c.applyDefaults()
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(decode(%q)) = %v", data, err)
		}
		again, err := decode(out)
		if err != nil {
			t.Fatalf("decode(Marshal(decode(%q))) = %v\n%s", data, err, out)
		}
		again.applyDefaults()
		if diff := cmp.Diff(c, again); diff != "" {
			t.Fatalf("round trip of %q (-first +second):\n%s\n%s", data, diff, out)
		}
	})
}
