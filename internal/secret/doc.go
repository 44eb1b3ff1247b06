// Package secret holds key material in types that cannot leak by accident:
// fmt, slog, encoding/json and encoding/text all print "[REDACTED]", Equal is
// constant time, and the owner wipes the buffer when done (key
// material is zeroised after use and never appears in logs, errors or metrics).
//
// One named type per key role (KEK, PSK, MACKey) keeps roles from being mixed
// up: a PSK cannot be passed where a KEK is expected.
package secret
