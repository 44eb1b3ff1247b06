// Package coapx is the shared go-coap (github.com/plgd-dev/go-coap/v3) setup
// of every qkms CoAP endpoint: servers on caller-supplied UDP and TCP
// listeners (RFC 7252, RFC 8323), errors routed to slog instead of stdout,
// no pooled message buffers (they would keep key bytes alive), and a router
// that lists its resources at /.well-known/core in CoRE link format
// (RFC 6690).
package coapx
