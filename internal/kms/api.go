package kms

import (
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Status is the answer to ETSI GS QKD 014 "Get status" for an SAE pair.
type Status struct {
	SourceKME        qkd.KMEID
	TargetKME        qkd.KMEID
	Master           qkd.SAEID
	Slave            qkd.SAEID
	KeySize          int // bits
	StoredKeyCount   int
	MaxKeyCount      int
	MaxKeyPerRequest int
	MaxKeySize       int // bits
	MinKeySize       int // bits
	MaxSAEIDCount    int
}

// KeyRequest is an ETSI 014 "Get key" request after transport decoding.
// Zero Number / Size mean "not given" (defaults: 1 and the key size).
type KeyRequest struct {
	Number           int
	Size             int // bits
	AdditionalSlaves []qkd.SAEID
	// Hybrid: the application requires post-quantum hybrid keys (ETSI 014
	// extension_mandatory qkms_hybrid: true). Served only when the pair's
	// keys are hybrid (relayed, with the pair's hybrid policy on), else
	// refused: never silently plain keys.
	Hybrid bool
}

// Key is one delivered key. The receiver owns Bytes and wipes it after use.
type Key struct {
	ID    qkd.KeyID
	Bytes secret.Bytes
}
