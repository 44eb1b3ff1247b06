// Package agent is a node's SDN agent (docs/sdn.md): it hosts the QUICKS
// agent API for its KMS (kms_to_sdn_api: link/registration, link/status,
// notifications), talks to its KMS only through the KMS's QUICKS API
// (monitor/*, link/performance, link/relay), and to the SDN controller
// through the controller's API (internal/controller): it reports the node
// (ETSI 015 qkd_node with PHYS links and their performance) every
// interval and applies the configurations the controller sends (VIRT
// links → QUICKS link/relay entries on its KMS).
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
	"github.com/qkms/qkms/internal/sdn"
)

// Options configure an Agent.
type Options struct {
	Node qkd.NodeID
	// KMS is the client of the node's QUICKS server; Controller the
	// client of the controller.
	KMS        *kmsapi.Client
	Controller *controller.Client
	// URL is where the controller reaches this agent (https://host:port).
	URL string
	// Neighbours maps each neighbouring node to its KMS↔KMS authority
	// (host:port), what QUICKS next_node_info names.
	Neighbours map[qkd.NodeID]string
	// KMSCN is the certificate CN of the node's KMS (allowed on the QUICKS
	// agent API), ControllerCN the controller's (allowed to push
	// configurations), OperatorCN the operator's (allowed on both).
	KMSCN, ControllerCN, OperatorCN string
	// Interval between looks at the KMS (default 1 s): a change of what
	// the agent reports (the node's status, a link's status) is reported
	// at once.
	Interval time.Duration
	// Heartbeat is the longest time between two reports while nothing
	// changes (default 3 s, at least Interval); they also carry the links'
	// performance. The controller's NodeTimeout (default 10 s) must stay
	// well above it.
	Heartbeat time.Duration
	// Now is the heartbeat's clock (time.Now if nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// Agent is one node's SDN agent.
type Agent struct {
	o   Options
	log *slog.Logger
	api *agentapi.Server

	wake chan struct{}

	// Used by the report loop only: the KMS's capabilities and link
	// performance are read on every fullReportEvery-th report (they change
	// slowly; status and QKD device states are read every time).
	reports uint64
	caps    *quicks.Capabilities
	perf    map[string]*sdn.QKDLinkPerformance
	// sent is what the last report the controller took said, less the
	// links' performance; sentAt when it went (zero: none yet).
	sent   controller.NodeReport
	sentAt time.Time
	// state is the KMS's status as last read.
	state quicks.State

	// applyMu serialises configurations: installed is what the KMS holds.
	applyMu   sync.Mutex
	installed map[string]quicks.RelayConfig // guarded by applyMu
	applied   uint64                        // guarded by applyMu: Seq of the newest configuration applied
}

// New returns an agent; serve Handler and run Run.
func New(o Options) (*Agent, error) {
	if o.KMS == nil || o.Controller == nil || o.Node == "" {
		return nil, errors.New("agent: node, KMS and controller clients are required")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	o.Heartbeat = max(o.Heartbeat, o.Interval)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Agent{o: o, log: o.Logger, wake: make(chan struct{}, 1), installed: map[string]quicks.RelayConfig{},
		perf: map[string]*sdn.QKDLinkPerformance{}}
	a.api = agentapi.New(agentapi.Options{
		Backend: a,
		Authorize: func(cn string, _ *http.Request) bool {
			return cn == o.KMSCN || (o.OperatorCN != "" && cn == o.OperatorCN)
		},
		Logger: o.Logger,
	})
	return a, nil
}

// Handler serves the QUICKS agent API (/api/v2/sdn/...) and the
// controller-facing API (/sdn-agent/v1/qkd_node).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(quicks.BasePath+"/", a.api.Handler())
	mux.HandleFunc("PUT "+controller.AgentBasePath+"/qkd_node", a.putConfig)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		quicks.WriteProblem(w, quicks.NewProblem(http.StatusNotFound, "no such resource"))
	})
	return mux
}

