// Package kms is the core service behind the application interfaces: it
// answers ETSI GS QKD 014 status, enc_keys and dec_keys (and later ETSI 004
// streams) from keys that the link layer reserved for SAE pairs, enforcing
// the limits and the authorisation rules of ETSI GS QKD 014. It imports no
// transport: etsi014 and friends declare the methods they call.
package kms
