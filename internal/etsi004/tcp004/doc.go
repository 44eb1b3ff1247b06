// Package tcp004 carries ETSI GS QKD 004 V2.1.1 (the application interface,
// pull mode) over the binary TCP/TLS framing of ETSI's reference
// implementation as QUBIP's etsi-qkd-004 speaks it
// (github.com/QUBIP/etsi-qkd-004), the framing behind the C API wrapper used
// by strongSwan and the OpenSSL QKD providers. It is transport only: the
// codec (codec.go, pure functions), a Server that serves an etsi004.Service
// over mutual TLS, and a Client.
//
// A frame is an 8-byte header and a payload, big-endian throughout:
//
//	version major, minor, patch  3 × uint8   1, 0, 1
//	service type                 int8        0x02 OPEN_CONNECT request, 0x03 response,
//	                                         0x04 GET_KEY request, 0x05 response,
//	                                         0x08 CLOSE request, 0x09 response
//	payload length               uint32
//
// The payload layouts are those of docs/integration-004.md. Choices where the
// reference is loose, each made so that a QUBIP client or server works with
// us unchanged:
//
//   - Version: we send 1.0.1 and accept any minor and patch, but only major
//     1. ETSI's C reference (gs004-app-int, edition 3) sends 2.1.1 and lays
//     out the mimetype and the GET_KEY metadata differently (NUL-terminated
//     mimetype, a metadata buffer in the request); reading those frames as
//     1.x would misparse them, so they are refused.
//   - Metadata_mimetype is a 256-byte field: the type, then NUL padding. A
//     field without a NUL is refused (the C API's char[256] holds 255
//     characters and the NUL); bytes after the first NUL are ignored.
//   - URIs are NUL-terminated and may be empty at this layer (the service
//     decides what a valid application is). Every length must add up: no
//     trailing bytes, no short fields.
//   - OPEN_CONNECT responses always carry the full layout (status, QoS, KSID),
//     whatever the status; the client also accepts QUBIP's status-only
//     answer to a refused OPEN_CONNECT.
//   - GET_KEY responses: status 0 has the full layout (status, index, key
//     length, key, metadata length, metadata); status 8 is the status and
//     the metadata size needed; every other status is the status alone.
//   - A payload over MaxPayload (1 MiB) is refused before it is read.
//
// The server answers every request on a connection in order (the protocol
// is request/response; a client that pipelines gets its answers in order).
// A frame that does not decode, a response type sent as a request, or a
// service error closes that connection after logging it; the 004 binary
// framing has no error message. The caller is the subject CN of the verified
// client certificate, passed to the service as the qkd.SAEID.
//
// Key bytes are wiped from the server's buffers once written and never
// logged; a Client's GetKey returns a key the caller owns and wipes.
package tcp004
