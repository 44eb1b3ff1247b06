// Package kmsproto defines the KMS↔KMS messages (docs/coap-profiles.md) and
// their CBOR encoding (RFC 8949, core deterministic encoding, integer map
// keys).
//
// A request travels as Sealed{Data: CBOR(Header), Tag}; a response as
// Sealed{Data: CBOR(Reply), Tag}. Tags are one-time ITS MACs computed by the
// link layer over Data exactly as sent, so the bytes are never re-encoded
// before verification. New message bodies (forward_keys, split_key, ...) are
// added without changing the envelope. The package is pure: no I/O, no keys.
package kmsproto
