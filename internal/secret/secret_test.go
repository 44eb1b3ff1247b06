package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRedaction(t *testing.T) {
	raw := []byte("super-secret-key-material-0123456789")
	s := From(raw)
	k := KEK{From(raw)}
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %x %X %q", s, s, s, s, s, s, s),
		fmt.Sprintf("%v %x", k, k), fmt.Sprintf("%+v", struct{ K Bytes }{s}),
	}
	j, _ := json.Marshal(map[string]any{"k": s, "kek": k})
	outs = append(outs, string(j))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", s, "kek", k)
	outs = append(outs, buf.String())
	for _, o := range outs {
		if strings.Contains(o, "super-secret") || strings.Contains(o, fmt.Sprintf("%x", raw[:8])) {
			t.Errorf("output leaks key material: %s", o)
		}
		if !strings.Contains(o, redacted) {
			t.Errorf("output %q does not say %s", o, redacted)
		}
	}
}

func TestWipe(t *testing.T) {
	raw := []byte{1, 2, 3, 4}
	s := Adopt(raw)
	s.Wipe()
	if s.Len() != 0 || !bytes.Equal(raw, []byte{0, 0, 0, 0}) {
		t.Fatalf("Wipe left %v (len %d)", raw, s.Len())
	}
}

func TestEqualAndClone(t *testing.T) {
	a := From([]byte("abc"))
	b := a.Clone()
	if !a.Equal(b) {
		t.Fatal("clone not equal")
	}
	b.Expose()[0] = 'x'
	if a.Equal(b) || a.Expose()[0] != 'a' {
		t.Fatal("clone shares the buffer")
	}
}
