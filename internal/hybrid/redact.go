package hybrid

import (
	"fmt"
	"io"
	"log/slog"
)

const redactedText = "[REDACTED]"

// redacted, embedded in a key type, makes fmt (every verb, %#v included),
// log/slog, encoding/json and encoding/text print "[REDACTED]" for it.
type redacted struct{}

func (redacted) String() string               { return redactedText }
func (redacted) GoString() string             { return redactedText }
func (redacted) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, redactedText) }
func (redacted) LogValue() slog.Value         { return slog.StringValue(redactedText) }
func (redacted) MarshalJSON() ([]byte, error) { return []byte(`"` + redactedText + `"`), nil }
func (redacted) MarshalText() ([]byte, error) { return []byte(redactedText), nil }
