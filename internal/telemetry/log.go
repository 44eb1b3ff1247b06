package telemetry

import (
	"io"
	"log/slog"
	"strings"
)

const redacted = "[REDACTED]"

// sensitiveKeys are attribute keys whose non-numeric values are always hidden.
var sensitiveKeys = []string{
	"key", "key_bytes", "key_buffer", "key_material", "psk", "secret", "kek",
	"password", "mac_key", "hash_key", "private_key",
}

// NewLogger returns a logger writing to w at the given level (a slog.Level
// or a *slog.LevelVar), as JSON or, for format "text", as logfmt-style text.
// Every attribute passes through Redact.
func NewLogger(w io.Writer, level slog.Leveler, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: Redact}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Redact is a slog.HandlerOptions.ReplaceAttr function that hides key
// material (see the package documentation for the rules). The standard
// handlers call it for every non-group attribute, including those added
// with Logger.With and nested in groups.
func Redact(_ []string, a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if isSensitiveKey(a.Key) && !isNumeric(v) {
		return slog.String(a.Key, redacted)
	}
	if v.Kind() == slog.KindAny {
		if s, ok := redactValue(v.Any()); ok {
			return slog.String(a.Key, s)
		}
	}
	return a
}

func isSensitiveKey(k string) bool {
	for _, s := range sensitiveKeys {
		if strings.EqualFold(k, s) {
			return true
		}
	}
	return false
}

func isNumeric(v slog.Value) bool {
	switch v.Kind() {
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration:
		return true
	}
	return false
}
