// Package pki owns the network's certificates: one ECDSA P-256 CA per
// network and the server and client certificates it issues (SPEC §9 and §10:
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
// X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem) then X25519 and P-256 (SPEC §8:
// hybrid transport protection).
//
// Only crypto/x509 and crypto/tls from the standard library are used.
package pki
