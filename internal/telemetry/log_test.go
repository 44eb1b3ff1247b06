package telemetry

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// leaks returns the forms in which raw could show up in a log line.
func leaks(raw []byte) []string {
	return []string{
		string(raw), hex.EncodeToString(raw), strings.ToUpper(hex.EncodeToString(raw)),
		base64.StdEncoding.EncodeToString(raw), base64.RawStdEncoding.EncodeToString(raw),
		base64.URLEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw),
	}
}

func TestLoggerRedacts(t *testing.T) {
	// Every secret below is distinct so that a leak points at its case.
	raw := func(i byte) []byte { return bytes.Repeat([]byte{'S', 'E', 'C', 'R', 'E', 'T', '0' + i, 0xa5}, 4) }
	var secrets [][]byte
	next := func() []byte { s := raw(byte(len(secrets))); secrets = append(secrets, s); return s }
	keyID, _ := qkd.ParseKeyID("550e8400-e29b-41d4-a716-446655440000")

	log := func(l *slog.Logger) {
		l.Info("secret types", "material", secret.From(next()), "psk_value", secret.PSK{Bytes: secret.From(next())},
			slog.Any("mac", secret.MACKey{Bytes: secret.From(next())}))
		l.Info("raw bytes", "payload", next(), slog.Any("arr", [32]byte(next())), "named", json.RawMessage(next()))
		l.Info("by key", "key", hex.EncodeToString(next()), "PSK", base64.StdEncoding.EncodeToString(next()),
			"Kek", string(next()), "key_bytes", 32, "keys", 12, "key_buffer", true)
		l.Info("groups", slog.Group("link", slog.String("psk", hex.EncodeToString(next())), slog.Int("keys", 3),
			slog.Group("inner", slog.String("mac_key", hex.EncodeToString(next())))))
		l.With("kek", hex.EncodeToString(next())).WithGroup("g").With(slog.Any("raw", next())).
			Info("with", "key_bytes", base64.StdEncoding.EncodeToString(next()), "pending", 7)
		l.Info("nested", slog.Any("resp", struct {
			ID   string
			Keys [][]byte
		}{"id-visible", [][]byte{next()}}),
			slog.Any("list", []any{1, next()}), slog.Any("m", map[string]any{"k": map[string][]byte{"x": next()}}),
			slog.Any("p", &struct{ k secret.Bytes }{secret.From(next())}))
		l.Info("visible", "ip", net.ParseIP("192.0.2.1"), "key_id", keyID, "err", errors.New("boom"),
			slog.Any("ids", []qkd.KeyID{keyID}), "link", qkd.LinkID("A-B"), "delivered", 5)
	}
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			secrets = nil
			var buf bytes.Buffer
			log(NewLogger(&buf, slog.LevelDebug, format))
			out := buf.String()
			for i, s := range secrets {
				for _, form := range leaks(s) {
					if strings.Contains(out, form) {
						t.Errorf("secret %d leaks as %q in:\n%s", i, form, out)
					}
				}
			}
			visible := []string{"12", "keys", "pending", "7", "192.0.2.1", "550e8400-e29b-41d4-a716-446655440000",
				"boom", "A-B", "delivered", "[REDACTED len=32]", "[REDACTED type=struct", "[REDACTED]", "key_bytes"}
			for _, v := range visible {
				if !strings.Contains(out, v) {
					t.Errorf("output lacks %q:\n%s", v, out)
				}
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name string
		in   slog.Attr
		want string // value as printed; "" = unchanged
	}{
		{"plain string", slog.String("peer", "B"), ""},
		{"key string", slog.String("key", "abcd"), redacted},
		{"KEY upper case", slog.String("KEY", "abcd"), redacted},
		{"key int", slog.Int("key", 3), ""},
		{"psk bool", slog.Bool("psk", true), ""},
		{"password any", slog.Any("password", struct{}{}), redacted},
		{"bytes", slog.Any("b", []byte{1, 2, 3}), "[REDACTED len=3]"},
		{"nil bytes", slog.Any("b", []byte(nil)), "[REDACTED len=0]"},
		{"byte array", slog.Any("b", [4]byte{}), "[REDACTED len=4]"},
		{"net.IP", slog.Any("ip", net.IPv4(10, 0, 0, 1)), ""},
		{"pointer to bytes", slog.Any("p", &[]byte{1}), "[REDACTED type=*[]uint8]"},
		{"ints", slog.Any("n", []int{1, 2}), ""},
		{"map of strings", slog.Any("m", map[string]string{"a": "b"}), ""},
		{"empty interface slice", slog.Any("l", []any{"x", 1}), ""},
		{"nil", slog.Any("x", nil), ""},
		{"secret", slog.Any("x", secret.From([]byte{1})), redacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.in.Value.String()
			}
			got := Redact(nil, tt.in)
			if got.Key != tt.in.Key || got.Value.String() != want {
				t.Errorf("Redact(%v) = %v, want %s=%s", tt.in, got, tt.in.Key, want)
			}
		})
	}
}

func TestRedactBudget(t *testing.T) {
	big := make([]any, 2*walkBudget)
	for i := range big {
		big[i] = i
	}
	if got := Redact(nil, slog.Any("big", big)); got.Value.String() != "[REDACTED type=[]interface {}]" {
		t.Errorf("Redact(value too big to inspect) = %v, want redacted", got)
	}
}
