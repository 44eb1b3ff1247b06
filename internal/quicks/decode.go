package quicks

// Decoders of every QUICKS JSON message. Each checks JSON syntax, the
// required members of the published schema, the JSON types, enums and
// formats, and returns a FieldErrors (matching ErrBadRequest) that names
// every field at fault. Unknown members are ignored.

var (
	problemShape = &shape{required: []string{"title", "status", "detail"}}
	versionShape = &shape{required: []string{"version"}}
)

// DecodeVersionInfo decodes the answer of GET /version.
func DecodeVersionInfo(data []byte) (VersionInfo, error) {
	return decode(data, versionShape, (*VersionInfo).Validate)
}

// DecodeCapabilities decodes the answer of GET /monitor/capabilities.
func DecodeCapabilities(data []byte) (Capabilities, error) {
	return decode(data, capabilitiesShape, (*Capabilities).Validate)
}

// DecodeDeviceInfo decodes the answer of GET /monitor/device-info.
func DecodeDeviceInfo(data []byte) (DeviceInfo, error) {
	return decode(data, deviceInfoShape, (*DeviceInfo).Validate)
}

// DecodeKMSStatus decodes the answer of GET /monitor/status.
func DecodeKMSStatus(data []byte) (KMSStatus, error) {
	return decode(data, kmsStatusShape, (*KMSStatus).Validate)
}

// DecodeQKDDeviceList decodes the answer of GET /monitor/qkd-device.
func DecodeQKDDeviceList(data []byte) (QKDDeviceList, error) {
	return decode(data, qkdDeviceListShape, (*QKDDeviceList).Validate)
}

// DecodeStateChange decodes the body of PUT /control/status.
func DecodeStateChange(data []byte) (StateChange, error) {
	return decode(data, stateChangeShape, (*StateChange).Validate)
}

// DecodeDeviceRegistration decodes the body of POST /control/qkd-device/{id}.
func DecodeDeviceRegistration(data []byte) (DeviceConnection, error) {
	return decode(data, deviceRegistrationShape, (*DeviceConnection).Validate)
}

// DecodeDeviceUpdate decodes the body of PUT /control/qkd-device/{id}.
func DecodeDeviceUpdate(data []byte) (DeviceConnection, error) {
	return decode(data, deviceUpdateShape, (*DeviceConnection).ValidateUpdate)
}

// DecodePerformance decodes the answer of GET /link/performance/{link_id}.
func DecodePerformance(data []byte) (Performance, error) {
	return decode(data, performanceShape, (*Performance).Validate)
}

// DecodeRelayConfig decodes the body of POST /link/relay/{key_stream_id}.
func DecodeRelayConfig(data []byte) (RelayConfig, error) {
	return decode(data, relayConfigShape, (*RelayConfig).Validate)
}

// DecodeRelayUpdate decodes the body of PUT /link/relay/{key_stream_id}.
func DecodeRelayUpdate(data []byte) (RelayConfig, error) {
	return decode(data, relayUpdateShape, (*RelayConfig).ValidateUpdate)
}

// DecodeLinkStatus decodes the answer of GET /link/status.
func DecodeLinkStatus(data []byte) (LinkStatus, error) {
	return decode(data, linkStatusShape, (*LinkStatus).Validate)
}

// DecodeLinkRegistration decodes the body of POST /link/registration.
func DecodeLinkRegistration(data []byte) (LinkRegistration, error) {
	return decode(data, linkRegistrationShape, (*LinkRegistration).Validate)
}

// DecodeRegistrationResult decodes the 201 answer of POST /link/registration.
func DecodeRegistrationResult(data []byte) (RegistrationResult, error) {
	return decode(data, registrationResultShape, (*RegistrationResult).Validate)
}

// DecodeRegistrationUpdate decodes the body of PATCH /link/registration.
func DecodeRegistrationUpdate(data []byte) (RegistrationUpdate, error) {
	return decode(data, registrationUpdateShape, (*RegistrationUpdate).Validate)
}

// DecodeKMSRegistration decodes the body of POST /notification/registration.
func DecodeKMSRegistration(data []byte) (KMSRegistration, error) {
	return decode(data, kmsRegistrationShape, (*KMSRegistration).Validate)
}

// DecodeStatusNotification decodes the body of PATCH /notification/status.
func DecodeStatusNotification(data []byte) (StatusNotification, error) {
	return decode(data, statusNotificationShape, (*StatusNotification).Validate)
}

// DecodeEvent decodes the body of PUT /notification/event.
func DecodeEvent(data []byte) (Event, error) {
	return decode(data, eventShape, (*Event).Validate)
}
