// Package qkdsim simulates QKD link pairs for qkms (docs/coap-profiles.md): a Link
// makes identical random key blocks at its two ends, "a" and "b", at a
// configured secret key rate, and each end is a separate CoAP server — one
// QKD module — that pushes its blocks to its KMS through the ETSI GS QKD 004
// V2.1.1 push mode over CoAP with Observe (RFC 7641). `qkms qkd-sim` runs it
// as a process; tests and the in-process network simulator use it directly.
// Faults (lost block, flipped bit, delay, paused production) exercise the
// KMS's consistency checks. The KMS side is package device; the wire format
// is package pushproto.
//
// # The CoAP profile of ETSI 004 push mode
//
// ETSI GS QKD 004 defines OPEN_CONNECT, GET_KEY and CLOSE abstractly, with
// no wire protocol. This is qkms's binding, after the push mode of AIT's
// REST API (a KMS makes one GET_KEY; the module answers whenever it has new
// key) carried by CoAP Observe as in the seed paper's prototype. A module
// serves it over CoAP/UDP (RFC 7252) and CoAP/TCP (RFC 8323); the KMS picks
// one. Bodies are CBOR (Content-Format 60) or JSON (50) with the lower-case
// 004 field names below; a request without Content-Format is taken as CBOR
// and every answer comes in the request's format, except GET_KEY, whose
// answers are always CBOR. /.well-known/core (RFC 6690) lists:
//
//	</etsi004/open_connect>;rt="etsi.qkd.004.open_connect";ct="60 50"
//	</etsi004/get_key>;rt="etsi.qkd.004.get_key";obs;ct=60
//	</etsi004/close>;rt="etsi.qkd.004.close";ct="60 50"
//	</sim/fault>;rt="qkms.sim.fault";ct="60 50"          (simulator only)
//
// Types: key_stream_id (KSID) is a UUID, a 16-byte byte string in CBOR
// (RFC 4122 byte order) and the canonical text form in JSON; NULL is an
// absent field, null, an empty string or byte string. index is a uint32;
// blocks of a link are numbered consecutively from a start value, the same
// number for the same bytes at both ends, modulo 2^32 (a KMS unwraps it).
//
// POST /etsi004/open_connect (004 OPEN_CONNECT)
//
//	request  {source, destination, qos{key_chunk_size, max_bps, min_bps,
//	          jitter, priority, timeout, ttl, metadata_mimetype}, key_stream_id}
//	answer   {status, source, destination, qos, key_stream_id}   2.04 on status 0/1
//
// source (a URI naming the KMS, required) and destination (the KMS at the
// other end) are recorded, not checked. A link has one key stream, named at
// both ends by one KSID: the first OPEN_CONNECT at either end with a NULL
// KSID makes the module assign a fresh random UUIDv4 (from crypto/rand,
// unrelated to any key); a non-NULL KSID is adopted if none is bound yet
// (a predefined KSID); later OPEN_CONNECTs at either end get the bound KSID
// (NULL or equal) or status 4 (any other KSID). The answer's qos is what
// the module gives: key_chunk_size = the block size in bytes, max_bps = the
// link's secret key rate in bit/s (0 for a manually stepped link), the other
// fields echoed; metadata_mimetype "" becomes "application/cbor" and
// "application/json" is accepted too (the metadata travels as a CBOR map
// either way). A request it cannot meet — another key_chunk_size, min_bps
// above the rate, another metadata type — gets status 7 and the
// counter-proposal, and binds nothing. OPEN_CONNECT never blocks (no 004
// Timeout wait): status 0 means the other end is open too, 1 that it is not
// yet; blocks are buffered at both ends regardless.
//
// One application holds an end: the latest successful OPEN_CONNECT binds
// the end to its source and to the CoAP endpoint (transport, address and
// port) it came from, and ends any registration from another endpoint — so
// a restarted KMS simply opens again and takes over. An OPEN_CONNECT with
// another source while the holder has a live registration is refused with
// status 5 (4.03): a second KMS is not served, since two KMSes must never
// hold the same key. Once the holder's registration is gone (closed
// connection, failed notification) another source may take the end.
//
// GET /etsi004/get_key?ksid=<uuid> with Observe 0 (004 GET_KEY, push)
//
// registers the holder's endpoint (RFC 7641 §3.1); from another endpoint,
// or for a KSID not bound here, the answer is status 5 (4.03) or 3 (4.04)
// with no registration. A new registration replaces the previous one. The
// first response — separate from the request's acknowledgement over UDP —
// carries the oldest buffered block, or, with an empty buffer, status 2
// and no key. Then every block is a notification, oldest first, one at a
// time: over UDP each notification is Confirmable (RFC 7641 §4.5) and the
// next one goes out only after its ACK; over TCP each is written in order.
// All answers are 2.05 with CBOR payload
//
//	{status: 0, index: uint32, key_buffer: bstr,
//	 metadata: {key_stream_id: bstr(16), size: uint (bytes in key_buffer),
//	            age_ms: uint (milliseconds since the block was made, 004 "age")}}
//
// or, without key, {status: 2, index: the next index the end will deliver}.
// The Observe option is a 24-bit sequence number that increases across
// registrations and restarts (it follows the clock in milliseconds where it
// can), since a client drops, yet acknowledges, a notification whose number
// is not newer than the last one for its token. After Heartbeat (5 s by
// default) with nothing to send, the end sends a keyless status-2
// notification: a liveness signal for both sides that also keeps go-coap's
// UDP server (which forgets an endpoint idle for 16 s) and the KMS's
// silence timer (3 heartbeats in package device) content.
//
// The module stores almost nothing: an end buffers at most Options.Buffer
// undelivered blocks and, when full, drops the oldest. A block leaves the
// buffer when its notification was acknowledged (UDP; go-coap acknowledges
// after the KMS's handler returned) or written (TCP; lost if the KMS dies
// with it in flight). Registering again — after a KMS restart, a broken
// connection, a module restart — continues with the oldest block still
// buffered; blocks dropped meanwhile are gone, and the KMS sees the gap in
// the indices. Delivery is in index order, but a KMS must still tolerate
// repeated and older notifications (RFC 7641 §3.4; e.g. a block written to
// a connection that then broke is sent again on the next one).
//
// GET /etsi004/get_key?ksid=<uuid>&index=N without Observe (gap recovery)
//
// answers block N (index mod 2^32) if the end still buffers it, 2.05 with
// the notification map above, else 4.04 {status: 2}; without index, the
// oldest buffered block. A pull does not consume the block: it is still
// pushed. (Its answer is left to go-coap, which keeps copies, over UDP in
// its duplicate cache for EXCHANGE_LIFETIME; pushed notifications are
// wiped by the end once sent.) GET with Observe 1 deregisters (2.05,
// {status: 2}).
//
// POST /etsi004/close {key_stream_id} → {status} (004 CLOSE)
//
// by the holder (else status 3 or 5 as for GET_KEY) releases the end and
// ends its registration. Its blocks are kept until the other end has closed
// too; then both ends' undelivered blocks are wiped and the KSID is
// unbound (004: unused keys are discarded when both peers have closed).
//
// Status values are those of 004 (0 successful, 1 peer not connected,
// 2 insufficient key, 3 peer application not connected / unknown KSID,
// 4 no QKD connection, 5 KSID in use, 6 timeout, 7 QoS not met,
// 8 metadata too small); the CoAP code follows from the status: 0 and 1 →
// 2.04 (POST) or 2.05 (GET), 2 and 3 → 4.04, 5 → 4.03, 7 → 4.06, 4 → 5.03.
// Requests that cannot be parsed get 4.00 (4.05 wrong method, 4.13 bodies
// over 4096 bytes, 4.15 other Content-Formats) with a short text, never a
// 004 body.
//
// # Block size and transport
//
// Over UDP a notification must fit one CoAP message. go-coap (v3.8.0)
// splits a larger payload with Block2 (RFC 7959), but the continuation
// GETs of a notification reach the resource handler as plain GETs that
// must regenerate "the current representation" (RFC 7959 §2.6): that does
// not fit a stream of distinct blocks, and it broke delivery when tried (a
// new block would replace the one being fetched). So an end serves UDP only
// for blocks of at most MaxUDPBlockSize (912) bytes, whose notification
// stays within a 1024-byte payload and a 1152-byte message (RFC 7252 §4.6);
// ServeUDP refuses larger ones, and TCP carries any size up to
// MaxBlockSize.
//
// Over UDP a module may also not reuse a message ID towards one KMS within
// EXCHANGE_LIFETIME (247 s, RFC 7252 §4.4): go-coap would answer a reused ID
// from its duplicate cache and drop the notification unseen. An end
// therefore sends at most 60000 confirmable messages per 247 s to its KMS
// (bursts at full speed, about 240 blocks/s sustained, ≈ 1.8 Mbit/s with
// 912-byte blocks). Links faster than that use TCP.
//
// # Simulator-only control: POST /sim/fault
//
// Not part of the profile and absent from real modules. Body (CBOR or JSON)
// {end: "a"|"b" (default: the end serving the request), drop: N (drop the
// next N blocks at that end; the other end still gets them), flip: N (flip
// one random bit in each of the next N blocks at that end), delay_ms: D
// (deliver that end's blocks no earlier than D ms after they were made),
// pause: bool (pause or resume production of the whole link)}; absent
// fields leave a switch unchanged. Answer 2.04 {end, drop, flip, delay_ms,
// pause}: that end's switches afterwards (drop and flip count down as they
// act). The same switches are in Options and on End (SetFaults) and Link
// (Pause).
//
// # Key material
//
// Each end owns its copies of the blocks and wipes them when delivered,
// dropped or discarded, and wipes every encoded notification once sent.
// Messages go through go-coap with pooling off (package coapx); go-coap's
// own transient copies (marshal buffers, the UDP retransmission copy) are
// left to the garbage collector. Key bytes are never logged.
package qkdsim
