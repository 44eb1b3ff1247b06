package sdn

import (
	"fmt"
	"math"
	"slices"

	"github.com/qkms/qkms/internal/qkd"
)

// StreamID is a key stream ID (QUICKS key_stream_id): a UUID, kept in
// canonical lower-case form.
type StreamID string

// Stream is a key stream: keys relayed at Rate from a source SAE's node to
// the destination SAEs' nodes along Route.
type Stream struct {
	ID              StreamID     `json:"key_stream_id"`
	SourceSAE       qkd.SAEID    `json:"source_sae,omitempty"`
	Source          qkd.NodeID   `json:"source"`
	DestinationSAEs []qkd.SAEID  `json:"destination_saes,omitempty"`
	Destinations    []qkd.NodeID `json:"destination"`
	// Rate is the promised rate, bit/s: Route.Rate (0 in Register means
	// Route.Rate; 0 after it means best effort).
	Rate  float64 `json:"rate_bps"`
	Route Route   `json:"route"`
}

// record is a registered stream and what it holds.
type record struct {
	s      Stream
	seq    uint64
	booked []booking
	nodes  []int // node numbers on the route, sorted
}

// Register records stream s and promises its rate on every link of its
// route. The route must come from Route (or an earlier Register) and still
// be valid: its nodes online, its links up, and enough rate left on every
// hop — parallel links are re-chosen against the current availability, so
// the returned Stream's hops may name other parallel links than s's.
// Errors wrap ErrInvalid, ErrStreamExists, ErrStaleRoute or ErrCapacity;
// on the last two, Route again.
func (c *Controller) Register(s Stream) (Stream, error) {
	if err := c.checkStream(&s); err != nil {
		return Stream{}, err
	}
	s = s.clone()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.streams[s.ID]; dup {
		return Stream{}, fmt.Errorf("%w: %s", ErrStreamExists, s.ID)
	}
	booked, err := c.weights(c.now()).allocateRoute(&s.Route)
	if err != nil {
		return Stream{}, fmt.Errorf("stream %s: %w", s.ID, err)
	}
	c.seq++
	c.book(&record{s: s, seq: c.seq}, booked)
	return s.clone(), nil
}

// Release forgets stream id and frees the rates it held (QUICKS DELETE
// link/{key_stream_id}).
func (c *Controller) Release(id StreamID) error {
	id, err := canonicalID(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.streams[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownStream, id)
	}
	c.unbook(r)
	delete(c.streams, id)
	return nil
}

// Stream returns the registered stream id.
func (c *Controller) Stream(id StreamID) (Stream, bool) {
	id, err := canonicalID(id)
	if err != nil {
		return Stream{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.streams[id]
	if !ok {
		return Stream{}, false
	}
	return r.s.clone(), true
}

// Streams returns every registered stream, in registration order.
func (c *Controller) Streams() []Stream {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []Stream
	for _, r := range c.sortedRecords() {
		out = append(out, r.s.clone())
	}
	return out
}

// book adds r to the streams and its rates to the promises. Caller holds mu.
func (c *Controller) book(r *record, booked []booking) {
	r.booked = booked
	r.nodes = r.nodes[:0]
	for _, p := range r.s.Route.Paths {
		for _, n := range p.Nodes {
			r.nodes = append(r.nodes, c.g.index[n])
		}
	}
	slices.Sort(r.nodes)
	r.nodes = slices.Compact(r.nodes)
	for _, b := range booked {
		c.promised[b.link] += b.rate
	}
	c.streams[r.s.ID] = r
}

// unbook frees r's rates (r stays in the streams). Caller holds mu.
func (c *Controller) unbook(r *record) {
	for _, b := range r.booked {
		if c.promised[b.link] -= b.rate; c.promised[b.link] < eps {
			c.promised[b.link] = 0
		}
	}
	r.booked = nil
}

func canonicalID(id StreamID) (StreamID, error) {
	u, err := qkd.ParseKeyID(string(id))
	if err != nil {
		return "", fmt.Errorf("%w: key stream ID %q is not a UUID", ErrInvalid, id)
	}
	return StreamID(u.String()), nil
}

// checkStream validates s and its route's shape (not the network state).
func (c *Controller) checkStream(s *Stream) error {
	id, err := canonicalID(s.ID)
	if err != nil {
		return err
	}
	s.ID = id
	r := &s.Route
	if s.Source != r.Source || !slices.Equal(s.Destinations, r.Destinations) {
		return fmt.Errorf("%w: stream %s: source or destinations differ from its route's", ErrInvalid, id)
	}
	if s.Rate == 0 {
		s.Rate = r.Rate
	}
	if !(s.Rate >= 0) || math.IsInf(s.Rate, 0) || math.Abs(s.Rate-r.Rate) > eps {
		return fmt.Errorf("%w: stream %s: rate %v is not its route's rate %v", ErrInvalid, id, s.Rate, r.Rate)
	}
	if _, _, err := c.checkRequest(Request{Source: s.Source, Destinations: s.Destinations}); err != nil {
		return fmt.Errorf("stream %s: %w", id, err)
	}
	if err := checkRouteShape(r); err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrInvalid, id, err)
	}
	return nil
}

