package sqlite

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
)

// jsonSAEs is the stored form of an SAE list as encoding/json writes it,
// which encSAEs must match byte for byte: stored lists are compared as text.
func jsonSAEs(s []qkd.SAEID) string {
	if s == nil {
		s = []qkd.SAEID{}
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func TestSAEsEncoding(t *testing.T) {
	for _, l := range [][]qkd.SAEID{
		nil, {}, {""}, {"SAE_B1"}, {"a", "b"}, {"x<y"}, {"a&b"}, {`q"uote`}, {`back\slash`},
		{"tab\there"}, {"é"}, {"\xff"}, {"~ok!#$%'()*+,-./:;=?@[]^_`{|}"},
	} {
		got, want := encSAEs(l), jsonSAEs(l)
		if got != want {
			t.Errorf("encSAEs(%q) = %s, encoding/json writes %s", l, got, want)
		}
		back, err := decSAEs(got)
		if err != nil {
			t.Fatalf("decSAEs(%s): %v", got, err)
		}
		var ref []qkd.SAEID
		_ = json.Unmarshal([]byte(got), &ref)
		if len(ref) == 0 {
			ref = nil
		}
		if diff := cmp.Diff(ref, back); diff != "" {
			t.Errorf("decSAEs(%s) differs from encoding/json (-json +got):\n%s", got, diff)
		}
	}
}

// FuzzSAEs: for any stored text, decSAEs agrees with encoding/json (or
// both refuse it), and for any one-ID list encSAEs writes what it writes.
func FuzzSAEs(f *testing.F) {
	for _, s := range []string{`[]`, `["SAE_B1"]`, `["a","b"]`, `["\u003c"]`, `[""]`, `["a\"b"]`, `["\xff"]`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var ref []qkd.SAEID
		jerr := json.Unmarshal([]byte(s), &ref)
		got, err := decSAEs(s)
		if (err != nil) != (jerr != nil) {
			t.Fatalf("decSAEs(%q) error %v, encoding/json %v", s, err, jerr)
		}
		if err == nil {
			if len(ref) == 0 {
				ref = nil
			}
			if diff := cmp.Diff(ref, got); diff != "" {
				t.Fatalf("decSAEs(%q) differs (-json +got):\n%s", s, diff)
			}
		}
		one := []qkd.SAEID{qkd.SAEID(s)}
		if e, w := encSAEs(one), jsonSAEs(one); e != w {
			t.Fatalf("encSAEs(%q) = %s, encoding/json writes %s", s, e, w)
		}
	})
}
