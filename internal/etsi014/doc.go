// Package etsi014 serves ETSI GS QKD 014 V1.1.1 ("Protocol and data format of
// REST-based key delivery API") to SAEs over HTTPS with mutual TLS. It is
// transport only: it decodes requests, names the caller, calls the key
// service through the KMS interface it declares, and encodes the answer.
// Limits, authorisation and key bookkeeping belong to the service (kms).
//
// What it implements, by clause of ETSI GS QKD 014 V1.1.1:
//
//   - clause 4 and 5.1: HTTPS, TLS 1.2 or higher (TLS 1.3 preferred), HTTP/1.1,
//     UTF-8 JSON (application/json). Mutual TLS: the caller's SAE ID is the
//     subject CN of its verified client certificate; a request
//     without one, or from an SAE the service does not know, is 401.
//   - clause 5.2 Get status: GET /api/v1/keys/{slave_SAE_ID}/status.
//   - clause 5.3 Get key: GET or POST /api/v1/keys/{slave_SAE_ID}/enc_keys.
//   - clause 5.4 Get key with key IDs: GET or POST
//     /api/v1/keys/{master_SAE_ID}/dec_keys (the path names the master SAE;
//     the spec's GET example writing slave_SAE_ID is read as a typo).
//   - clause 6.1 Status, 6.2 Key request, 6.3 Key container, 6.4 Key IDs and
//     6.5 Error data formats, with the exact field names of the standard.
//   - the status codes of clauses 5.2 to 5.4: 200; 400 with the standard's
//     messages ("size shall be a multiple of 8", "not all
//     extension_mandatory parameters are supported" with details
//     [{"extension_mandatory_unsupported": name}] per name, "one or more keys
//     specified are not found on KME") or the kms's *qkd.RequestError;
//     401 with {"message":"unauthorized"} (the standard defines no body);
//     503 with the public text of the domain error, or "internal error".
//     Errors are mapped to codes in exactly one place (writeError).
//
// Beyond the standard, and liberal in what it accepts, the server:
//
//   - treats GET and POST alike: a JSON body is read on GET too, and the
//     query parameters number, size (enc_keys) and key_ID (dec_keys, may be
//     repeated) are read on POST too; number or size given in both places
//     must agree, key IDs from both are joined;
//   - takes an empty body (or null) as {}, skips a UTF-8 byte order mark,
//     ignores the request Content-Type, unknown JSON members at any level,
//     unknown query parameters and extension_optional; accepts
//     extension_mandatory as the standard's array of objects and also as one
//     plain object (the ETSI GS QKD 020 form);
//   - rejects with 400 and a message naming the field: malformed JSON,
//     trailing data, wrong JSON types, numbers that are not positive integers
//     (an explicit 0 too: the kms reads 0 as "not given"), repeated query
//     parameters, empty SAE IDs, key IDs that are not UUIDs, an empty or
//     repeating key ID list, and bodies over Options.MaxBodyBytes;
//   - answers 404 for other paths and 405 (with Allow) for other methods;
//   - mounts Options.Admin under /admin/ (the admin handler authorises).
//
// Key material: key containers are encoded by hand into a pooled buffer that
// is wiped after the write, and every kms.Key is wiped once encoded. Key
// bytes never reach logs or error text. Copies that net/http and crypto/tls
// make while sending (their pooled bufio buffers) are out of this package's
// reach.
package etsi014