// checkRouteShape: paths run from the source to the destinations hop by
// hop without loops; a single-path or group route is a tree with one path
// per destination; a multipath route's rates add up to its rate.
func checkRouteShape(r *Route) error {
	if len(r.Paths) == 0 {
		return fmt.Errorf("route has no path")
	}
	var sum float64
	for i, p := range r.Paths {
		if err := checkPath(p, r.Source); err != nil {
			return fmt.Errorf("path %d: %w", i, err)
		}
		last := p.Nodes[len(p.Nodes)-1]
		switch {
		case r.Multipath && last != r.Destinations[0]:
			return fmt.Errorf("path %d ends at %s, not %s", i, last, r.Destinations[0])
		case !r.Multipath && (len(r.Paths) != len(r.Destinations) || last != r.Destinations[i]):
			return fmt.Errorf("want one path per destination, in order")
		case !(p.Rate >= 0):
			return fmt.Errorf("path %d: negative rate", i)
		}
		sum += p.Rate
	}
	if r.Multipath {
		if len(r.Destinations) != 1 || math.Abs(sum-r.Rate) > eps*float64(len(r.Paths)) {
			return fmt.Errorf("multipath rates add up to %v, not %v", sum, r.Rate)
		}
		return nil
	}
	parent := make(map[qkd.NodeID]qkd.NodeID)
	for _, p := range r.Paths {
		for _, h := range p.Hops {
			if q, ok := parent[h.To]; ok && q != h.From {
				return fmt.Errorf("node %s has two previous hops (%s, %s)", h.To, q, h.From)
			}
			parent[h.To] = h.From
		}
	}
	if _, ok := parent[r.Source]; ok {
		return fmt.Errorf("a hop enters the source %s", r.Source)
	}
	return nil
}

func checkPath(p Path, source qkd.NodeID) error {
	if len(p.Nodes) < 2 || len(p.Hops) != len(p.Nodes)-1 || p.Nodes[0] != source {
		return fmt.Errorf("want nodes from %s and one hop fewer than nodes", source)
	}
	seen := make(map[qkd.NodeID]bool, len(p.Nodes))
	for i, n := range p.Nodes {
		if seen[n] {
			return fmt.Errorf("node %s twice", n)
		}
		seen[n] = true
		if i > 0 && (p.Hops[i-1].From != p.Nodes[i-1] || p.Hops[i-1].To != n) {
			return fmt.Errorf("hop %d does not join %s and %s", i-1, p.Nodes[i-1], n)
		}
	}
	return nil
}

func (s Stream) clone() Stream {
	s.DestinationSAEs = slices.Clone(s.DestinationSAEs)
	s.Destinations = slices.Clone(s.Destinations)
	s.Route = s.Route.clone()
	return s
}

func (r Route) clone() Route {
	r.Destinations = slices.Clone(r.Destinations)
	r.Paths = slices.Clone(r.Paths)
	for i := range r.Paths {
		p := &r.Paths[i]
		p.Nodes = slices.Clone(p.Nodes)
		p.Hops = cloneHops(p.Hops)
	}
	if r.Tree != nil {
		t := make(map[qkd.NodeID][]Hop, len(r.Tree))
		for n, hs := range r.Tree {
			t[n] = cloneHops(hs)
		}
		r.Tree = t
	}
	return r
}

func cloneHops(hs []Hop) []Hop {
	hs = slices.Clone(hs)
	for i := range hs {
		hs[i].Shares = slices.Clone(hs[i].Shares)
	}
	return hs
}
