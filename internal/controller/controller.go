package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/sdn"
	"github.com/qkms/qkms/internal/topology"
)

// Options configure a Controller.
type Options struct {
	Topology *topology.Topology
	// ClientTLS is the controller's client configuration towards the
	// agents (its certificate and the network CA).
	ClientTLS *tls.Config
	// OperatorCN is the CN of the operator's client certificate, accepted
	// on every endpoint; agents are accepted by their node's KME
	// certificate ("KME_" + node ID).
	OperatorCN string
	Logger     *slog.Logger
	// NodeTimeout: a node whose agent has not reported for this long is
	// taken out of the routes (default 10 s: an idle agent reports every
	// agent.DefaultHeartbeat, 3 s, so three reports in a row must be lost).
	NodeTimeout time.Duration
	// PushTimeout bounds one configuration push to an agent (default 10 s).
	PushTimeout time.Duration
	Now         func() time.Time
}

// DefaultNodeTimeout is Options.NodeTimeout's default.
const DefaultNodeTimeout = 10 * time.Second

// Controller is the SDN controller service. Create it with New, serve its
// Handler over mTLS and run Run for liveness checks.
type Controller struct {
	o   Options
	sdn *sdn.Controller
	log *slog.Logger
	cn  map[string]qkd.NodeID // agent certificate CN → node

	mu     sync.Mutex
	agents map[qkd.NodeID]*agentConn // guarded by mu
	ends   map[qkd.LinkID]map[qkd.NodeID]bool
	down   map[qkd.LinkID]bool // guarded by mu: combined status sent to sdn
	status map[qkd.NodeID]sdn.NodeStatus
	pairs  map[string]sdn.StreamID // guarded by mu: pair → stream
	limits map[qkd.NodeID]Limits
	kav    map[qkd.LinkID]map[qkd.NodeID]uint64
	notes  []Notification // guarded by mu: ring of the last maxNotes
}

const maxNotes = 1000

