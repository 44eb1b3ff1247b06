package sdn

import (
	"errors"

	"github.com/qkms/qkms/internal/qkd"
)

// Errors. Test with errors.Is; the messages carry the details.
var (
	// ErrNoRoute: no route joins the source to the destination(s) over
	// online nodes and up links, or (for a request with a rate) every such
	// route is saturated. It is qkd.ErrNoRoute, so transports map it once.
	ErrNoRoute = qkd.ErrNoRoute
	// ErrUnknownNode: a node ID the topology does not have.
	ErrUnknownNode = errors.New("sdn: unknown node")
	// ErrUnknownLink: a link ID the topology does not have.
	ErrUnknownLink = errors.New("sdn: unknown link")
	// ErrInvalid: a malformed request, stream or event.
	ErrInvalid = errors.New("sdn: invalid argument")
	// ErrStreamExists: Register with a key stream ID already registered.
	ErrStreamExists = errors.New("sdn: key stream already registered")
	// ErrUnknownStream: no key stream with that ID is registered.
	ErrUnknownStream = errors.New("sdn: unknown key stream")
	// ErrStaleRoute: the route uses a node that is not online, a link that
	// is down, or links that do not join its hops. Route again.
	ErrStaleRoute = errors.New("sdn: route no longer valid")
	// ErrCapacity: a hop of the route can no longer carry the stream's rate
	// (another stream took it since Route). Route again.
	ErrCapacity = errors.New("sdn: not enough key rate left on the route")
)
