// Package hybrid owns the post-quantum half of qkms's end-to-end key
// protection (docs/hybrid.md): the two end KMSes of a key stream run an ML-KEM
// exchange (FIPS 203, crypto/mlkem) authenticated with ML-DSA signatures
// (FIPS 204, github.com/cloudflare/circl) whose keys the network's CA
// certifies, and the key given to applications combines the relayed QKD key
// with the KEM-protected hybrid secret. A trusted node on the path that
// learns the relayed key cannot compute the application key; a break of the
// KEM alone does not reveal it either. Every node on the path also signs its
// forwarding step, so the destination can check the path taken against the
// configured route.
//
// The package is pure: no I/O, no clock (callers pass now), randomness from
// an io.Reader where the underlying library accepts one. Two do not: ML-KEM
// encapsulation (crypto/mlkem) and hedged ML-DSA signing (circl) read
// crypto/rand themselves.
//
// # Algorithms (crypto agility)
//
// Names travel in configuration and messages; KEMByName, SignerByName and
// CombinerByName resolve them, and an unknown name is ErrUnsupported.
//
//	KEM         ML-KEM-768 (default), ML-KEM-1024
//	signature   ML-DSA-65 (default), ML-DSA-44, ML-DSA-87
//	combiner    xor-shake256 (default), hkdf-sha3-256
//
// Signatures are hedged (FIPS 204 default); SignDeterministic exists for
// known-answer tests. Each kind of signed object has its own FIPS 204
// context string, so a signature of one kind never verifies as another:
//
//	qkms-cert-v1    certificate body          (CA key)
//	qkms-crl-v1     revocation list body      (CA key)
//	qkms-offer-v1   offer body                (destination key)
//	qkms-hybrid-v1  hybrid header body        (source key)
//	qkms-path-v1    path step message         (key of the forwarding node)
//
// # Encodings
//
// Structures are CBOR maps with small unsigned integer keys, in Core
// Deterministic Encoding (RFC 8949 §4.2.1). A "body" is the encoding of a
// structure without its signature key, which is the last key and omitted
// when empty. Decoders of network input are strict: an input is accepted
// only if it is exactly the deterministic encoding of what was decoded (no
// trailing data, unknown or missing keys, duplicate keys, indefinite
// lengths, tags, non-shortest integers or unsorted keys), so every accepted
// message has one encoding and its signature covers exactly it. Limits:
// encapsulation key and ciphertext ≤ 2 KiB, certificate ≤ 8 KiB, signature
// ≤ 5 KiB, ≤ 64 path steps, ≤ 16384 key IDs and ≤ 64 recipients per header,
// names (stream, step, node IDs, offer key IDs) 1 to 256 bytes.
//
// Inside hashes and signed messages, encode(f1, ..., fn) is the unambiguous
// concatenation of the fields, each as a 4-byte big-endian length followed
// by its bytes; strings are their UTF-8 bytes, a key ID its 16 bytes, an
// integer its 8-byte big-endian form (itself length-prefixed).
//
// A qkd.KeyID is a 16-byte byte string; a qkd.NodeID a text string.
//
// # Certificates
//
// crypto/x509 cannot sign or verify ML-DSA, so node certificates have their
// own format, PEM block type "QKMS ML-DSA CERTIFICATE":
//
//	1 version     uint (1)
//	2 serial      uint
//	3 subject     text: the node ID
//	4 issuer      text
//	5 alg         text: the subject key's parameter set
//	6 public key  bytes: FIPS 204 encoding
//	7 not before  int: Unix seconds
//	8 not after   int: Unix seconds (valid while not before ≤ now ≤ not after)
//	9 signature   bytes: by the CA over the body, context qkms-cert-v1
//
// Revocation list, PEM "QKMS ML-DSA REVOCATION LIST": 1 issuer (text),
// 2 number (uint; a higher number replaces a lower one), 3 this update (Unix
// seconds), 4 revoked (array of maps {1 subject text, 2 serial uint}, sorted
// by subject then serial, no repeats), 5 signature (CA, context qkms-crl-v1).
//
// Private key, PEM "QKMS ML-DSA PRIVATE KEY": {1 alg text, 2 seed bytes
// (32, FIPS 204 ξ)} for keys made here, or {1 alg, 3 key bytes (the FIPS 204
// expanded private key)}; exactly one of 2 and 3.
//
// A Verifier holds the CA public key and revocation list; it caches
// certificates whose signature verified by SHA3-256 of their encoding and
// checks validity period and revocation on every use.
//
// # Offer (destination → source)
//
//	1 stream  2 source  3 dest (the signer)  4 KEM  5 key ID (random, 32 hex
//	digits; names the decapsulation key at dest)  6 encapsulation key
//	7 expires (Unix ms)  8 cert (dest's encoded certificate)
//	9 signature (dest's key over the body, context qkms-offer-v1)
//
// VerifyOffer checks: certificate valid (CA signature, time, revocation),
// subject == dest, signature, supported KEM with a key of its size, not
// expired (ErrOfferExpired, which is also ErrExpired).
//
// # Hybrid header (source → destinations, with one relay batch)
//
//	1 KEM  2 sig alg (source key's parameter set)  3 combiner  4 stream
//	5 step (batch ID)  6 source (the signer)  7 size bits (of every key)
//	8 key IDs (array)  9 recipients (array, one per destination)
//	10 cert (source's encoded certificate)  11 signature
//
//	recipient: 1 dest  2 offer key ID  3 SHA3-256(offer's encapsulation key)
//	           4 ML-KEM ciphertext  5 wrap (32 bytes)
//
// Seal verifies every offer, draws the 32-byte hybrid secret R, and for each
// destination d encapsulates to d's offer (→ ss_d, ct_d). Then
//
//	H0     = SHA3-256(body with every recipient's wrap left out)
//	wrap_d = R XOR SHAKE256(encode("qkms-wrap-v1", ss_d, H0))[:32]
//	sig    = ML-DSA(source key, body, context qkms-hybrid-v1)
//	TH     = SHA3-256(body)     the transcript hash
//
// so the body, and TH, contain every header field but the signature: the
// algorithms, stream, step, source, key size, every key ID, every
// recipient's destination, offer key ID, encapsulation key hash, ciphertext
// and wrap, and the source's certificate. Open first validates the
// structure, the source's certificate (subject == source) and the
// signature, then that the algorithms are supported, then finds its
// recipient entry (ErrNotRecipient), the decapsulation key of that offer
// whose encapsulation key has the hash in the header (ErrUnknownOffer), and
// unwraps R. The caller checks that stream, step and key IDs are those of
// the batch the header came with.
//
// # Combiners (per key i of the batch; output length = len(K_qkd))
//
//	xor-shake256:  K_app = K_qkd XOR SHAKE256(encode("qkms-combiner-xor-v1",
//	               R, TH, stream, keyID_i))[:len(K_qkd)]
//	hkdf-sha3-256: K_app = HKDF-SHA3-256(IKM = K_qkd ‖ R, salt = TH,
//	               info = encode("qkms-combiner-kdf-v1", stream, keyID_i),
//	               L = len(K_qkd))   (RFC 5869; L ≤ 255·32)
//
// With xor-shake256 the application key is the QKD key one-time-padded with
// a pad only R's holders can compute (a trusted node knows K_qkd, not R),
// and, seen the other way, the QKD key is a one-time pad over the pad (who
// breaks the KEM learns R, not K_qkd). hkdf-sha3-256 feeds both secrets to
// HKDF-Extract; either one alone keeps the output unpredictable as long as
// HMAC-SHA3-256 behaves as a random oracle (the argument for hybrid key
// exchange in TLS 1.3).
//
// # Signed forwarding path
//
// A path step: 1 hop (uint, 0 = source)  2 node (the signer)  3 prev ("" at
// hop 0)  4 next  5 cert (node's encoded certificate; omitted when the
// verifier knows it already)  6 signature over
//
//	encode(stream, step, TH, hop, node, prev, next), context qkms-path-v1.
//
// A path is a CBOR array of steps. VerifyPath, given the configured route
// [S, h1, ..., D], requires exactly one step per node but D, in route order,
// step i by route[i] with prev route[i-1] and next route[i+1]
// (ErrPathMismatch otherwise), then each certificate valid with subject ==
// node (ErrWrongSubject) and each signature good (ErrBadSignature).
// VerifyPathWith takes the certificate of a step without one from the
// caller's certOf (ErrNoCertificate if it has none either).
//
// # Secrets
//
// DecapKey and PrivateKey print as [REDACTED] (fmt, log/slog, JSON, text);
// shared secrets, R and application keys are secret.Bytes. Their owners wipe
// them. Like secret.Bytes, a key in an unexported field of another struct is
// printed by fmt through reflection; its state is behind a pointer, so %v
// shows only an address. Error texts never contain key bytes.
//
// Known-answer vectors and their sources: testdata/README.md.
package hybrid
