// Package coap004 is qkms's CoAP binding of ETSI GS QKD 004 V2.1.1, the
// application interface in pull mode (docs/integration-004.md,
// "ETSI 004 over CoAP", is the normative text of the profile). No standard
// CoAP binding of 004 exists; this one is ours.
//
// Resources (POST only), registered on a coapx.Router and listed at
// /.well-known/core (RFC 6690):
//
//	/etsi004/open_connect  OPEN_CONNECT
//	/etsi004/get_key       GET_KEY
//	/etsi004/close         CLOSE
//
// Bodies are CBOR (Content-Format 60, RFC 8949; the default when no
// Content-Format is given) or JSON (50), answered in the request's format
// unless an Accept option asks for the other. Field names are the snake case
// names of docs/integration-004.md, "Formats". Request decoding is strict:
// unknown or duplicate fields, trailing bytes, wrong types and numbers
// outside uint32 are 4.00, so that a misspelt key_stream_id cannot silently
// open a new stream. Response decoding (the Client) ignores unknown fields.
//
// Every call the service carried out is answered 2.04 with a 004 body whose
// status field holds the 004 status, whatever it is. CoAP error codes mean
// that the call was not carried out; their payload is a short text/plain
// diagnostic: 4.00 malformed, 4.01 no caller identity, 4.05 not POST, 4.06
// Accept other than 50/60, 4.13 body over MaxRequestSize, 4.15
// Content-Format other than 50/60, 5.03 call cut short (MaxCallTime or
// shutdown), 5.00 anything else.
//
// The caller is the CN of its verified TLS client certificate (serve
// coapx.Server.ServeTCP on a tls.NewListener with a configuration from
// pki.ServerTLSConfig, which requires client certificates). Plain CoAP
// connections are refused (4.01) unless Options.InsecureCallerQuery, a
// test-only mode in which the Uri-Query sae=<SAE ID> names the caller.
// DTLS is not served yet.
//
// OPEN_CONNECT and GET_KEY may block in the service for up to QoS.Timeout.
// Over TCP the answer simply comes when the call ends. Over UDP a call
// still running after Options.SeparateAfter (1 s) is acknowledged by an
// empty ACK and answered by a separate confirmable response (RFC 7252
// §5.2.2), so CoAP's retransmission timers never run out.
package coap004
