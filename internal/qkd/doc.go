// Package qkd is the shared vocabulary of qkms: identifiers of nodes, SAEs,
// KMEs, links and keys, and the domain errors every layer speaks.
//
// It imports only the standard library. Transports map these errors to their
// wire codes (ETSI GS QKD 014 §5.3, ETSI GS QKD 004 §6.3) exactly once.
package qkd
