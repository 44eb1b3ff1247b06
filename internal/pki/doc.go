// Package pki owns the network's certificates: one ECDSA P-256 CA per network
// and the server and client certificates it issues (docs/operations.md, PKI:
// `qkms pki init`, DIR/pki/ca.pem, SAE and operator client certificates), and
// the TLS configurations every HTTPS and TLS endpoint of qkms uses.
//
// Identity is the client certificate: an SAE is authenticated by the subject
// CN of its verified client certificate (ETSI GS QKD 014 §4.1: the SAE ID),
// the operator by CN "operator". PeerCN reads it from a verified chain only.
//
// Files in a PKI directory (0700):
//
//	ca.pem, ca-key.pem            the CA (key 0600)
//	NAME.pem, NAME-key.pem        a server certificate (server and client auth)
//	CN.pem, CN-key.pem            a client certificate (client auth)
//
// Private keys are PKCS #8 PEM, created 0600 with O_EXCL in a temporary file
// and renamed into place, so no key is ever readable by others, not even for
// a moment. Everything is idempotent: InitCA loads an existing CA, and Issue*
// keep an existing pair that is valid, matches, chains to the CA and is not
// close to expiry.
//
// TLS: 1.2 minimum; key exchange prefers the hybrid post-quantum
// X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem) then X25519 and P-256
// (hybrid transport protection).
//
// # Post-quantum keys
//
// Besides the ECDSA CA, a PKI directory holds the network's post-quantum
// CA (ML-DSA long-term keys certified by the network's PKI, FIPS
// 204) in DIR/pq (0700). crypto/x509 cannot sign ML-DSA, so these are
// internal/hybrid's own formats: certificates (hybrid.Certificate, PEM
// "QKMS ML-DSA CERTIFICATE"), keys (PEM "QKMS ML-DSA PRIVATE KEY": the
// parameter set and the 32-byte seed) and revocation lists (PEM "QKMS
// ML-DSA REVOCATION LIST"), each a deterministic CBOR encoding:
//
//	pq/ca-mldsa.pem, pq/ca-mldsa-key.pem    the CA: Subject = Issuer = "qkms-ca", serial 1 (key 0600)
//	pq/NODE-mldsa.pem, pq/NODE-mldsa-key.pem  a node's pair: Subject = node ID ("A", not "KME_A") (key 0600)
//	pq/NODE-mldsa.pem.SERIAL                a certificate replaced by rotation or reissue, kept for audit
//	pq/crl.pem                              the CA's signed revocation list
//
// InitPQCA creates the CA (ML-DSA-65 unless told otherwise; valid 10 years)
// and revocation list number 1, empty, or loads them: the CA certificate
// must be self-signed, valid and match its key, and an existing list must
// carry the CA's signature. Neither is ever replaced automatically.
// LoadPQCA only loads (for rotation and revocation).
//
// IssueNode keeps an existing node pair that verifies under the CA, names
// the node, is of the wanted parameter set (default: the CA's), matches its
// key, is not revoked and does not expire within 30 days; otherwise it
// issues a new pair valid 1 year (never beyond the CA). RotateNode always
// issues a new pair. Either way the replaced certificate is first copied to
// NODE-mldsa.pem.SERIAL and the key file is replaced (the old key is gone;
// the old certificate stays valid until it expires or is revoked). Key
// and certificate are each replaced atomically, key first: a crash in
// between leaves a pair that does not match, which IssueNode replaces.
//
// Serial numbers are random in [2, 2⁶³) and unique per subject: a draw
// that equals the node's current, archived or revoked serial is drawn
// again. (Random rather than monotonic: no counter file to lose or
// corrupt.) Revoke adds (subject, serial) to the list and writes it
// re-signed with the next number; revoking a revoked serial is a no-op.
//
// A node loads its identity with LoadPQIdentity(ca-mldsa.pem, crl.pem,
// NODE-mldsa.pem, NODE-mldsa-key.pem) (PQNodeFiles gives the paths): its
// certificate must verify under the CA and not be revoked, the key must be
// the certificate's and its file not accessible to group or others. The
// identity's Cert is the CBOR encoding that hybrid.SignOffer and
// hybrid.PathStep carry; its Verifier checks the peers' certificates.
// ML-DSA keys are generated from a crypto/rand seed (Options.Rand) by
// github.com/cloudflare/circl through internal/hybrid.
//
// Only crypto/x509 and crypto/tls from the standard library are used for
// the ECDSA PKI.
package pki
