package agentapi

import (
	"context"
	"fmt"

	"github.com/qkms/qkms/internal/quicks"
)

// Backend is the SDN agent behind the server: one method per QUICKS
// operation of kms_to_sdn_api.yaml. Methods return wire types, or errors
// that wrap the sentinels of package quicks (their text is shown to the
// client): quicks.ErrBadRequest 400, quicks.ErrForbidden 403,
// quicks.ErrNotFound 404 (an unknown key_stream_id), quicks.ErrConflict
// 409, quicks.ErrNotSupported 501; anything else is 500 "internal error",
// the cause logged. Arguments were checked against the schema; the caller's
// certificate CN is quicks.Caller(ctx). An answer that breaks the schema
// becomes a 500.
//
// Client implements Backend too: the methods have the same meaning on
// both sides of the wire.
type Backend interface {
	// Version returns the QUICKS version implemented (quicks.Version).
	Version(ctx context.Context) (quicks.VersionInfo, error)
	// LinkStatus returns the ETSI 014 status of the path between two SAEs.
	LinkStatus(ctx context.Context, masterSAEID, slaveSAEID string) (quicks.LinkStatus, error)
	// Register sets up the path of a new key stream (201).
	Register(ctx context.Context, req quicks.LinkRegistration) (quicks.RegistrationResult, error)
	// PatchRegistration: the destination KMS established the keys.
	PatchRegistration(ctx context.Context, req quicks.RegistrationUpdate) error
	// DeleteStream: an ETSI 004 application closed its key stream.
	DeleteStream(ctx context.Context, keyStreamID string) error
	// NotifyRegistration: a KMS joined. It may return a vendor specific
	// configuration file (sent as application/octet-stream), or nil.
	NotifyRegistration(ctx context.Context, req quicks.KMSRegistration) (config []byte, err error)
	// NotifyStatus: the KMS's state changed.
	NotifyStatus(ctx context.Context, req quicks.StatusNotification) error
	// NotifyEvent: the KMS reports an event.
	NotifyEvent(ctx context.Context, req quicks.Event) error
}

// Unimplemented answers every operation with quicks.ErrNotSupported (501)
// except Version. Embed it in a Backend to implement a subset.
type Unimplemented struct{}

func notSupported(op string) error { return fmt.Errorf("%w: %s", quicks.ErrNotSupported, op) }

func (Unimplemented) Version(context.Context) (quicks.VersionInfo, error) {
	return quicks.VersionInfo{Version: quicks.Version}, nil
}
func (Unimplemented) LinkStatus(context.Context, string, string) (quicks.LinkStatus, error) {
	return quicks.LinkStatus{}, notSupported("link/status")
}
func (Unimplemented) Register(context.Context, quicks.LinkRegistration) (quicks.RegistrationResult, error) {
	return quicks.RegistrationResult{}, notSupported("POST link/registration")
}
func (Unimplemented) PatchRegistration(context.Context, quicks.RegistrationUpdate) error {
	return notSupported("PATCH link/registration")
}
func (Unimplemented) DeleteStream(context.Context, string) error {
	return notSupported("DELETE link/{key_stream_id}")
}
func (Unimplemented) NotifyRegistration(context.Context, quicks.KMSRegistration) ([]byte, error) {
	return nil, notSupported("notification/registration")
}
func (Unimplemented) NotifyStatus(context.Context, quicks.StatusNotification) error {
	return notSupported("notification/status")
}
func (Unimplemented) NotifyEvent(context.Context, quicks.Event) error {
	return notSupported("notification/event")
}
