// Package agentapi is the QUICKS v2.2.0 interface an SDN agent hosts for
// its KMS (openapi/kms_to_sdn_api.yaml of
// github.com/ait-crypto/kms-sdn-agent-interface-specification):
// Client is what the KMS calls it with, Server is what the agent serves
// its logic (a Backend) with. Both are transport only.
//
// Resources, under /api/v2/sdn:
//
//	GET    /version                    200 VersionInfo
//	GET    /link/status                200 LinkStatus (?master_sae_id&slave_sae_id, both required)
//	POST   /link/registration          201 RegistrationResult
//	PATCH  /link/registration          200 (sent by the destination KMS)
//	DELETE /link/{key_stream_id}       200
//	POST   /notification/registration  201, optionally an application/octet-stream configuration
//	PATCH  /notification/status        200
//	PUT    /notification/event         200
//
// Errors are RFC 9457 problems (application/problem+json): 400 naming the
// field at fault, 403 for a client certificate Authorize refuses (one that
// does not chain to Options.TLSConfig.ClientCAs, or none, fails the TLS
// handshake), 404 for other paths and unknown key streams, 405 with Allow,
// 413, 501 for what the Backend does not support, 500 otherwise. The
// client decodes them into *quicks.Problem errors that match the sentinels
// of package quicks. Both sides use TLS 1.3 only with client certificates.
package agentapi