// New returns a controller for o.Topology.
func New(o Options) (*Controller, error) {
	if o.Topology == nil {
		return nil, errors.New("controller: a topology is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = DefaultNodeTimeout
	}
	if o.PushTimeout <= 0 {
		o.PushTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s, err := sdn.New(o.Topology, sdn.Options{Now: o.Now, ReportTTL: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	c := &Controller{o: o, sdn: s, log: o.Logger, cn: map[string]qkd.NodeID{},
		agents: map[qkd.NodeID]*agentConn{}, ends: map[qkd.LinkID]map[qkd.NodeID]bool{}, down: map[qkd.LinkID]bool{},
		status: map[qkd.NodeID]sdn.NodeStatus{}, pairs: map[string]sdn.StreamID{}, limits: map[qkd.NodeID]Limits{},
		kav: map[qkd.LinkID]map[qkd.NodeID]uint64{}}
	for _, n := range o.Topology.Nodes {
		c.cn[string(qkd.KMEOf(n.ID))] = n.ID
	}
	return c, nil
}

// SDN returns the routing state (read it; change it through the API).
func (c *Controller) SDN() *sdn.Controller { return c.sdn }

// Route returns the nodes of the route a pair's keys take now.
func (c *Controller) Route(master qkd.SAEID, slaves ...qkd.SAEID) ([]qkd.NodeID, bool) {
	c.mu.Lock()
	id, ok := c.pairs[qkd.PairName(master, slaves)]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	st, ok := c.sdn.Stream(id)
	if !ok || len(st.Route.Paths) == 0 {
		return nil, false
	}
	return slices.Clone(st.Route.Paths[0].Nodes), true
}

// Paths returns the paths of the key stream of a pair now (several for a
// multipath stream) and its multipath mode ("" for one route;
// sdn.MultipathSpread or sdn.MultipathSplit).
func (c *Controller) Paths(master qkd.SAEID, slaves ...qkd.SAEID) ([][]qkd.NodeID, string, bool) {
	c.mu.Lock()
	id, ok := c.pairs[qkd.PairName(master, slaves)]
	c.mu.Unlock()
	if !ok {
		return nil, "", false
	}
	st, ok := c.sdn.Stream(id)
	if !ok || len(st.Route.Paths) == 0 {
		return nil, "", false
	}
	var out [][]qkd.NodeID
	for _, p := range st.Route.Paths {
		out = append(out, slices.Clone(p.Nodes))
	}
	mode := ""
	switch {
	case st.Route.Multipath && st.Route.Options.Split:
		mode = sdn.MultipathSplit
	case st.Route.Multipath:
		mode = sdn.MultipathSpread
	}
	return out, mode, true
}

// Notifications returns the recorded notifications, oldest first.
func (c *Controller) Notifications() []Notification {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.notes)
}

// note records a notification and logs it.
func (c *Controller) note(n Notification) {
	if n.Time.IsZero() {
		n.Time = c.o.Now()
	}
	lvl := slog.LevelInfo
	switch n.Severity {
	case "warning":
		lvl = slog.LevelWarn
	case "error", "critical":
		lvl = slog.LevelError
	case "debug":
		lvl = slog.LevelDebug
	}
	c.log.Log(context.Background(), lvl, "controller: "+n.Message, "type", n.Type, "node", n.NodeID, "link", n.LinkID,
		"stream", n.AppID, "reported_by", n.From)
	c.mu.Lock()
	c.notes = append(c.notes, n)
	if len(c.notes) > maxNotes {
		c.notes = slices.Delete(c.notes, 0, len(c.notes)-maxNotes)
	}
	c.mu.Unlock()
}

// ---------------------------------------------------------------------------
// Reports

var nodeStatusOf = map[string]sdn.NodeStatus{
	sdn.QKDNodeOperating: sdn.NodeOnline, sdn.QKDNodeOut: sdn.NodeStopped,
}

// Report takes an agent's report on its node and returns the node's
// configuration.
func (c *Controller) Report(ctx context.Context, id qkd.NodeID, r NodeReport) (sdn.QKDNodeDocument, error) {
	if qkd.NodeID(r.Node.ID) != id {
		return sdn.QKDNodeDocument{}, bad("qkd_node.qkdn_id", "differs from the node in the path")
	}
	if _, known := c.o.Topology.Node(id); !known {
		return sdn.QKDNodeDocument{}, fmt.Errorf("%w: unknown node %q", errNotFound, id)
	}
	st := sdn.NodeOffline
	if s, ok := nodeStatusOf[r.Node.Status]; ok {
		st = s
	}
	now := c.o.Now()
	c.mu.Lock()
	a := c.agents[id]
	first := a == nil
	if first {
		a = newAgentConn(c, id)
		c.agents[id] = a
	}
	a.setURL(r.Agent.URL)
	a.lastSeen = now
	if r.Agent.ETSI014 != nil {
		c.limits[id] = *r.Agent.ETSI014
	}
	old, had := c.status[id]
	c.status[id] = st
	var linkChanges []linkChange
	if r.Node.Links != nil {
		for _, l := range r.Node.Links.Links {
			linkChanges = append(linkChanges, c.applyEndLocked(id, l, now)...)
		}
	}
	c.mu.Unlock()
	if first {
		c.note(Notification{Type: NoteNodeStatus, NodeID: string(id), Severity: "info", Status: string(st),
			Message: fmt.Sprintf("node %s registered (agent %s), status %s", id, r.Agent.URL, st), From: string(id)})
	}
	if !had || old != st {
		if had {
			c.note(Notification{Type: NoteNodeStatus, NodeID: string(id), Severity: severityOf(st), Status: string(st),
				Message: fmt.Sprintf("node %s status %s → %s", id, old, st), From: string(id)})
		}
		rr, err := c.sdn.SetNodeStatus(id, st)
		if err != nil {
			c.log.Error("controller: node status", "node", string(id), "err", err)
		}
		c.applyRerouted(rr)
	}
	for _, ch := range linkChanges {
		c.setLink(ch.link, ch.up, ch.by)
	}
	return c.configOf(id)
}

// LinksUp reports whether both ends of every QKD link of the topology
// reported it up.
func (c *Controller) LinksUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.o.Topology.Links {
		ends := c.ends[l.ID]
		if !ends[l.A] || !ends[l.B] || c.down[l.ID] {
			return false
		}
	}
	return true
}

// Online reports whether node n's agent reported it online.
func (c *Controller) Online(n qkd.NodeID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.agents[n] != nil && c.status[n] == sdn.NodeOnline
}

func (c *Controller) offline(n qkd.NodeID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status[n] == sdn.NodeOffline
}

func severityOf(st sdn.NodeStatus) string {
	if st == sdn.NodeOnline {
		return "info"
	}
	return "warning"
}

type linkChange struct {
	link qkd.LinkID
	up   bool
	by   qkd.NodeID
}

// applyEndLocked records one end's view of a PHYS link and returns a
// change of the link's combined status: a link is up when no end that
// reports it says it is down. Caller holds mu.
func (c *Controller) applyEndLocked(at qkd.NodeID, l sdn.QKDLink, now time.Time) []linkChange {
	id := qkd.LinkID(l.ID)
	tl, ok := c.o.Topology.Link(id)
	if !ok || (tl.A != at && tl.B != at) {
		return nil
	}
	up := !((l.Enable != nil && !*l.Enable) || l.Status == sdn.QKDLinkOff || l.Status == sdn.QKDLinkPending)
	if c.ends[id] == nil {
		c.ends[id] = map[qkd.NodeID]bool{}
		c.kav[id] = map[qkd.NodeID]uint64{}
	}
	c.ends[id][at] = up
	if p := l.Performance; p != nil {
		c.kav[id][at] = p.KAV
		kav := p.KAV
		for _, v := range c.kav[id] {
			kav = min(kav, v)
		}
		_ = c.sdn.Report(id, sdn.LinkPerf{At: now, SKR: float64(p.SKR), ESKR: float64(p.ESKR), KAV: kav})
	}
	combined := true
	for _, u := range c.ends[id] {
		combined = combined && u
	}
	if c.down[id] == !combined {
		return nil
	}
	c.down[id] = !combined
	return []linkChange{{link: id, up: combined, by: at}}
}

// setLink tells the routing that a link went down or came back and applies
// what it rerouted.
func (c *Controller) setLink(id qkd.LinkID, up bool, by qkd.NodeID) {
	status, sev, what := sdn.LinkDown, "warning", "down"
	if up {
		status, sev, what = sdn.LinkUp, "info", "up"
	}
	rr, err := c.sdn.SetLinkStatus(id, status)
	if err != nil {
		c.log.Error("controller: link status", "link", string(id), "err", err)
		return
	}
	typ := NoteEvent
	if !up {
		typ = NoteLinkDown
	}
	c.note(Notification{Type: typ, NodeID: string(by), LinkID: string(id), Severity: sev, Status: what,
		Message: fmt.Sprintf("QKD link status changed: %s is %s; %d key stream(s) rerouted", id, what, len(rr)), From: string(by)})
	c.applyRerouted(rr)
}

// applyRerouted configures the nodes of rerouted streams (old and new
// routes) and forgets the streams that lost their route.
func (c *Controller) applyRerouted(rr []sdn.Rerouted) {
	touched := map[qkd.NodeID]bool{}
	for _, r := range rr {
		for _, p := range r.Old.Paths {
			for _, n := range p.Nodes {
				touched[n] = true
			}
		}
		if r.Err != nil {
			c.mu.Lock()
			for k, v := range c.pairs {
				if v == r.Stream.ID {
					delete(c.pairs, k)
				}
			}
			c.mu.Unlock()
			c.note(Notification{Type: NoteAlarm, AppID: string(r.Stream.ID), Severity: "error", From: "controller",
				Message: fmt.Sprintf("no route left for key stream %s (%s → %v): it is closed", r.Stream.ID, r.Stream.Source, r.Stream.Destinations)})
			continue
		}
		for _, p := range r.Stream.Route.Paths {
			for _, n := range p.Nodes {
				touched[n] = true
			}
		}
		c.note(Notification{Type: NoteEvent, AppID: string(r.Stream.ID), Severity: "info", From: "controller",
			Message: fmt.Sprintf("key stream %s rerouted: %v → %v", r.Stream.ID, pathNodes(r.Old), pathNodes(r.Stream.Route))})
	}
	for n := range touched {
		c.push(n)
	}
}

// routeText describes a route for the log: its one path, or the paths of
// a multipath route and how keys use them.
func routeText(r sdn.Route) string {
	if !r.Multipath {
		return fmt.Sprint(pathNodes(r))
	}
	mode := sdn.MultipathSpread
	if r.Options.Split {
		mode = sdn.MultipathSplit
	}
	ps := make([][]qkd.NodeID, len(r.Paths))
	for i, p := range r.Paths {
		ps[i] = p.Nodes
	}
	return fmt.Sprintf("%d paths (%s) %v", len(ps), mode, ps)
}

func pathNodes(r sdn.Route) []qkd.NodeID {
	if len(r.Paths) == 0 {
		return nil
	}
	return r.Paths[0].Nodes
}

// configOf renders node id's configuration: its qkd_node with the VIRT
// links of the streams through it.
func (c *Controller) configOf(id qkd.NodeID) (sdn.QKDNodeDocument, error) {
	return c.sdn.QKDNodeDocument(id)
}

// Run checks the agents' liveness until ctx ends: a node that has not
// reported within NodeTimeout is offline (its streams are rerouted) until
// it reports again.
func (c *Controller) Run(ctx context.Context) {
	tick := time.NewTicker(c.o.NodeTimeout / 5)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.mu.Lock()
			for _, a := range c.agents {
				a.stop()
			}
			c.mu.Unlock()
			return
		case <-tick.C:
		}
		now := c.o.Now()
		var lost []qkd.NodeID
		c.mu.Lock()
		for id, a := range c.agents {
			if now.Sub(a.lastSeen) > c.o.NodeTimeout && c.status[id] != sdn.NodeOffline {
				c.status[id] = sdn.NodeOffline
				lost = append(lost, id)
			}
		}
		c.mu.Unlock()
		for _, id := range lost {
			c.note(Notification{Type: NoteNodeStatus, NodeID: string(id), Severity: "error", Status: string(sdn.NodeOffline), From: "controller",
				Message: fmt.Sprintf("node %s lost: no report for %s; routes avoid it", id, c.o.NodeTimeout)})
			rr, err := c.sdn.SetNodeStatus(id, sdn.NodeOffline)
			if err != nil {
				c.log.Error("controller: node status", "node", string(id), "err", err)
			}
			c.applyRerouted(rr)
		}
	}
}

