package peer

import (
	"errors"
	"fmt"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/qkms/qkms/internal/kmsproto"
)

// Errors a Handler returns and Call reports; each is one CoAP response code.
var (
	// ErrBadRequest (4.00): the message is malformed or inconsistent.
	// kmsproto.ErrMalformed maps to the same code.
	ErrBadRequest = errors.New("peer: bad request")
	// ErrUnauthenticated (4.01): MAC failure or replay. Sent without a body.
	ErrUnauthenticated = errors.New("peer: unauthenticated")
	// ErrTooLarge (4.13): the payload exceeds MaxPayload.
	ErrTooLarge = errors.New("peer: payload too large")
	// ErrUnsupportedFormat (4.15): the request is not application/cbor.
	ErrUnsupportedFormat = errors.New("peer: unsupported content format")
	// ErrUnavailable (5.03): the peer cannot serve now (stopped, zeroised,
	// overloaded); nothing was done, try again later.
	ErrUnavailable = errors.New("peer: unavailable")
	// ErrInternal (5.00): any other failure at the peer.
	ErrInternal = errors.New("peer: internal error")
)

// Transport outcomes of Call, not sent by peers.
var (
	// ErrNotSent: the request did not leave this host (no connection, client
	// closed). Sending the same bytes again is safe.
	ErrNotSent = errors.New("peer: request not sent")
	// ErrNoReply: the request may have been delivered, but no usable reply
	// came back (timeout, connection lost, malformed response). The same
	// bytes must not be sent again: retry with a new sequence number.
	ErrNoReply = errors.New("peer: no reply")
)

// Server-side conditions without an exported sentinel.
var (
	errMethod        = errors.New("peer: method not allowed")
	errNotAcceptable = errors.New("peer: not acceptable")
)

// codeTable is the only place where errors and CoAP codes meet. Server:
// the first entry whose err matches gives the code. Client: the code's
// entry marked back gives the sentinel.
var codeTable = []struct {
	err  error
	code codes.Code
	back bool // the client reports this sentinel for this code
}{
	{ErrUnauthenticated, codes.Unauthorized, true},
	{ErrBadRequest, codes.BadRequest, true},
	{kmsproto.ErrMalformed, codes.BadRequest, false},
	{errMethod, codes.MethodNotAllowed, false},
	{errNotAcceptable, codes.NotAcceptable, false},
	{ErrTooLarge, codes.RequestEntityTooLarge, true},
	{ErrUnsupportedFormat, codes.UnsupportedMediaType, true},
	{ErrUnavailable, codes.ServiceUnavailable, true},
	{ErrInternal, codes.InternalServerError, true},
}

// codeOf maps a handler's error to the response code (2.04 for nil).
func codeOf(err error) codes.Code {
	if err == nil {
		return codes.Changed
	}
	for _, e := range codeTable {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return codes.InternalServerError
}

// StatusError is a CoAP error response to a Call. It unwraps to the
// sentinel of its code (errors.Is(err, ErrUnauthenticated) for 4.01), if
// there is one.
type StatusError struct {
	Type kmsproto.Type
	Code codes.Code
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("peer: %s: response %d.%02d %v", e.Type, e.Code>>5, e.Code&0x1f, e.Code)
}

// Unwrap returns the exported sentinel for e.Code, or nil.
func (e *StatusError) Unwrap() error {
	for _, m := range codeTable {
		if m.back && m.code == e.Code {
			return m.err
		}
	}
	return nil
}
