// Package peer is the KMS↔KMS transport (docs/coap-profiles.md): every
// message type of kmsproto.Types is a CoAP resource POST /kms/v1/<type>
// carrying one sealed CBOR message (Content-Format 60, application/cbor) and
// answered with 2.04 Changed and the sealed reply.
//
// peer moves opaque bytes. Authentication (the ITS MACs),
// sequence numbers, replay detection and the meaning of each message live in
// the link layer above, which plugs in a Handler on the server side and calls
// Client.Call on the other. Errors cross the wire as CoAP response codes,
// mapped in one table in errors.go, in both directions.
//
// Transports:
//   - CoAP over UDP, RFC 7252, confirmable messages, with block-wise transfer
//     (RFC 7959, Block1/Block2, 1 KiB blocks) for payloads above one block;
//   - CoAP over TCP, RFC 8323, one frame per message up to coapx's 16 MiB
//     maximum (go-coap v3.8.0 does not announce BERT in its CSM, so large
//     payloads travel as large messages rather than BERT blocks).
//
// Payloads are limited to MaxPayload both ways. The go-coap plumbing (no
// pooled buffers, errors to slog, /.well-known/core) is coapx's.
//
// Delivery: a Call whose request may have reached the peer is never resent
// by this package, because the receiver rejects the replayed bytes; it fails
// with ErrNoReply and the link layer retries with a new sequence number.
// Only a request known not to have been sent is retried, once, on a fresh
// connection (ErrNotSent if that fails too).
package peer
