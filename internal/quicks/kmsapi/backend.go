package kmsapi

import (
	"context"
	"fmt"
	"io"

	"github.com/qkms/qkms/internal/quicks"
)

// AllHistory is the entries argument of Backend.LinkPerformance when the
// request did not limit the history: the backend returns all it has.
const AllHistory = -1

// Backend is the KMS behind the server: one method per QUICKS operation.
// Methods return wire types, or errors that wrap the sentinels of package
// quicks (their text is shown to the client):
//
//   - quicks.ErrBadRequest (or a *quicks.FieldError): 400;
//   - quicks.ErrForbidden: 403 (SetStatus: remote state change not allowed);
//   - quicks.ErrNotFound: 404 for an unknown link_id or key_stream_id, and
//     400 for an unknown device_id (UpdateDevice, RemoveDevice), as the
//     specification asks;
//   - quicks.ErrConflict: 409 (RegisterDevice, CreateRelay: exists already);
//   - quicks.ErrNotSupported: 501;
//   - anything else: 500 "internal error", the cause logged.
//
// Arguments were checked against the schema; IDs are UUIDs. The subject CN
// of the caller's certificate is quicks.Caller(ctx). A backend answer that
// breaks the schema (an unknown enum value, a missing ID) becomes a 500.
type Backend interface {
	// Version returns the QUICKS version implemented (quicks.Version).
	Version(ctx context.Context) (quicks.VersionInfo, error)
	Capabilities(ctx context.Context) (quicks.Capabilities, error)
	DeviceInfo(ctx context.Context) (quicks.DeviceInfo, error)
	// Status returns the KMS state. reset (query new_operation_state_only,
	// or reset in QUICKS 2.1) asks to report only operational events since
	// the last query.
	Status(ctx context.Context, reset bool) (quicks.KMSStatus, error)
	// Log returns the KMS log in any media type. The server closes Body.
	Log(ctx context.Context) (LogFile, error)
	QKDDevices(ctx context.Context) (quicks.QKDDeviceList, error)
	SetStatus(ctx context.Context, state quicks.State) error
	RegisterDevice(ctx context.Context, deviceID string, dev quicks.DeviceConnection) error
	// UpdateDevice changes the members given (non-empty) in dev.
	UpdateDevice(ctx context.Context, deviceID string, dev quicks.DeviceConnection) error
	RemoveDevice(ctx context.Context, deviceID string) error
	// LinkPerformance returns the current entry and at most entries history
	// entries (AllHistory: all; 0: none).
	LinkPerformance(ctx context.Context, linkID string, entries int) (quicks.Performance, error)
	CreateRelay(ctx context.Context, keyStreamID string, entry quicks.RelayConfig) error
	// ReplaceRelay changes the entry: members absent from entry (empty
	// Source, nil slices, nil QoSRequest) are unchanged.
	ReplaceRelay(ctx context.Context, keyStreamID string, entry quicks.RelayConfig) error
	DeleteRelay(ctx context.Context, keyStreamID string) error
}

// LogFile is the answer of Backend.Log.
type LogFile struct {
	// ContentType is the media type of Body ("" means
	// application/octet-stream), e.g. text/plain or application/json.
	ContentType string
	Body        io.ReadCloser
}

// Unimplemented answers every operation with quicks.ErrNotSupported (501)
// except Version. Embed it in a Backend to implement a subset.
type Unimplemented struct{}

func notSupported(op string) error { return fmt.Errorf("%w: %s", quicks.ErrNotSupported, op) }

func (Unimplemented) Version(context.Context) (quicks.VersionInfo, error) {
	return quicks.VersionInfo{Version: quicks.Version}, nil
}
func (Unimplemented) Capabilities(context.Context) (quicks.Capabilities, error) {
	return quicks.Capabilities{}, notSupported("monitor/capabilities")
}
func (Unimplemented) DeviceInfo(context.Context) (quicks.DeviceInfo, error) {
	return quicks.DeviceInfo{}, notSupported("monitor/device-info")
}
func (Unimplemented) Status(context.Context, bool) (quicks.KMSStatus, error) {
	return quicks.KMSStatus{}, notSupported("monitor/status")
}
func (Unimplemented) Log(context.Context) (LogFile, error) {
	return LogFile{}, notSupported("monitor/log")
}
func (Unimplemented) QKDDevices(context.Context) (quicks.QKDDeviceList, error) {
	return quicks.QKDDeviceList{}, notSupported("monitor/qkd-device")
}
func (Unimplemented) SetStatus(context.Context, quicks.State) error {
	return notSupported("control/status")
}
func (Unimplemented) RegisterDevice(context.Context, string, quicks.DeviceConnection) error {
	return notSupported("POST control/qkd-device")
}
func (Unimplemented) UpdateDevice(context.Context, string, quicks.DeviceConnection) error {
	return notSupported("PUT control/qkd-device")
}
func (Unimplemented) RemoveDevice(context.Context, string) error {
	return notSupported("DELETE control/qkd-device")
}
func (Unimplemented) LinkPerformance(context.Context, string, int) (quicks.Performance, error) {
	return quicks.Performance{}, notSupported("link/performance")
}
func (Unimplemented) CreateRelay(context.Context, string, quicks.RelayConfig) error {
	return notSupported("POST link/relay")
}
func (Unimplemented) ReplaceRelay(context.Context, string, quicks.RelayConfig) error {
	return notSupported("PUT link/relay")
}
func (Unimplemented) DeleteRelay(context.Context, string) error {
	return notSupported("DELETE link/relay")
}
