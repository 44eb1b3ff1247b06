// Package link runs the KMS↔KMS protocol of one QKD link
// (docs/coap-profiles.md): it confirms the blocks both QKD modules pushed
// (new_key_batch), turns confirmed material into one-time MAC key slots
// (make_keys_internal) and into keys reserved for application pairs
// (make_keys_external), deletes keys at the peer (delete_keys), splits and
// merges reserved keys at both ends (split_key, merge_keys), announces and
// closes application pairs (new_app, key_stream_closed), relays keys
// (forward_keys) and tracks the peer's state (get_status, post_status).
//
// Every message is sealed with an ITS MAC (docs/coap-profiles.md, MAC slots),
// chosen per link (Options.MAC; both ends must agree, and a request naming
// another scheme is refused with ErrMACMismatch before any key is opened).
// MAC key material comes in slots of keystore.SlotSize = 64 bytes per
// sender. With one-time Poly1305 (the default) message number n of a
// sender uses slot n, 32 bytes for the request tag and 32 for the reply
// tag. With Wegman–Carter a hash key serves an epoch of Options.MACEpoch
// messages and each tag spends a 16-byte pad, so one slot serves two
// messages and one slot per epoch holds the hash key (mac.go, layout).
// Keys are deleted when used, and at the receiver only if the tag
// verifies, so a forged or corrupted message costs nothing. Slots 0..P-1
// of each direction come from the link's pre-shared key, later ones from
// confirmed QKD material of the sender's parity.
//
// Retries (exchange.go, replycache.go). A request is sealed once, under
// one message number. Until a verified reply comes back (or the sender
// gives it up) the sender keeps the sealed bytes and the exchange's keys,
// and a retry (after a transport error, a timeout, or a reply that fails
// its tag or does not match) sends the identical bytes again under the
// same number. Sending identical bytes under an identical one-time key
// reveals nothing new: the tag is the same function of the same key and
// message. The receiver keeps the sealed replies of the last 4096
// requests per link (at most 4 MiB, in memory) with the SHA-256 of each
// request: an identical request under a used number gets the same reply,
// and runs nothing; other bytes under a used number are rejected. A
// request under a number whose key and reply are both gone (the receiver
// restarted, or evicted the reply) gets a kmsproto.SeqGone notice naming
// its hash; only then does the sender seal the request again under a new
// number, and every request is idempotent by content. So an outage or an
// attack costs each request one MAC slot, however long it lasts, and the
// link recovers by itself when it ends.
//
// Durability: the key store is synced (keystore.Syncer.Sync) after a
// request's slot is taken and before its tag first leaves the node, and
// after a request was handled and before its reply's tag leaves: a power
// cut cannot bring back a slot whose key already tagged something.
//
// Key batches (confirm.go). A new_key_batch is fixed when it is built:
// its block list, check tag and BatchID are stored as an outbox entry of
// type new_key_batch before its first send, and it is sent again, the
// same, until a definite answer; the outbox worker leaves such entries to
// the confirm loop. Its check key (the first block's first 32 bytes) thus
// never tags two lists. On "missing" the list is gone, so both ends
// discard the batch's first block too. A leader restarted with a batch in
// flight sends the stored one again.
//
// Allocation never conflicts: the lower node ID of a link (the leader)
// allocates only from blocks with even index, the other end only from odd
// ones, and each allocation names the exact pieces of material it consumes.
// No lock is held across a round trip to the peer.
package link
