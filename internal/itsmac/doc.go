// Package itsmac implements the information-theoretically secure one-time
// MACs that authenticate KMS↔KMS messages (docs/coap-profiles.md, MAC slots).
// It is pure: no I/O, no clock, no randomness. Callers take key material from
// a link's internal key pool, pass it in as secret.MACKey and wipe it when done.
//
// # Schemes
//
// Poly1305 (the default, RFC 8439 §2.5) is used as a one-time MAC: a fresh
// 32-byte key r‖s authenticates exactly one message, tag = (h_r(m) + s) mod
// 2^128, where h_r is the polynomial hash over GF(2^130−5) with r clamped to
// 106 free bits. Key cost: 32 bytes per tag. Forgery bound for messages of at
// most L bytes: each forgery attempt succeeds with probability at most
// 8⌈L/16⌉/2^106 (D attempts: 8D⌈L/16⌉/2^106), independent of the attacker's
// computing power. Examples: L = 1 KiB → 2^−97, L = 16 KiB → 2^−93, L = 64 KiB
// → 2^−91. A key that is ever used twice voids the bound.
//
// Wegman–Carter (the alternative; Wegman and Carter, 1981) reuses one
// 16-byte hash key r over an epoch of numbered tags and spends a fresh
// 16-byte one-time pad k_n per tag:
//
//	tag_n = (h_r(n ‖ m_n) + k_n) mod 2^128
//
// with h_r the same clamped polynomial hash (s = 0) and n the tag's number
// as 8 big-endian bytes, so a tag is bound to its number as well as to its
// pad. The pad is combined by addition mod 2^128, not by XOR: the proven
// bound for Poly1305's hash (D. J. Bernstein, "The Poly1305-AES message-
// authentication code", FSE 2005) is for an ε-almost-Δ-universal family
// under subtraction mod 2^128, i.e. for the additive form; Poly1305-AES is
// this construction with AES outputs as pads, and with true one-time pads
// the AES term of the theorem disappears. Whether the hash is also
// ε-almost-XOR-universal (needed for tag = h ⊕ k) is not covered by the
// published analysis. The additive form is Poly1305 with the key r‖k_n over
// n ‖ m, which is how it is computed here.
//
// Forgery bound for Wegman–Carter: for messages of at most L bytes (plus the
// 8-byte number), each forgery attempt succeeds with probability at most
// 8⌈(L+8)/16⌉/2^106, however many tags under the same r the attacker has
// seen, and D attempts within an epoch succeed with probability at most D
// times that. Every pad must be fresh, uniform and never reused; reusing a
// pad voids the bound at once. Key cost: 16 bytes per tag plus 16 bytes per
// epoch (128 bits of key material buy 106 bits of hash key after clamping).
// Numbering is the caller's business: tag number n must use pad n, and no
// two tags of an epoch may share a number.

// Both schemes compare tags in constant time and never panic on bad input:
// wrong key lengths are errors (Sum, WCSum) or verify as false. Both use
// golang.org/x/crypto/poly1305's constant-time Verify.
//
// The package uses golang.org/x/crypto/poly1305, which is deprecated for
// general-purpose use but is exactly a one-time authenticator. That library
// keeps its own copy of r and s inside its MAC state, which cannot be wiped
// from here; the copy becomes unreachable when Sum or Verify returns.
package itsmac
