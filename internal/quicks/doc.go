// Package quicks holds the wire types of QUICKS v2.2.0 ("QKDN Universal
// Interface for Communication between KMS and SDN", AIT,
// github.com/ait-crypto/kms-sdn-agent-interface-specification), the
// interface between a KMS and its node's SDN agent: both
// directions, HTTPS with TLS 1.3 and mutual TLS, RFC 9457
// problem details for errors, 501 for what is not supported (QUICKS
// readme §3.6).
//
// It implements, with field names, JSON types, enums and required members
// exactly as published:
//
//   - openapi/sdn_to_kms_api.yaml 2.2.0 ("SDN Agent to KMS API - KMS
//     Server"), the server the KMS hosts: VersionInfo, Capabilities,
//     ETSI014Info, DeviceInfo, KMSStatus, QKDDeviceList, StateChange,
//     DeviceConnection, Performance, PerformanceEntry, RelayConfig,
//     QoSData, PeerApplicationInfo (package kmsapi serves them);
//   - openapi/kms_to_sdn_api.yaml 2.2.0 ("KMS to SDN Agent API - SDN
//     server"), the server the SDN agent hosts: LinkStatus,
//     LinkRegistration, RegistrationResult, RegistrationUpdate,
//     KMSRegistration, StatusNotification, Event (package agentapi);
//   - components/schemas/error-response of both: Problem (RFC 9457 §3,
//     application/problem+json).
//
// Every message has a Decode function that checks JSON syntax, the
// published required members (present and not null), JSON types, enum
// values and formats (uuid, date-time, semantic versions) and returns
// FieldErrors naming each field at fault; messages also validate
// themselves before they are sent. Unknown members are ignored, as the
// schemas allow additional properties. ProblemFor is the one mapping from
// errors (ErrBadRequest, ErrForbidden, ErrNotFound, ErrConflict,
// ErrTooLarge, ErrNotSupported) to statuses; a *Problem received by a
// client unwraps to the same sentinels.
//
// Beyond QUICKS: Capabilities.Extension ("capabilities_extension") lists
// what a qkms KMS can do beyond QUICKS's fields (hybrid_pqc, its_mac:*,
// multipath). README.md lists the endpoints and every reading of an
// ambiguous point of the specification.
package quicks