// ---------------------------------------------------------------------------
// Applications

var (
	errNotFound    = errors.New("not found")
	errForbidden   = errors.New("forbidden")
	errUnavailable = errors.New("unavailable")
	errConflict    = errors.New("conflict")
	errNotSupp     = errors.New("not supported")
)

// rateTolerance absorbs rounding in promised rates (bit/s).
const rateTolerance = 1e-6

// Register sets up (or finds) the key stream of an application pair whose
// source SAE is at node from: it routes it, promises its rate, configures
// every KMS on the route through its agent and answers once they are.
func (c *Controller) Register(ctx context.Context, from qkd.NodeID, r AppRegistration) (AppRegistered, error) {
	topo := c.o.Topology
	src, ok := topo.NodeOf(qkd.SAEID(r.App.ServerAppID))
	if !ok {
		return AppRegistered{}, bad("qkd_app.server_app_id", "unknown application")
	}
	if src != from {
		return AppRegistered{}, fmt.Errorf("%w: the source application is not attached to node %s", errForbidden, from)
	}
	var dst qkd.NodeID
	slaves := make([]qkd.SAEID, 0, len(r.App.ClientAppIDs))
	for i, d := range r.App.ClientAppIDs {
		n, ok := topo.NodeOf(qkd.SAEID(d))
		switch {
		case !ok:
			return AppRegistered{}, bad(fmt.Sprintf("qkd_app.client_app_id[%d]", i), "unknown application")
		case dst != "" && n != dst:
			return AppRegistered{}, fmt.Errorf("%w: destination applications at several nodes: register one key stream per destination node", errNotSupp)
		case n == src:
			return AppRegistered{}, bad(fmt.Sprintf("qkd_app.client_app_id[%d]", i), "at the source node: nothing to relay")
		}
		dst = n
		slaves = append(slaves, qkd.SAEID(d))
	}
	key := qkd.PairName(qkd.SAEID(r.App.ServerAppID), slaves)
	c.mu.Lock()
	id, exists := c.pairs[key]
	c.mu.Unlock()
	var st sdn.Stream
	if exists {
		if s, ok := c.sdn.Stream(id); ok {
			st = s
		} else {
			exists = false
		}
	}
	// Admission (ETSI 004 QoS): the requested rate is min_bandwidth, the
	// rate the application needs; it is promised on every link of the
	// route. A route (or the pair's existing stream) that cannot carry it
	// is a counter-proposal of the rate it can. max_bandwidth is a cap the
	// KMS enforces; without min_bandwidth the stream is best effort.
	need := 0.0
	if r.App.QoS != nil {
		need = float64(r.App.QoS.MinBandwidth)
	}
	if !exists {
		route, err := c.sdn.Route(sdn.Request{Source: src, Destinations: []qkd.NodeID{dst}, Rate: need,
			Options: sdn.RequestOptions{Multipath: r.Multipath, Split: r.Multipath && r.Split}})
		if err != nil {
			c.note(Notification{Type: NoteAlarm, NodeID: string(src), Severity: "error", From: "controller",
				Message: fmt.Sprintf("no route for %s → %s (%s → %s): %v", r.App.ServerAppID, strings.Join(r.App.ClientAppIDs, ","), src, dst, err)})
			return AppRegistered{}, fmt.Errorf("%w: no route from %s to %s with key available", errUnavailable, src, dst)
		}
		st, err = c.sdn.Register(sdn.Stream{ID: sdn.StreamID(uuid.NewString()), SourceSAE: qkd.SAEID(r.App.ServerAppID), Source: src,
			DestinationSAEs: slaves, Destinations: []qkd.NodeID{dst}, Route: route})
		if err != nil {
			return AppRegistered{}, fmt.Errorf("%w: %v", errUnavailable, err)
		}
		c.mu.Lock()
		if other, raced := c.pairs[key]; raced {
			c.mu.Unlock()
			_ = c.sdn.Release(st.ID)
			s, ok := c.sdn.Stream(other)
			if !ok {
				return AppRegistered{}, fmt.Errorf("%w: key stream changed meanwhile, retry", errUnavailable)
			}
			st = s
		} else {
			c.pairs[key] = st.ID
			c.mu.Unlock()
			c.note(Notification{Type: NoteEvent, NodeID: string(src), AppID: string(st.ID), Severity: "info", From: "controller",
				Message: fmt.Sprintf("key stream %s set up for %s → %s over %s", st.ID, r.App.ServerAppID, strings.Join(r.App.ClientAppIDs, ","), routeText(st.Route))})
		}
	}
	// Configure every node of the route and wait until each applied it
	// (bounded: an agent that does not answer fails the registration, and
	// its node is taken out of the routes once its reports stop).
	ctx, cancel := context.WithTimeout(ctx, c.o.PushTimeout)
	defer cancel()
	var waits []func(context.Context) error
	for _, p := range st.Route.Paths {
		for _, n := range p.Nodes {
			waits = append(waits, c.push(n))
		}
	}
	for _, w := range waits {
		if err := w(ctx); err != nil {
			return AppRegistered{}, fmt.Errorf("%w: configuring the route: %v", errUnavailable, err)
		}
	}
	nodes := pathNodes(st.Route)
	if len(nodes) < 2 {
		return AppRegistered{}, fmt.Errorf("%w: key stream %s has no route", errUnavailable, st.ID)
	}
	app, err := c.sdn.QKDNode(src)
	if err != nil {
		return AppRegistered{}, err
	}
	out := AppRegistered{Route: slices.Clone(nodes), NextHop: nodes[1], RateBPS: st.Rate, CounterProposal: st.Route.CounterProposal}
	if need > 0 {
		// The stream may be the pair's existing one, promised at another rate.
		out.CounterProposal = st.Rate+rateTolerance < need
	}
	if app.Applications != nil {
		for _, a := range app.Applications.Apps {
			if a.ID == string(st.ID) {
				out.App = a
			}
		}
	}
	if out.App.ID == "" {
		return AppRegistered{}, fmt.Errorf("%w: key stream %s vanished while it was configured", errUnavailable, st.ID)
	}
	return out, nil
}

