// Package link runs the KMS↔KMS protocol of one QKD link (SPEC §6): it
// confirms the blocks both QKD modules pushed (new_key_batch), turns
// confirmed material into one-time MAC key slots (make_keys_internal) and
// into keys reserved for application pairs (make_keys_external), deletes
// keys at the peer (delete_keys) and tracks the peer's state (get_status,
// post_status).
//
// Every message is sealed with a one-time Poly1305 tag (standards.md §7.2):
// message number n of a sender uses MAC slot n, 64 bytes of shared key
// material, 32 for the request tag and 32 for the reply tag. Both ends
// delete a slot when they use it, so a replayed or duplicated message finds
// no slot and is rejected; a retry is a new message with a new number, and
// every message is idempotent by content. Slots 0..P-1 of each direction
// come from the link's pre-shared key, later ones from confirmed QKD
// material of the sender's parity.
//
// Allocation never conflicts: the lower node ID of a link (the leader)
// allocates only from blocks with even index, the other end only from odd
// ones, and each allocation names the exact pieces of material it consumes.
// No lock is held across a round trip to the peer.
package link
