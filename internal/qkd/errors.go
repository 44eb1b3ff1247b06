package qkd

import "errors"

// Domain errors. Transports map them to wire codes with errors.Is; their
// text is safe to show to a client.
var (
	// ErrNotFound: a key ID is unknown here, or not the caller's to ask for
	// under the given master (never reveals that a key exists).
	ErrNotFound = errors.New("one or more keys specified are not found on KME")
	// ErrUnauthorized: the caller may not have the key (not one of its slaves).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnknownSAE: an SAE ID that this node does not know.
	ErrUnknownSAE = errors.New("unknown SAE")
	// ErrInsufficientKey: not enough confirmed key material to serve the request now.
	ErrInsufficientKey = errors.New("insufficient key material available")
	// ErrNoRoute: no QKD connection (link or route) towards the peer SAE's node.
	ErrNoRoute = errors.New("no QKD connection available to the peer SAE's KME")
	// ErrPeerUnavailable: the peer KMS did not answer in time.
	ErrPeerUnavailable = errors.New("peer KME unavailable")
	// ErrInactive: the node was zeroised or stopped.
	ErrInactive = errors.New("KME is inactive")
)

// RequestError is a client mistake with a fixed public message (ETSI 014: 400
// with {"message": Msg}). Details are optional name/value pairs for the body.
type RequestError struct {
	Msg     string
	Details []map[string]any
}

func (e *RequestError) Error() string { return e.Msg }

// BadRequest returns a *RequestError with the given public message.
func BadRequest(msg string) error { return &RequestError{Msg: msg} }
