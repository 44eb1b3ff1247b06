// Package link runs the KMS↔KMS protocol of one QKD link (SPEC §6): it
// confirms the blocks both QKD modules pushed (new_key_batch), turns
// confirmed material into one-time MAC key slots (make_keys_internal) and
// into keys reserved for application pairs (make_keys_external), deletes
// keys at the peer (delete_keys), splits and merges reserved keys at both
// ends (split_key, merge_keys), announces and closes application pairs
// (new_app, key_stream_closed), relays keys (forward_keys) and tracks the
// peer's state (get_status, post_status).
//
// Every message is sealed with an ITS MAC (SPEC §6.2, standards.md §7),
// chosen per link (Options.MAC; both ends must agree, and a request naming
// another scheme is refused with ErrMACMismatch before any key is opened).
// MAC key material comes in slots of keystore.SlotSize = 64 bytes per
// sender. With one-time Poly1305 (the default) message number n of a
// sender uses slot n, 32 bytes for the request tag and 32 for the reply
// tag. With Wegman–Carter a hash key serves an epoch of Options.MACEpoch
// messages and each tag spends a 16-byte pad, so one slot serves two
// messages and one slot per epoch holds the hash key (mac.go, layout).
// Keys are deleted when used, and at the receiver only if the tag
// verifies, so a replayed or duplicated message finds no key and is
// rejected while a forged one costs nothing; a retry is a new message with
// a new number, and every message is idempotent by content. Slots 0..P-1 of
// each direction come from the link's pre-shared key, later ones from
// confirmed QKD material of the sender's parity.
//
// Allocation never conflicts: the lower node ID of a link (the leader)
// allocates only from blocks with even index, the other end only from odd
// ones, and each allocation names the exact pieces of material it consumes.
// No lock is held across a round trip to the peer.
package link