// Close releases a key stream (QUICKS DELETE link/{key_stream_id}) and
// removes its forwarding entries. The agents of its end nodes and the
// operator may close it.
func (c *Controller) Close(_ context.Context, caller qkd.NodeID, operator bool, id string) error {
	st, ok := c.sdn.Stream(sdn.StreamID(strings.ToLower(id)))
	if !ok {
		return fmt.Errorf("%w: no key stream %s", errNotFound, id)
	}
	if !operator && caller != st.Source && !slices.Contains(st.Destinations, caller) {
		return fmt.Errorf("%w: node %s is not an end of key stream %s", errForbidden, caller, id)
	}
	if err := c.sdn.Release(st.ID); err != nil {
		return fmt.Errorf("%w: %v", errNotFound, err)
	}
	c.mu.Lock()
	for k, v := range c.pairs {
		if v == st.ID {
			delete(c.pairs, k)
		}
	}
	c.mu.Unlock()
	c.note(Notification{Type: NoteAppDisconnected, AppID: string(st.ID), NodeID: string(caller), Severity: "info", From: string(caller),
		Message: fmt.Sprintf("key stream %s closed", st.ID)})
	for _, p := range st.Route.Paths {
		for _, n := range p.Nodes {
			c.push(n)
		}
	}
	return nil
}

