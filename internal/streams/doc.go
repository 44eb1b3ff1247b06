// Package streams is the node's ETSI GS QKD 004 key stream service:
// it implements etsi004.Service over the node's
// key machinery, for the transport bindings internal/etsi004/tcp004 and
// coap004. It has no transport of its own.
//
// A key stream joins a source application (the first to open it; the
// keys are produced at its node) and a destination application on a
// neighbour node (or a remote one, see the end). The two nodes tell each
// other the state of their end
// with new_app messages carrying a kmsproto.StreamInfo (link.AnnounceStream;
// the receiving link hands them to Service.PeerStream). Chunk i of a
// stream is a key whose ID is a name-based UUID of (stream ID, i), of
// key_chunk_size bytes, reserved for the pair at the source node with
// link.ReserveIDs in windows ahead of demand; each end delivers chunk i at
// most once, with Store.TakeByID.
//
// Choices the standard leaves open:
//
//   - QoS defaults for zero fields: key_chunk_size 32 bytes, timeout
//     10000 ms, ttl 3600 s; max_bps 0 = no limit; min_bps 0 = no minimum.
//     key_chunk_size must be 1..Options.MaxChunkBytes, metadata_mimetype
//     "" (no metadata) or application/json (parameters allowed); anything
//     else fails with status 7 and the closest QoS (application/json as the
//     preferred type). A min_bps above the link's measured key rate
//     (Options.LinkRate) fails with 7, counter-proposing that rate.
//   - OPEN_CONNECT by a caller that is not the source application: the
//     error ErrNotSource (an etsi004.ErrBadRequest). A destination on
//     this node, unknown, or remote without a route: 4.
//     A NULL stream ID returns at once with status 1; a non-NULL ID the
//     peer opened joins it (status 0, the stream's QoS); a predefined ID
//     not known yet blocks until the peer opens it too (0) or Timeout ms
//     pass (6, and the stream is dropped); an ID of another pair: 5.
//   - GET_KEY: an unknown stream, or one that is not the caller's, or
//     whose caller end is closed, or whose peer has not opened it: 3
//     (after the peer closed, the chunks already produced can still be
//     had).
//     Metadata buffer too small: 8 with the size needed (the JSON's
//     upper bound), nothing consumed. A chunk that cannot be had (taken
//     already at this end, skipped, or no key material): 2. No answer in
//     time (rate limit wait or production longer than Timeout): 6.
//   - max_bps: each end paces its GET_KEYs (one chunk per
//     8·key_chunk_size/max_bps seconds): in any window of W seconds an end
//     delivers at most max_bps·W bits plus one chunk.
//   - CLOSE: the caller's end closes; unknown stream: 3. When both ends
//     are closed the source node deletes the stream's remaining keys here
//     and at the peer (delete_keys); else they go when their TTL ends.
//   - Metadata (application/json): {"age": ms since the chunk was
//     produced, "hops": 0}.
//
// Remote pairs (applications on nodes that are not neighbours) are served
// when Options.Router and Options.Relay are set: the source node relays
// the chunks along the pair's key stream with their derived IDs, the
// destination node learns the stream from the relay steps, and the
// source polls the destination's state (remote.go,
// docs/relay-design.md). A predefined ID on a remote pair: the node of
// the lower SAE ID relays (after waiting joinGrace for the ID to come from
// the peer, in case it answered the peer's NULL OPEN_CONNECT); the other
// end waits for the stream (Timeout: 6). Without a route (or without Router/Relay): 4. A Router that is a
// QoSRouter registers the stream with its QoS: the SDN controller admits
// min_bps or counter-proposes a lower rate (7, min_bps the rate offered);
// the source node releases the registration when both ends closed, or
// when its end closed and the destination's is not open (qos.go).
package streams
