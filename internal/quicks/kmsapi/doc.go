// Package kmsapi is the QUICKS v2.2.0 server a KMS hosts for its SDN agent
// and the operator (openapi/sdn_to_kms_api.yaml of
// github.com/ait-crypto/kms-sdn-agent-interface-specification),
// and a client of it. It is transport only: it authenticates the client
// certificate, decodes and checks requests (package quicks), calls the KMS
// through the Backend interface it declares, and encodes the answer.
//
// Resources, under /api/v2/sdn (QUICKS 2.0/2.1) and also under
// /api/v2/kms (the servers entry of sdn_to_kms_api.yaml 2.2.0):
//
//	GET    /version                        200 VersionInfo
//	GET    /monitor/capabilities           200 Capabilities
//	GET    /monitor/device-info            200 DeviceInfo
//	GET    /monitor/status                 200 KMSStatus (?new_operation_state_only, ?reset)
//	GET    /monitor/log                    200 any media type
//	GET    /monitor/qkd-device             200 QKDDeviceList
//	PUT    /control/status                 200; 403 if refused
//	POST   /control/qkd-device/{device_id} 201; 409 duplicate
//	PUT    /control/qkd-device/{device_id} 200; 400 unknown device
//	DELETE /control/qkd-device/{device_id} 204; 400 unknown device
//	GET    /link/performance/{link_id}     200 Performance (?entries); 404 unknown link
//	POST   /link/relay/{key_stream_id}     201; 409 duplicate
//	PUT    /link/relay/{key_stream_id}     200; 404 unknown stream
//	DELETE /link/relay/{key_stream_id}     204; 404 unknown stream
//
// Every error is an RFC 9457 problem (application/problem+json with type,
// title, status, detail): 400 naming the field for malformed JSON, wrong
// JSON types, unknown enum values, missing required members, non-UUID IDs
// and bad query parameters; 403 for a client certificate that Authorize
// refuses (a certificate that does not chain to Options.TLSConfig.ClientCAs,
// or none, fails the TLS handshake); 404 for other paths; 405 with Allow for
// other methods; 413 for bodies over the limit; 501 for what the Backend
// does not support; 500 "internal error" otherwise. Serve enforces TLS 1.3
// and verified client certificates (the API's mutualTLS security scheme).
package kmsapi
