package quicks

// Version is the QUICKS API version implemented here: the info.version of
// both published OpenAPI files, openapi/sdn_to_kms_api.yaml and
// openapi/kms_to_sdn_api.yaml. Servers answer it on GET /version.
const Version = "2.2.0"

// Base paths of the two servers.
const (
	// BasePath is the root of the SDN agent's server (kms_to_sdn_api.yaml:
	// https://sdn_server/api/v2/sdn) and of the KMS's server as
	// QUICKS 2.0/2.1 name it (http://kms_server/api/v2/sdn).
	BasePath = "/api/v2/sdn"
	// KMSBasePath is the root that sdn_to_kms_api.yaml 2.2.0 gives the KMS's
	// server (https://kms_server/api/v2/kms). The KMS server answers under
	// both BasePath and KMSBasePath.
	KMSBasePath = "/api/v2/kms"
)

// Media types used by both APIs.
const (
	MediaTypeJSON        = "application/json"
	MediaTypeProblem     = "application/problem+json" // RFC 9457 §3
	MediaTypeOctetStream = "application/octet-stream"
)

// Capability extensions: what a qkms KMS can do beyond the fields of
// QUICKS, listed in Capabilities.Extension ("capabilities_extension").
const (
	ExtHybridPQC          = "hybrid_pqc"
	ExtITSMACPoly1305     = "its_mac:poly1305"
	ExtITSMACWegmanCarter = "its_mac:wegman_carter"
	ExtMultipath          = "multipath"
)
