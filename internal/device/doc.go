// Package device is the KMS side of the ETSI GS QKD 004 V2.1.1 push mode
// between a QKD module and its KMS, over CoAP (RFC 7252 over UDP,
// RFC 8323 over TCP) with Observe (RFC 7641), in the profile documented in
// package qkdsim and encoded by package pushproto.
//
// A Client opens the key stream (004 OPEN_CONNECT), registers once for
// GET_KEY with Observe, and hands every key block the module pushes to a
// deliver function, in index order, each index at most once. It detects
// gaps by index (blocks the module lost), drops repeated and reordered
// notifications, and reconnects with backoff when the module goes away,
// when the connection breaks or when the module stays silent for longer
// than its heartbeat allows.
//
// Over UDP the module's notifications are confirmable and go-coap
// acknowledges each one only after deliver has returned: an acknowledged
// block is in the KMS's hands. Over TCP a block counts as delivered once the
// module wrote it; a KMS that crashes loses what was in flight, which the
// peer KMS sees as a gap. The Client never logs key bytes.
package device
