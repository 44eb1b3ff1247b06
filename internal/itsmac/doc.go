// Package itsmac implements the information-theoretically secure one-time
// MACs that authenticate KMS↔KMS messages (SPEC §6.2; standards digest §7).
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
// Wegman–Carter (SPEC §6.2 alternative) reuses one 16-byte hash key r over a
// run of numbered messages and spends a fresh 16-byte mask k_i per message:
// tag_i = h_r(m_i) ⊕ k_i, with h_r the same polynomial hash and s = 0. Key
// cost: 16 bytes per tag plus 16 bytes per run (amortised over the run; 128
// bits of QKD key buy 106 bits of hash key after clamping). Numbering is the
// caller's business: message i must use mask i, and a mask is never reused.
//
// Security note on the Wegman–Carter form. The 8⌈L/16⌉/2^106 bound is
// Bernstein's bound for Poly1305's hash as an ε-almost-Δ-universal family
// under subtraction mod 2^128, i.e. for pads combined by addition,
// tag = (h_r(m) + k_i) mod 2^128 (Poly1305-AES with one-time pads in place of
// AES; the AES term of the theorem disappears and reusing r is safe while
// every pad is fresh). The XOR combination required by SPEC §6.2 needs an
// ε-almost-XOR-universal hash; that property of the Poly1305 hash is not
// covered by the published analysis. No attack is known, but the proven bound
// stated above is for the additive form. The additive form is Sum with the
// key r‖k_i, so switching costs nothing in code or key.
//
// Both schemes compare tags in constant time and never panic on bad input:
// wrong key lengths are errors (Sum, WCSum) or verify as false.
//
// The package uses golang.org/x/crypto/poly1305, which is deprecated for
// general-purpose use but is exactly a one-time authenticator. That library
// keeps its own copy of r and s inside its MAC state, which cannot be wiped
// from here; the copy becomes unreachable when Sum or Verify returns.
package itsmac
