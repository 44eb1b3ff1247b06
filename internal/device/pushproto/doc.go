// Package pushproto is the wire format of qkms's CoAP profile of the ETSI GS
// QKD 004 V2.1.1 push mode between a QKD module (the device) and its KMS:
// resource paths, message bodies, the 004 status codes and their CBOR
// (RFC 8949, Content-Format 60) and JSON (Content-Format 50) encodings.
//
// The profile itself (who sends what, when, over CoAP with Observe,
// RFC 7641) is documented in package qkdsim, which serves it; package device
// is the KMS-side client. Both use this package so they cannot drift apart.
//
// Field names are the lower-case 004 parameter names used by AIT's published
// REST push-mode API (source, destination, qos.key_chunk_size, ...), in both
// encodings. The package is pure: no I/O, no logging; key bytes leave a
// decoder only inside a secret.Bytes the caller owns.
package pushproto
