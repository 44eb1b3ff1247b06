package sdn

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// NodeStatus is a node's state as QUICKS reports it (monitor/status,
// notification/status). Only an online node is in service.
type NodeStatus string

// Node states.
const (
	NodeOnline  NodeStatus = "online"
	NodeStopped NodeStatus = "stopped"
	NodeOffline NodeStatus = "offline"
)

func (s NodeStatus) valid() bool {
	return s == NodeOnline || s == NodeStopped || s == NodeOffline
}

// LinkStatus says whether a QKD link can carry relayed key.
type LinkStatus string

// Link states.
const (
	LinkUp   LinkStatus = "up"
	LinkDown LinkStatus = "down"
)

// Policy chooses among the routes that exist.
type Policy int

const (
	// WidestShortest (the default) takes the route with the largest
	// bottleneck available rate, then the fewest hops, then the lowest node
	// IDs: it leaves the most headroom on the narrowest hop.
	WidestShortest Policy = iota
	// FewestHops takes, among the routes that can carry the requested rate,
	// the one with the fewest hops (then the lowest node IDs): fewer trusted
	// nodes see the key and less link key is spent per relayed bit. Best
	// effort requests and requests no route can carry fall back to
	// WidestShortest.
	FewestHops
)

// DefaultNominalFactor is the fraction of a link's nominal SKR assumed
// available until its agent reports: the topology file's rate is trusted.
const DefaultNominalFactor = 1.0

// Options configure a Controller. The zero value is usable.
type Options struct {
	// NominalFactor scales a link's nominal SKR (topology skr_bps) to the
	// effective rate assumed while there is no fresh report for it; 0 means
	// DefaultNominalFactor.
	NominalFactor float64
	// ReportTTL: a link report older than this is stale and the nominal
	// rate applies again; 0 means reports never go stale.
	ReportTTL time.Duration
	// Policy chooses among routes; the zero value is WidestShortest.
	Policy Policy
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// LinkPerf is what an agent reports on one QKD link. Rates are in bit/s
// (QUICKS link/performance reports bytes/s: see PerfFromQUICKS).
type LinkPerf struct {
	At   time.Time `json:"timestamp"`
	SKR  float64   `json:"skr_bps"`   // secret key rate from the QKD modules
	ESKR float64   `json:"eskr_bps"`  // effective SKR: SKR less internal use (MACs)
	EXKR float64   `json:"exkr_bps"`  // key reserved for applications (informational)
	KAV  uint64    `json:"kav_bytes"` // key available for applications now, bytes
}

// PerfFromQUICKS converts a QUICKS kms-performance-entry (SKR, IKR, EXKR in
// bytes/s, KAV in bytes) to a LinkPerf: ESKR = SKR − IKR, rates × 8.
func PerfFromQUICKS(at time.Time, skr, ikr, exkr, kav int64) LinkPerf {
	return LinkPerf{
		At:   at,
		SKR:  8 * float64(max(skr, 0)),
		ESKR: 8 * float64(max(skr-ikr, 0)),
		EXKR: 8 * float64(max(exkr, 0)),
		KAV:  uint64(max(kav, 0)),
	}
}

// Controller holds the network state and answers routing requests. Build
// it with New; it is safe for concurrent use.
type Controller struct {
	topo   *topology.Topology
	g      *graph
	factor float64
	ttl    time.Duration
	policy Policy
	now    func() time.Time

	mu       sync.RWMutex
	node     []NodeStatus // guarded by mu; by node number
	down     []bool       // guarded by mu; by link position
	perf     []*LinkPerf  // guarded by mu; nil until reported
	promised []float64    // guarded by mu; bit/s promised per link
	streams  map[StreamID]*record
	seq      uint64 // guarded by mu; registration counter
	// renders counts configuration renderings (QKDNodeDocument.Seq, from
	// seqBase: the controller's start time in ns).
	renders atomic.Uint64
	seqBase uint64
}

// New returns a controller for topology t (read, never modified) with
// every node online, every link up and nothing promised.
func New(t *topology.Topology, opts Options) (*Controller, error) {
	if t == nil || len(t.Nodes) == 0 {
		return nil, fmt.Errorf("%w: empty topology", ErrInvalid)
	}
	f := opts.NominalFactor
	if f == 0 {
		f = DefaultNominalFactor
	}
	if !(f > 0) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%w: NominalFactor %v must be finite and > 0", ErrInvalid, opts.NominalFactor)
	}
	if opts.ReportTTL < 0 {
		return nil, fmt.Errorf("%w: ReportTTL %v < 0", ErrInvalid, opts.ReportTTL)
	}
	if opts.Policy != WidestShortest && opts.Policy != FewestHops {
		return nil, fmt.Errorf("%w: unknown Policy %d", ErrInvalid, opts.Policy)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	g := newGraph(t)
	c := &Controller{
		topo: t, g: g, factor: f, ttl: opts.ReportTTL, policy: opts.Policy, now: now,
		seqBase:  uint64(max(now().UnixNano(), 0)),
		node:     make([]NodeStatus, len(g.ids)),
		down:     make([]bool, len(g.links)),
		perf:     make([]*LinkPerf, len(g.links)),
		promised: make([]float64, len(g.links)),
		streams:  make(map[StreamID]*record),
	}
	for i := range c.node {
		c.node[i] = NodeOnline
	}
	return c, nil
}

// Topology returns the controller's topology (read-only).
func (c *Controller) Topology() *topology.Topology { return c.topo }

// Report records an agent's performance report for a link. A zero At is
// taken as now. Lowering a link's ESKR below what is promised on it moves
// no stream: LinkState shows the overload and the caller decides.
func (c *Controller) Report(link qkd.LinkID, p LinkPerf) error {
	li, ok := c.g.linkIndex[link]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownLink, link)
	}
	if !(p.SKR >= 0) || !(p.ESKR >= 0) || !(p.EXKR >= 0) || math.IsInf(p.SKR+p.ESKR+p.EXKR, 0) {
		return fmt.Errorf("%w: link %q report has a negative or non-finite rate", ErrInvalid, link)
	}
	if p.At.IsZero() {
		p.At = c.now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.perf[li] = &p
	return nil
}

