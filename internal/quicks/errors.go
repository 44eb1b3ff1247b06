package quicks

import (
	"errors"
	"strings"
)

// Errors a Backend returns to choose the status of the answer. The servers
// map them to RFC 9457 problem details in one place (ProblemFor); the text of
// an error that wraps one of them becomes the problem's detail, so it must be
// safe to show to the client. A client turns a problem back into a *Problem
// that unwraps to the same sentinel.
var (
	// ErrBadRequest: 400. *FieldError and FieldErrors match it.
	ErrBadRequest = errors.New("bad request")
	// ErrForbidden: 403 (for example a KMS that refuses a remote state change).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: 404 (an unknown link_id or key_stream_id). The KMS server
	// answers 400 for an unknown device_id, as sdn_to_kms_api.yaml says.
	ErrNotFound = errors.New("not found")
	// ErrConflict: 409 (the resource exists already).
	ErrConflict = errors.New("conflict")
	// ErrTooLarge: 413, a request body over the server's limit.
	ErrTooLarge = errors.New("request body too large")
	// ErrNotSupported: 501, a QUICKS feature this implementation does not
	// offer (QUICKS readme §3.6).
	ErrNotSupported = errors.New("not supported by this implementation")
	// ErrUnavailable: 503, the service cannot do it now (for example no
	// route with enough key is left for a registration).
	ErrUnavailable = errors.New("service unavailable")
	// ErrInvalidAnswer is a client-side error: the server answered 2xx with
	// a body that is not the published message.
	ErrInvalidAnswer = errors.New("answer does not match the QUICKS schema")
)

// FieldError is a client mistake in one named field: a JSON member (dotted
// path with array indices, "qos_request.etsi_014.number",
// "performance[0].link_id"), a query or path parameter, or "body".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Is makes every FieldError match ErrBadRequest.
func (e *FieldError) Is(target error) bool { return target == ErrBadRequest }

// BadField returns a *FieldError: field is wrong for reason.
func BadField(field, reason string) error { return &FieldError{Field: field, Reason: reason} }

// FieldErrors is every problem found in one message, in a stable order.
type FieldErrors []*FieldError

func (es FieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Is makes FieldErrors match ErrBadRequest.
func (es FieldErrors) Is(target error) bool { return target == ErrBadRequest }

// asError returns nil for no problems, else es.
func (es FieldErrors) asError() error {
	if len(es) == 0 {
		return nil
	}
	return es
}