// Established records that the destination holds the first keys of a
// stream (QUICKS PATCH link/registration).
func (c *Controller) Established(_ context.Context, caller qkd.NodeID, id string) error {
	st, ok := c.sdn.Stream(sdn.StreamID(strings.ToLower(id)))
	if !ok {
		return fmt.Errorf("%w: no key stream %s", errNotFound, id)
	}
	if !slices.Contains(st.Destinations, caller) {
		return fmt.Errorf("%w: node %s is not a destination of key stream %s", errForbidden, caller, id)
	}
	c.note(Notification{Type: NoteEvent, AppID: string(st.ID), NodeID: string(caller), Severity: "debug", From: string(caller),
		Message: fmt.Sprintf("key stream %s established at its destination %s", st.ID, caller)})
	return nil
}

// PathStatus answers the path-wide ETSI 014 status of a pair: counts and
// sizes are the minimum over the KMSes and links of the pair's route (or
// of the route it would get).
func (c *Controller) PathStatus(master, slave qkd.SAEID) (PathStatus, error) {
	topo := c.o.Topology
	src, ok1 := topo.NodeOf(master)
	dst, ok2 := topo.NodeOf(slave)
	if !ok1 || !ok2 {
		return PathStatus{}, fmt.Errorf("%w: unknown SAE", errNotFound)
	}
	nodes, ok := c.Route(master, slave)
	if !ok {
		r, err := c.sdn.Route(sdn.Request{Source: src, Destinations: []qkd.NodeID{dst}})
		if err != nil {
			return PathStatus{}, fmt.Errorf("%w: no route from %s to %s", errUnavailable, src, dst)
		}
		nodes = pathNodes(r)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := PathStatus{LinkStatus: quicks.LinkStatus{SourceKMSID: string(qkd.KMEOf(src)), TargetKMSID: string(qkd.KMEOf(dst))}, Route: nodes}
	first := true
	for _, n := range nodes {
		l, ok := c.limits[n]
		if !ok {
			continue
		}
		if first {
			ps.KeySize, ps.MaxKeyCount, ps.MaxKeyPerRequest, ps.MaxKeySize, ps.MinKeySize, ps.MaxSAEIDCount =
				l.KeySize, l.MaxKeyCount, l.MaxKeyPerRequest, l.MaxKeySize, l.MinKeySize, l.MaxSAEIDCount
			first = false
			continue
		}
		ps.MaxKeyCount = min(ps.MaxKeyCount, l.MaxKeyCount)
		ps.MaxKeyPerRequest = min(ps.MaxKeyPerRequest, l.MaxKeyPerRequest)
		ps.MaxKeySize = min(ps.MaxKeySize, l.MaxKeySize)
		ps.MinKeySize = max(ps.MinKeySize, l.MinKeySize)
		ps.MaxSAEIDCount = min(ps.MaxSAEIDCount, l.MaxSAEIDCount)
	}
	if ps.KeySize == 0 {
		return PathStatus{}, fmt.Errorf("%w: the KMSes of the route have not reported yet", errUnavailable)
	}
	stored := ps.MaxKeyCount
	for i := 0; i+1 < len(nodes); i++ {
		best := uint64(0)
		for _, l := range topo.Links {
			if (l.A == nodes[i] && l.B == nodes[i+1]) || (l.B == nodes[i] && l.A == nodes[i+1]) {
				kav, seen := uint64(0), false
				for _, v := range c.kav[l.ID] {
					if !seen || v < kav {
						kav, seen = v, true
					}
				}
				best = max(best, kav)
			}
		}
		stored = min(stored, int(min(best*8/uint64(ps.KeySize), uint64(ps.MaxKeyCount))))
	}
	ps.StoredKeyCount = max(stored, 0)
	return ps, nil
}

// statusFor maps the controller's errors to HTTP statuses.
func statusFor(err error) int {
	switch {
	case errors.Is(err, ErrBadMessage):
		return http.StatusBadRequest
	case errors.Is(err, errNotFound):
		return http.StatusNotFound
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, errConflict):
		return http.StatusConflict
	case errors.Is(err, errUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, errNotSupp):
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}
