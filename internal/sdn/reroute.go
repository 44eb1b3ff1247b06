package sdn

import (
	"fmt"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// EventKind names a change in the network.
type EventKind string

// Events.
const (
	// EventLinkDown: a QKD link stopped (015 sdqkdn_link_down). Streams on
	// it are rerouted.
	EventLinkDown EventKind = "link_down"
	// EventLinkUp: a link is back. No stream moves.
	EventLinkUp EventKind = "link_up"
	// EventNodeStatus: a node's status changed (QUICKS
	// notification/status). Streams through a node that leaves service are
	// rerouted; streams that start or end there are released.
	EventNodeStatus EventKind = "node_status"
)

// Event is a change in the network.
type Event struct {
	Kind   EventKind  `json:"kind"`
	Link   qkd.LinkID `json:"link,omitempty"`   // EventLinkDown, EventLinkUp
	Node   qkd.NodeID `json:"node,omitempty"`   // EventNodeStatus
	Status NodeStatus `json:"status,omitempty"` // EventNodeStatus
}

// Rerouted reports what an event did to one stream; the caller turns it
// into QUICKS link/relay updates (new route), deletions and notifications.
type Rerouted struct {
	// Stream is the stream as it now is, with its new route; when Err is
	// set it is the stream as it was, now released.
	Stream Stream `json:"stream"`
	Old    Route  `json:"old_route"` // the route before the event
	// Degraded: the new route carries less than the stream's rate before
	// (Stream.Rate is the new, lower rate).
	Degraded bool `json:"degraded,omitempty"`
	// Err wraps ErrNoRoute when no new route exists.
	Err error `json:"-"`
}

// Reroute applies ev to the network state and moves the streams it
// affects: their rates are freed first, then each is routed again, in
// registration order, with its rate and options. A stream that finds no
// route is released. The result lists the affected streams in that order.
func (c *Controller) Reroute(ev Event) ([]Rerouted, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	affected, err := c.apply(ev)
	if err != nil || len(affected) == 0 {
		return nil, err
	}
	for _, r := range affected {
		c.unbook(r)
	}
	now := c.now()
	out := make([]Rerouted, 0, len(affected))
	for _, r := range affected {
		out = append(out, c.rerouteOne(r, now))
	}
	return out, nil
}

// SetNodeStatus is Reroute(Event{Kind: EventNodeStatus, ...}).
func (c *Controller) SetNodeStatus(n qkd.NodeID, s NodeStatus) ([]Rerouted, error) {
	return c.Reroute(Event{Kind: EventNodeStatus, Node: n, Status: s})
}

// SetLinkStatus is Reroute with EventLinkUp or EventLinkDown.
func (c *Controller) SetLinkStatus(l qkd.LinkID, s LinkStatus) ([]Rerouted, error) {
	switch s {
	case LinkUp:
		return c.Reroute(Event{Kind: EventLinkUp, Link: l})
	case LinkDown:
		return c.Reroute(Event{Kind: EventLinkDown, Link: l})
	}
	return nil, fmt.Errorf("%w: link status %q", ErrInvalid, s)
}

// apply changes the state and returns the streams to move, in
// registration order. Caller holds mu.
func (c *Controller) apply(ev Event) ([]*record, error) {
	var hit func(*record) bool
	switch ev.Kind {
	case EventLinkDown, EventLinkUp:
		li, ok := c.g.linkIndex[ev.Link]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownLink, ev.Link)
		}
		was := c.down[li]
		c.down[li] = ev.Kind == EventLinkDown
		if was || ev.Kind == EventLinkUp {
			return nil, nil
		}
		hit = func(r *record) bool {
			return slices.ContainsFunc(r.booked, func(b booking) bool { return b.link == li })
		}
	case EventNodeStatus:
		n, ok := c.g.index[ev.Node]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownNode, ev.Node)
		}
		if !ev.Status.valid() {
			return nil, fmt.Errorf("%w: node status %q", ErrInvalid, ev.Status)
		}
		was := c.node[n]
		c.node[n] = ev.Status
		if was != NodeOnline || ev.Status == NodeOnline {
			return nil, nil
		}
		hit = func(r *record) bool { _, ok := slices.BinarySearch(r.nodes, n); return ok }
	default:
		return nil, fmt.Errorf("%w: event kind %q", ErrInvalid, ev.Kind)
	}
	var out []*record
	for _, r := range c.sortedRecords() {
		if hit(r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// rerouteOne routes an unbooked stream again and books it, or releases
// it. Caller holds mu.
func (c *Controller) rerouteOne(r *record, now time.Time) Rerouted {
	old := r.s.Route
	req := Request{Source: r.s.Source, Destinations: r.s.Destinations, Rate: r.s.Rate, Options: old.Options}
	w := c.weights(now)
	nr, err := c.route(req, w)
	var booked []booking
	if err == nil {
		booked, err = w.allocateRoute(&nr)
	}
	if err != nil {
		delete(c.streams, r.s.ID)
		return Rerouted{Stream: r.s.clone(), Old: old.clone(), Err: fmt.Errorf("stream %s: %w", r.s.ID, err)}
	}
	res := Rerouted{Old: old.clone(), Degraded: nr.Rate < r.s.Rate-eps}
	r.s.Route, r.s.Rate = nr, nr.Rate
	c.book(r, booked)
	res.Stream = r.s.clone()
	return res
}
