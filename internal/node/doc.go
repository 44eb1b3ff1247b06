// Package node is the only package that wires qkms together: one trusted
// node's key store, QKD links (device clients, KMS↔KMS CoAP), key service,
// ETSI 014 server, metrics and admin endpoints, from one config.Config.
// Each subsystem has its own small constructor; Run supervises them.
package node
