package quicks

import "regexp"

// State is the state of a KMS or of a QKD device (monitor/status,
// control/status, qkd-device-info.state).
type State string

const (
	StateOnline  State = "online"
	StateStopped State = "stopped"
	StateOffline State = "offline"
)

// Valid reports whether s is one of the published values.
func (s State) Valid() bool {
	return s == StateOnline || s == StateStopped || s == StateOffline
}

// Operation is the operational condition of a KMS (monitor/status).
type Operation string

const (
	OperationNormal   Operation = "normal operation"
	OperationWarnings Operation = "warnings"
	OperationErrors   Operation = "errors"
	OperationCritical Operation = "critical"
)

// Valid reports whether o is one of the published values.
func (o Operation) Valid() bool {
	switch o {
	case OperationNormal, OperationWarnings, OperationErrors, OperationCritical:
		return true
	}
	return false
}

// AppAPI names an application interface of a KMS (app_api_support).
type AppAPI string

const (
	AppAPIETSI004 AppAPI = "etsi_004"
	AppAPIETSI014 AppAPI = "etsi_014"
	AppAPIKMIP    AppAPI = "kmip"
	AppAPISKIP    AppAPI = "skip"
)

// snakeCase is "lower case snake case", the form QUICKS asks for names of
// interfaces beyond its enum.
var snakeCase = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)

// Valid reports whether a is a published value or, as the specification
// allows for additional interfaces, a lower case snake case name.
func (a AppAPI) Valid() bool { return snakeCase.MatchString(string(a)) }

// Interface is the interface type of a QKD device (qkd-device-info).
type Interface string

const (
	InterfaceETSI004 Interface = "etsi_004"
	InterfaceETSI014 Interface = "etsi_014"
	InterfaceSKIP    Interface = "skip"
)

// Valid reports whether i is one of the published values.
func (i Interface) Valid() bool {
	return i == InterfaceETSI004 || i == InterfaceETSI014 || i == InterfaceSKIP
}

// QoSType says which application interface a QoS request came from
// (qos-data.type).
type QoSType string

const (
	QoSETSI004 QoSType = "etsi_004"
	QoSETSI014 QoSType = "etsi_014"
)

// Valid reports whether t is one of the published values.
func (t QoSType) Valid() bool { return t == QoSETSI004 || t == QoSETSI014 }

// EventLevel is the severity of a notification/event.
type EventLevel string

const (
	LevelDebug    EventLevel = "debug"
	LevelInfo     EventLevel = "info"
	LevelWarning  EventLevel = "warning"
	LevelError    EventLevel = "error"
	LevelCritical EventLevel = "critical"
)

// Valid reports whether l is one of the published values.
func (l EventLevel) Valid() bool {
	switch l {
	case LevelDebug, LevelInfo, LevelWarning, LevelError, LevelCritical:
		return true
	}
	return false
}