func (a *Agent) putConfig(w http.ResponseWriter, r *http.Request) {
	cn, ok := "", r.TLS != nil
	if ok {
		cn, ok = pki.PeerCN(r.TLS)
	}
	if !ok || !(cn == a.o.ControllerCN || (a.o.OperatorCN != "" && cn == a.o.OperatorCN)) {
		quicks.WriteProblem(w, quicks.NewProblem(http.StatusForbidden, "client certificate not allowed here"))
		return
	}
	b, err := readAll(w, r)
	var doc sdn.QKDNodeDocument
	if err == nil {
		doc, err = controller.DecodeNodeDocument(b)
	}
	if err == nil && qkd.NodeID(doc.Node.ID) != a.o.Node {
		err = fmt.Errorf("%w: configuration for node %q sent to the agent of %s", controller.ErrBadMessage, doc.Node.ID, a.o.Node)
	}
	if err != nil {
		quicks.WriteProblem(w, quicks.NewProblem(http.StatusBadRequest, err.Error()))
		return
	}
	if err := a.apply(r.Context(), doc); err != nil {
		a.log.Warn("agent: configuration not applied", "err", err)
		quicks.WriteProblem(w, quicks.NewProblem(http.StatusBadGateway, "the KMS refused part of the configuration: "+err.Error()))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DefaultHeartbeat is Options.Heartbeat's default.
const DefaultHeartbeat = 3 * time.Second

// Run looks at the KMS every interval and reports the node to the
// controller when what it reports changed, at once when the KMS notifies
// a change, and at least every heartbeat, until ctx ends. An idle node
// thus costs the controller one report per heartbeat.
func (a *Agent) Run(ctx context.Context) {
	tick := time.NewTicker(a.o.Interval)
	defer tick.Stop()
	force := true
	for {
		if err := a.report(ctx, force); err != nil && ctx.Err() == nil {
			a.log.Debug("agent: report failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			force = false
		case <-a.wake:
			force = true
		}
	}
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// fullReportEvery: every this many reports carry fresh capabilities and
// link performance.
const fullReportEvery = 5

var qkdnStatus = map[quicks.State]string{
	quicks.StateOnline: sdn.QKDNodeOperating, quicks.StateStopped: sdn.QKDNodeOut, quicks.StateOffline: sdn.QKDNodeDown,
}

// report builds the node's qkd_node from its KMS and, if force, if it
// changed since the last report or if the heartbeat is due, sends it and
// applies the configuration of the answer.
func (a *Agent) report(ctx context.Context, force bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	now := a.o.Now()
	// The KMS notifies a change of its status (NotifyStatus wakes the
	// loop with force), so it is read for a forced report and with the
	// heartbeat only; its QKD devices, which change without notice, at
	// every look.
	if force || a.state == "" || a.beat(now) {
		st, err := a.o.KMS.Status(ctx, false)
		if err != nil {
			return fmt.Errorf("KMS status: %w", err)
		}
		a.state = st.State
	}
	a.reports++
	full := a.caps == nil || a.reports%fullReportEvery == 1
	if full {
		caps, err := a.o.KMS.Capabilities(ctx)
		if err != nil {
			return fmt.Errorf("KMS capabilities: %w", err)
		}
		a.caps = &caps
	}
	caps := *a.caps
	devs, err := a.o.KMS.QKDDevices(ctx)
	if err != nil {
		return fmt.Errorf("KMS devices: %w", err)
	}
	node := sdn.QKDNode{ID: string(a.o.Node), Status: qkdnStatus[a.state],
		Capabilities: &sdn.QKDNodeCapabilities{LinkStatsSupport: true, KeyRelayModeEnable: caps.KeyRelaySupport}}
	var links []sdn.QKDLink
	for _, d := range devs.QKDDevices {
		l := sdn.QKDLink{ID: d.Label, Type: sdn.QKDLinkPhys, Status: sdn.QKDLinkActive, Local: sdn.QKDLinkEnd{NodeID: string(a.o.Node)},
			Remote: sdn.QKDLinkEnd{NodeID: strings.TrimPrefix(d.PeerKMS, "KME_")}}
		if d.State != quicks.StateOnline {
			l.Status = sdn.QKDLinkOff
		}
		if p, ok := a.perf[d.LinkID]; ok && !full {
			l.Performance = p
		} else if p, err := a.o.KMS.LinkPerformance(ctx, d.LinkID, 1); err == nil {
			c := p.Current
			l.Performance = &sdn.QKDLinkPerformance{SKR: bits(c.SKR), ESKR: bits(c.SKR - c.IKR), ExpectedConsumption: bits(c.EXKR),
				KAV: uint64(max(c.KAV, 0))}
			a.perf[d.LinkID] = l.Performance
		}
		links = append(links, l)
	}
	if len(links) > 0 {
		node.Links = &sdn.QKDLinks{Links: links}
	}
	rep := controller.NodeReport{Node: node, Agent: controller.AgentInfo{URL: a.o.URL}}
	if e := caps.ETSI014Info; e != nil {
		rep.Agent.ETSI014 = &controller.Limits{KMEID: e.KMSID, KeySize: e.KeySize, MaxKeyCount: e.MaxKeyCount,
			MaxKeyPerRequest: e.MaxKeyPerRequest, MaxKeySize: e.MaxKeySize, MinKeySize: e.MinKeySize, MaxSAEIDCount: e.MaxSAEIDCount}
	}
	if !force && !a.due(rep, now) {
		return nil
	}
	doc, err := a.o.Controller.Report(ctx, rep)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	a.sent, a.sentAt = withoutPerformance(rep), now
	return a.apply(ctx, doc)
}

// due reports whether rep goes to the controller now, unasked: the first
// report, one that changed, or the heartbeat.
func (a *Agent) due(rep controller.NodeReport, now time.Time) bool {
	return a.beat(now) || !sameReport(a.sent, rep)
}

// beat reports whether the heartbeat is due: no report yet, or none for
// a heartbeat.
func (a *Agent) beat(now time.Time) bool {
	return a.sentAt.IsZero() || now.Sub(a.sentAt) >= a.o.Heartbeat
}

// sameReport reports whether r says what sent (a report without
// performance) said, performance aside: performance alone waits for the
// heartbeat.
func sameReport(sent, r controller.NodeReport) bool {
	return reflect.DeepEqual(sent, withoutPerformance(r))
}

// withoutPerformance returns a copy of r whose links carry no performance.
func withoutPerformance(r controller.NodeReport) controller.NodeReport {
	if r.Node.Links == nil {
		return r
	}
	links := slices.Clone(r.Node.Links.Links)
	for i := range links {
		links[i].Performance = nil
	}
	r.Node.Links = &sdn.QKDLinks{Links: links}
	return r
}

// bits converts bytes/s to bit/s for ETSI 015.
func bits(bytesPerSec int32) uint32 {
	return uint32(min(max(int64(bytesPerSec), 0)*8, math.MaxUint32))
}

// apply makes the KMS's relay entries those of the VIRT links of the
// document's node; a configuration older than one applied before (by its
// Seq) is ignored: it was rendered before that one (the answer to a
// report overtaken by a push) and would undo it.
func (a *Agent) apply(ctx context.Context, doc sdn.QKDNodeDocument) error {
	n := doc.Node
	want := map[string]quicks.RelayConfig{}
	if n.Links != nil {
		for _, l := range n.Links.Links {
			if l.Type != sdn.QKDLinkVirt || (l.Enable != nil && !*l.Enable) {
				continue
			}
			rc, err := a.relayConfig(l)
			if err != nil {
				return err
			}
			want[strings.ToLower(l.ID)] = rc
		}
	}
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	if doc.Seq != 0 && doc.Seq < a.applied {
		a.log.Debug("agent: configuration older than the one applied, ignored", "seq", doc.Seq, "applied", a.applied)
		return nil
	}
	a.applied = max(a.applied, doc.Seq)
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(a.installed)) {
		if _, keep := want[id]; keep {
			continue
		}
		if err := a.o.KMS.DeleteRelay(ctx, id); err != nil && !errors.Is(err, quicks.ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete %s: %w", id, err))
			continue
		}
		delete(a.installed, id)
		a.log.Info("agent: relay entry removed", "stream", id)
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		rc := want[id]
		if old, ok := a.installed[id]; ok && sameConfig(old, rc) {
			continue
		}
		err := a.o.KMS.CreateRelay(ctx, id, rc)
		if errors.Is(err, quicks.ErrConflict) {
			err = a.o.KMS.ReplaceRelay(ctx, id, rc)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("relay %s: %w", id, err))
			continue
		}
		a.installed[id] = rc
		a.log.Info("agent: relay entry configured", "stream", id, "next_node_info", rc.NextNodeInfo)
	}
	return errors.Join(errs...)
}

// relayConfig maps a VIRT link to the QUICKS link/relay body: the previous
// hop's authority first, then the next hops'.
func (a *Agent) relayConfig(l sdn.QKDLink) (quicks.RelayConfig, error) {
	rc := quicks.RelayConfig{Source: l.ServerAppID, Destination: slices.Clone(l.ClientAppIDs), NextNodeInfo: []string{},
		Route: slices.Clone(l.Route)}
	if m := l.Multipath; m != nil {
		rc.Multipath = &quicks.RelayMultipath{Group: m.Group, Path: m.Path, Paths: m.Paths, Mode: m.Mode, WeightBPS: m.Weight}
	}
	hops := l.VirtNextHop
	if l.VirtPrevHop != "" {
		hops = append([]string{l.VirtPrevHop}, hops...)
	}
	for _, h := range hops {
		auth, ok := a.o.Neighbours[qkd.NodeID(h)]
		if !ok {
			return quicks.RelayConfig{}, fmt.Errorf("key stream %s: %s is not a neighbour of %s", l.ID, h, a.o.Node)
		}
		rc.NextNodeInfo = append(rc.NextNodeInfo, auth)
	}
	if rc.Source == "" || len(rc.Destination) == 0 {
		return quicks.RelayConfig{}, fmt.Errorf("key stream %s: the configuration names no applications", l.ID)
	}
	return rc, nil
}

func sameConfig(a, b quicks.RelayConfig) bool {
	return a.Source == b.Source && slices.Equal(a.Destination, b.Destination) && slices.Equal(a.NextNodeInfo, b.NextNodeInfo) &&
		slices.Equal(a.Route, b.Route) && (a.Multipath == nil) == (b.Multipath == nil) && (a.Multipath == nil || *a.Multipath == *b.Multipath)
}

// ---------------------------------------------------------------------------
// QUICKS agent API (agentapi.Backend)

var _ agentapi.Backend = (*Agent)(nil)

// Version implements agentapi.Backend.
func (a *Agent) Version(context.Context) (quicks.VersionInfo, error) {
	return quicks.VersionInfo{Version: quicks.Version}, nil
}

// mapErr turns a controller error into the QUICKS error of the same meaning.
func mapErr(err error) error {
	var p *controller.Problem
	if !errors.As(err, &p) {
		return fmt.Errorf("%w: SDN controller unreachable", quicks.ErrUnavailable)
	}
	switch p.Status {
	case http.StatusBadRequest:
		return fmt.Errorf("%w: %s", quicks.ErrBadRequest, p.Detail)
	case http.StatusForbidden:
		return fmt.Errorf("%w: %s", quicks.ErrForbidden, p.Detail)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s", quicks.ErrNotFound, p.Detail)
	case http.StatusNotImplemented:
		return fmt.Errorf("%w: %s", quicks.ErrNotSupported, p.Detail)
	case http.StatusConflict:
		return fmt.Errorf("%w: %s", quicks.ErrConflict, p.Detail)
	}
	return fmt.Errorf("%w: %s", quicks.ErrUnavailable, p.Detail)
}

// LinkStatus implements agentapi.Backend: the path-wide ETSI 014 status.
func (a *Agent) LinkStatus(ctx context.Context, master, slave string) (quicks.LinkStatus, error) {
	ps, err := a.o.Controller.PathStatus(ctx, master, slave)
	if err != nil {
		return quicks.LinkStatus{}, mapErr(err)
	}
	return ps.LinkStatus, nil
}

// Register implements agentapi.Backend: the controller sets the key
// stream up (every KMS on the route is configured when it answers).
func (a *Agent) Register(ctx context.Context, req quicks.LinkRegistration) (quicks.RegistrationResult, error) {
	app := sdn.QKDApp{Type: sdn.QKDAppClient, ServerAppID: req.Source, ClientAppIDs: slices.Clone(req.Destination),
		LocalNodeID: string(a.o.Node)}
	if q := req.QoSRequest.ETSI004; q != nil && (q.MaxBPS > 0 || q.MinBPS > 0) {
		app.QoS = &sdn.AppQoS{MaxBandwidth: uint32(q.MaxBPS), MinBandwidth: uint32(max(q.MinBPS, 0))}
	}
	out, err := a.o.Controller.Register(ctx, controller.AppRegistration{App: app, Multipath: req.Options.Multipath(), Split: req.Options.Split()})
	if err != nil {
		return quicks.RegistrationResult{}, mapErr(err)
	}
	next, ok := a.o.Neighbours[out.NextHop]
	if !ok {
		return quicks.RegistrationResult{}, fmt.Errorf("controller routed key stream %s over %s, not a neighbour of %s", out.App.ID, out.NextHop, a.o.Node)
	}
	res := quicks.RegistrationResult{KeyStreamID: out.App.ID, NextNodeInfo: []string{next}}
	if q := req.QoSRequest.ETSI004; q != nil && out.CounterProposal {
		// The route carries less than asked: counter-propose its rate.
		rate := int(out.RateBPS)
		res.QoS = &quicks.QoSProposal{MaxBPS: &rate, MinBPS: &rate}
	}
	return res, nil
}

// PatchRegistration implements agentapi.Backend.
func (a *Agent) PatchRegistration(ctx context.Context, req quicks.RegistrationUpdate) error {
	if err := a.o.Controller.Established(ctx, req.KeyStreamID); err != nil {
		return mapErr(err)
	}
	return nil
}

// DeleteStream implements agentapi.Backend.
func (a *Agent) DeleteStream(ctx context.Context, id string) error {
	if err := a.o.Controller.Close(ctx, id); err != nil {
		return mapErr(err)
	}
	return nil
}

// NotifyRegistration implements agentapi.Backend: the KMS joined; the next
// report registers it with the controller.
func (a *Agent) NotifyRegistration(_ context.Context, req quicks.KMSRegistration) ([]byte, error) {
	a.log.Info("agent: KMS registered", "kms_id", req.KMSID, "links", len(req.LinkIDs))
	a.poke()
	return nil, nil
}

// NotifyStatus implements agentapi.Backend: forwarded to the controller,
// and the node is reported at once.
func (a *Agent) NotifyStatus(ctx context.Context, req quicks.StatusNotification) error {
	sev := "warning"
	if req.State == string(quicks.StateOnline) {
		sev = "info"
	}
	a.poke()
	err := a.o.Controller.Notify(ctx, controller.Notification{Type: controller.NoteNodeStatus, Severity: sev, Status: req.State,
		Message: fmt.Sprintf("KMS of %s is %s: %s", a.o.Node, req.State, clip(req.Reason))})
	if err != nil {
		return mapErr(err)
	}
	return nil
}

// NotifyEvent implements agentapi.Backend: forwarded to the controller.
func (a *Agent) NotifyEvent(ctx context.Context, req quicks.Event) error {
	err := a.o.Controller.Notify(ctx, controller.Notification{Type: controller.NoteEvent, Severity: string(req.Level), Code: req.Code,
		Message: fmt.Sprintf("KMS of %s: %s", a.o.Node, clip(req.Reason))})
	if err != nil {
		return mapErr(err)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 900 {
		return s[:900] + "…"
	}
	return s
}

func readAll(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: body unreadable or over 1 MiB", controller.ErrBadMessage)
	}
	return b, nil
}