// capacity is a link's effective rate now, or unusable if it is down.
// Caller holds mu.
func (c *Controller) capacity(li int, now time.Time) float64 {
	if c.down[li] {
		return unusable
	}
	if p := c.perf[li]; p != nil && (c.ttl == 0 || now.Sub(p.At) <= c.ttl) {
		return p.ESKR
	}
	return c.g.links[li].SKRbps * c.factor
}

// weights are the current capacities less promises. Caller holds mu.
func (c *Controller) weights(now time.Time) *weights {
	ok := make([]bool, len(c.node))
	for i, s := range c.node {
		ok[i] = s == NodeOnline
	}
	link := make([]float64, len(c.g.links))
	nominal := make([]float64, len(c.g.links))
	for li := range link {
		if cp := c.capacity(li, now); cp >= 0 {
			link[li] = max(cp-c.promised[li], 0)
			nominal[li] = max(c.g.links[li].SKRbps*c.factor-c.promised[li], 0)
		} else {
			link[li], nominal[li] = unusable, unusable
		}
	}
	w := newWeights(c.g, ok, link)
	w.nominal = nominal
	return w
}

// NodeState is one node's status.
type NodeState struct {
	ID     qkd.NodeID `json:"id"`
	Status NodeStatus `json:"status"`
}

// Nodes returns every node's status, in node-ID order.
func (c *Controller) Nodes() []NodeState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]NodeState, len(c.g.ids))
	for i, id := range c.g.ids {
		out[i] = NodeState{ID: id, Status: c.node[i]}
	}
	return out
}

// LinkState is one link's state.
type LinkState struct {
	ID       qkd.LinkID `json:"id"`
	A        qkd.NodeID `json:"a"`
	B        qkd.NodeID `json:"b"`
	Status   LinkStatus `json:"status"`
	Nominal  float64    `json:"nominal_bps"`           // topology skr_bps
	Perf     *LinkPerf  `json:"performance,omitempty"` // last report, fresh or not
	Stale    bool       `json:"stale,omitempty"`       // Perf is older than ReportTTL
	Capacity float64    `json:"capacity_bps"`          // effective rate routing assumes (0 when down)
	Promised float64    `json:"promised_bps"`          // sum of rates promised to streams
	// Available is Capacity − Promised, at least 0. Promised > Capacity
	// means the link is overloaded (015 sdqkdn_link_overloaded).
	Available float64    `json:"available_bps"`
	Streams   []StreamID `json:"streams,omitempty"` // streams booked on the link, by registration
}

// Links returns every link's state, in topology order.
func (c *Controller) Links() []LinkState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	now := c.now()
	users := c.linkUsers()
	out := make([]LinkState, len(c.g.links))
	for li := range c.g.links {
		out[li] = c.linkState(li, now, users[li])
	}
	return out
}

// linkState: caller holds mu.
func (c *Controller) linkState(li int, now time.Time, users []StreamID) LinkState {
	l := c.g.links[li]
	st := LinkState{ID: l.ID, A: l.A, B: l.B, Status: LinkUp, Nominal: l.SKRbps, Promised: c.promised[li], Streams: users}
	if c.down[li] {
		st.Status = LinkDown
	}
	if p := c.perf[li]; p != nil {
		cp := *p
		st.Perf = &cp
		st.Stale = c.ttl > 0 && now.Sub(p.At) > c.ttl
	}
	st.Capacity = max(c.capacity(li, now), 0)
	st.Available = max(st.Capacity-st.Promised, 0)
	return st
}

// linkUsers maps link positions to the streams booked on them, in
// registration order. Caller holds mu.
func (c *Controller) linkUsers() [][]StreamID {
	users := make([][]StreamID, len(c.g.links))
	for _, r := range c.sortedRecords() {
		for _, b := range r.booked {
			users[b.link] = append(users[b.link], r.s.ID)
		}
	}
	return users
}

// sortedRecords returns the streams in registration order. Caller holds mu.
func (c *Controller) sortedRecords() []*record {
	out := make([]*record, 0, len(c.streams))
	for _, r := range c.streams {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *record) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// MaxFlow returns the maximum rate, bit/s, that multipath relay could add
// between two nodes now: the max-flow over available rates (capacity less
// promises) of online nodes and up links.
func (c *Controller) MaxFlow(from, to qkd.NodeID) (float64, error) {
	s, d, err := c.g.pair(from, to)
	if err != nil {
		return 0, err
	}
	c.mu.RLock()
	w := c.weights(c.now())
	c.mu.RUnlock()
	v, _ := w.maxFlow(s, d)
	return v, nil
}
