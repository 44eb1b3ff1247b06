// Package telemetry owns a node's structured logs and Prometheus metrics
// (docs/operations.md: /metrics with SKR, ESKR, pool sizes per link and
// state, keys delivered, MAC failures; structured logs with log/slog).
//
// Key material never appears in either. Logs: NewLogger's handler
// runs Redact on every attribute, also those added with With and inside
// groups; secret.Bytes and its role types already log as [REDACTED]. Redact
// additionally hides
//   - the value of an attribute whose key is a secret's name (key, psk,
//     kek, secret, ...; case-insensitive) unless the value is a number, a
//     bool or a duration, so counts such as keys=12 stay visible;
//   - every byte slice or byte array ("[REDACTED len=N]"), except types that
//     render themselves as text (net.IP, qkd.KeyID: encoding.TextMarshaler);
//   - any other value that holds such bytes somewhere inside (a struct field,
//     a map value, a slice element, behind a pointer or an interface):
//     "[REDACTED type=T]".
//
// Redaction cannot recognise key material that was already turned into a
// string (hex, base64) under an innocent key, nor text in the message or in
// an error's Error(): such code is a bug that Redact only narrows.
//
// Metrics: each node has its own prometheus.Registry (several nodes share a
// process in simulations, so nothing is registered globally or in init) and
// every series carries node="ID". Label values are IDs and fixed enums only.
package telemetry
