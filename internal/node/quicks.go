package node

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
	"github.com/qkms/qkms/internal/relay"
	"github.com/qkms/qkms/internal/telemetry"
)

// DefaultVersion is the device-info version when Options.Version is not a
// semantic version.
const DefaultVersion = "0.1.0"

// ExtRelayOTPHopByHop is the capabilities_extension entry of qkms's key
// relay: hop-by-hop one-time-pad relay along single paths (docs/relay-design.md).
const ExtRelayOTPHopByHop = "relay:otp_hop_by_hop"

// ExtRelayMulticast: ETSI 014 multicast (additional_slave_SAE_IDs) with
// slaves on several nodes, the same keys relayed to each.
const ExtRelayMulticast = "relay:multicast"

// ExtRelayMultipath: the relay engine takes multipath key streams
// (QUICKS link/relay qkms_multipath): keys spread over several paths or
// XOR-split over node-disjoint ones (docs/relay-design.md "Multipath relay").
const ExtRelayMultipath = "relay:multipath"

// ---------------------------------------------------------------------------
// Node state (QUICKS monitor/status, control/status)

// nodeState is the QUICKS state set through control/status; the zero value
// is online.
type nodeState struct{ v atomic.Value }

func (s *nodeState) get() quicks.State {
	if st, ok := s.v.Load().(quicks.State); ok {
		return st
	}
	return quicks.StateOnline
}

func (s *nodeState) set(st quicks.State) { s.v.Store(st) }

// State returns the node's QUICKS state: offline once zeroised, else the
// state last set through control/status (online at start).
func (n *Node) State() quicks.State {
	if !n.svc.Active() {
		return quicks.StateOffline
	}
	return n.state.get()
}

// gatedKMS is the key service as the ETSI 014 server sees it: while the
// node is not online (control/status stopped or offline) every request is
// refused with 503 (qkd.ErrInactive: "KME is inactive").
type gatedKMS struct{ n *Node }

func (g gatedKMS) check() error {
	if st := g.n.State(); st != quicks.StateOnline {
		return fmt.Errorf("%w: KME is not online (state %s)", qkd.ErrInactive, st)
	}
	return nil
}

func (g gatedKMS) Status(ctx context.Context, caller, slave qkd.SAEID) (kms.Status, error) {
	if err := g.check(); err != nil {
		return kms.Status{}, err
	}
	return g.n.svc.Status(ctx, caller, slave)
}

func (g gatedKMS) EncKeys(ctx context.Context, caller, slave qkd.SAEID, req kms.KeyRequest) ([]kms.Key, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.n.svc.EncKeys(ctx, caller, slave, req)
}

func (g gatedKMS) DecKeys(ctx context.Context, caller, master qkd.SAEID, ids []qkd.KeyID) ([]kms.Key, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.n.svc.DecKeys(ctx, caller, master, ids)
}

// ---------------------------------------------------------------------------
// IDs: QUICKS wants UUIDs for link_id and device_id.

// uuidNamespace is the name-based UUID namespace of qkms's QUICKS IDs:
// the version 5 UUID of the URL "https://github.com/qkms/qkms" in the
// RFC 9562 URL namespace.
var uuidNamespace = nameUUID(mustUUIDBytes("6ba7b811-9dad-11d1-80b4-00c04fd430c8"), "https://github.com/qkms/qkms")

// LinkUUID is the QUICKS link_id of a qkms link: the version 5 UUID of
// "link:" + ID in qkms's namespace. Both ends compute the same one.
func LinkUUID(id qkd.LinkID) string { return formatUUID(nameUUID(uuidNamespace, "link:"+string(id))) }

// DeviceUUID is the QUICKS device_id of a node's QKD module on a link: the
// version 5 UUID of "device:" + node + ":" + link in qkms's namespace.
func DeviceUUID(node qkd.NodeID, link qkd.LinkID) string {
	return formatUUID(nameUUID(uuidNamespace, "device:"+string(node)+":"+string(link)))
}

// nameUUID is RFC 9562 §5.5 (SHA-1, version 5).
func nameUUID(ns [16]byte, name string) [16]byte {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}

func formatUUID(u [16]byte) string {
	s := hex.EncodeToString(u[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

func mustUUIDBytes(s string) [16]byte {
	var u [16]byte
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("node: bad UUID " + s)
	}
	copy(u[:], b)
	return u
}

// ---------------------------------------------------------------------------
// Log ring (QUICKS monitor/log)

// logRingLines and logLineMax bound the in-memory log kept for monitor/log.
const (
	logRingLines = 1000
	logLineMax   = 4 << 10
)

// logRing keeps the node's most recent log records (level info and above)
// as JSON lines, formatted by slog's JSON handler with telemetry.Redact,
// the ReplaceAttr of every qkms log output: what is hidden in the node's
// log output is hidden here too.
type logRing struct {
	mu    sync.Mutex
	lines [][]byte // guarded by mu: oldest first
}

// Write stores one record (slog's JSON handler writes each in one call).
func (r *logRing) Write(p []byte) (int, error) {
	line := bytes.TrimRight(p, "\n")
	if len(line) > logLineMax {
		line = fmt.Appendf(nil, `{"msg":"log record too long for monitor/log","size":%d}`, len(line))
	}
	c := bytes.Clone(line)
	r.mu.Lock()
	if len(r.lines) == logRingLines {
		copy(r.lines, r.lines[1:])
		r.lines = r.lines[:logRingLines-1]
	}
	r.lines = append(r.lines, c)
	r.mu.Unlock()
	return len(p), nil
}

// jsonArray returns the kept records, oldest first, as one JSON array.
func (r *logRing) jsonArray() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b bytes.Buffer
	b.WriteString("[")
	for i, l := range r.lines {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.Write(l)
	}
	b.WriteString("]\n")
	return b.Bytes()
}

// teeHandler passes records to the node's own handler and, from level
// info, to the ring.
type teeHandler struct {
	out  slog.Handler
	ring slog.Handler
}

func newTeeHandler(out slog.Handler, r *logRing) *teeHandler {
	return &teeHandler{out: out, ring: slog.NewJSONHandler(r, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: telemetry.Redact})}
}

func (t *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.out.Enabled(ctx, l) || t.ring.Enabled(ctx, l)
}

func (t *teeHandler) Handle(ctx context.Context, rec slog.Record) error {
	var err error
	if t.out.Enabled(ctx, rec.Level) {
		err = t.out.Handle(ctx, rec)
	}
	if t.ring.Enabled(ctx, rec.Level) {
		_ = t.ring.Handle(ctx, rec)
	}
	return err
}

func (t *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &teeHandler{out: t.out.WithAttrs(as), ring: t.ring.WithAttrs(as)}
}

func (t *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{out: t.out.WithGroup(name), ring: t.ring.WithGroup(name)}
}

// ---------------------------------------------------------------------------
// The QUICKS backend

// quicksBackend is the node behind its QUICKS server (kmsapi.Backend).
type quicksBackend struct {
	n       *Node
	version string
	relayMu sync.Mutex // serialises link/relay changes
}

var _ kmsapi.Backend = (*quicksBackend)(nil)

func (b *quicksBackend) Version(context.Context) (quicks.VersionInfo, error) {
	return quicks.VersionInfo{Version: quicks.Version}, nil
}

func (b *quicksBackend) Capabilities(ctx context.Context) (quicks.Capabilities, error) {
	k := b.n.cfg.Keys
	var stored int64
	for _, l := range b.n.links {
		if st, err := b.n.store.Stats(ctx, l.ID()); err == nil {
			stored += st.ConfirmedBytes[0] + st.ConfirmedBytes[1]
		}
	}
	return quicks.Capabilities{
		KeyRelaySupport: true,
		AppAPISupport:   []quicks.AppAPI{quicks.AppAPIETSI014},
		ETSI014Info: &quicks.ETSI014Info{KMSID: string(b.n.cfg.KMEID), KeySize: k.DefaultSize,
			StoredKeyCount: int(stored * 8 / int64(k.DefaultSize)), MaxKeyCount: k.MaxKeyCount,
			MaxKeyPerRequest: k.MaxPerRequest, MaxKeySize: k.MaxSize, MinKeySize: k.MinSize, MaxSAEIDCount: kms.DefaultMaxSAEIDCount},
		Extension: b.extensions(),
	}, nil
}

// extensions lists what this KMS can do beyond QUICKS's fields: the ITS
// MAC scheme of each link (its_mac:<scheme>), hop-by-hop OTP relay and
// multicast over relays.
func (b *quicksBackend) extensions() []string {
	var out []string
	for _, l := range b.n.links {
		if e := "its_mac:" + l.MACScheme(); !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		out = append(out, quicks.ExtITSMACPoly1305)
	}
	sort.Strings(out)
	out = append(out, ExtRelayOTPHopByHop, ExtRelayMulticast, ExtRelayMultipath)
	if e := b.n.hybridExtension(); e != "" {
		out = append(out, e)
	}
	return out
}

func (b *quicksBackend) DeviceInfo(context.Context) (quicks.DeviceInfo, error) {
	return quicks.DeviceInfo{Vendor: "qkms", Model: "qkms", Version: b.version}, nil
}

// Status reports the state and, as operation, "critical" after
// zeroisation, "warnings" while a peer KMS does not answer, else "normal
// operation". It reports conditions as they are now, so reset changes
// nothing.
func (b *quicksBackend) Status(context.Context, bool) (quicks.KMSStatus, error) {
	st := quicks.KMSStatus{State: b.n.State(), Operation: quicks.OperationNormal}
	if !b.n.svc.Active() {
		st.Operation = quicks.OperationCritical
		return st, nil
	}
	for _, l := range b.n.links {
		if ps := l.PeerStatus(); ps.Err != "" {
			st.Operation = quicks.OperationWarnings
		}
	}
	return st, nil
}

func (b *quicksBackend) Log(context.Context) (kmsapi.LogFile, error) {
	if b.n.logs == nil {
		return kmsapi.LogFile{}, fmt.Errorf("%w: monitor/log: no log kept", quicks.ErrNotSupported)
	}
	return kmsapi.LogFile{ContentType: quicks.MediaTypeJSON, Body: io.NopCloser(bytes.NewReader(b.n.logs.jsonArray()))}, nil
}

// deviceFedWithin: a QKD module that delivered key material this recently
// is online.
const deviceFedWithin = 10 * time.Second

func (b *quicksBackend) QKDDevices(context.Context) (quicks.QKDDeviceList, error) {
	out := quicks.QKDDeviceList{QKDDevices: []quicks.QKDDevice{}}
	now := time.Now()
	for _, l := range b.n.links {
		state := b.n.State()
		switch {
		case state != quicks.StateOnline:
		case l.dev.Addr == "":
			state = quicks.StateStopped // no QKD module configured
		case b.n.perf == nil || !b.n.perf.fedSince(l.ID(), now, deviceFedWithin):
			state = quicks.StateOffline
		}
		proto := "coap+tcp"
		if l.dev.Transport == config.TransportUDP {
			proto = "coap"
		}
		out.QKDDevices = append(out.QKDDevices, quicks.QKDDevice{DeviceID: DeviceUUID(b.n.cfg.NodeID, l.ID()),
			LinkID: LinkUUID(l.ID()), Label: string(l.ID()), State: state, Interface: quicks.InterfaceETSI004,
			Protocol: proto, PeerKMS: string(qkd.KMEOf(l.Peer()))})
	}
	return out, nil
}

// SetStatus sets the node's state: stopped and offline make the ETSI 014
// key service answer 503 until online again. Links keep running (their
// pools stay in step with the peers'). A zeroised node stays offline.
func (b *quicksBackend) SetStatus(ctx context.Context, state quicks.State) error {
	if !b.n.svc.Active() {
		if state == quicks.StateOnline {
			return fmt.Errorf("%w: the node was zeroised and cannot go online", quicks.ErrForbidden)
		}
		return nil
	}
	old := b.n.state.get()
	b.n.state.set(state)
	if old != state {
		b.n.log.Warn("node state changed through QUICKS control/status", "from", string(old), "to", string(state),
			"by", quicks.Caller(ctx))
		reason := fmt.Sprintf("state set to %s through QUICKS control/status by %s", state, quicks.Caller(ctx))
		b.n.notifyAgent(func(ctx context.Context, c *agentapi.Client) error {
			return c.NotifyStatus(ctx, quicks.StatusNotification{State: string(state), Reason: reason})
		})
	}
	return nil
}

const devicesFromConfig = "QKD devices are set in the node's configuration (links[].device); QUICKS control/qkd-device is not supported"

func (b *quicksBackend) RegisterDevice(context.Context, string, quicks.DeviceConnection) error {
	return fmt.Errorf("%w: %s", quicks.ErrNotSupported, devicesFromConfig)
}

func (b *quicksBackend) UpdateDevice(context.Context, string, quicks.DeviceConnection) error {
	return fmt.Errorf("%w: %s", quicks.ErrNotSupported, devicesFromConfig)
}

func (b *quicksBackend) RemoveDevice(context.Context, string) error {
	return fmt.Errorf("%w: %s", quicks.ErrNotSupported, devicesFromConfig)
}

func (b *quicksBackend) LinkPerformance(ctx context.Context, linkID string, entries int) (quicks.Performance, error) {
	for _, l := range b.n.links {
		if LinkUUID(l.ID()) != strings.ToLower(linkID) || b.n.perf == nil {
			continue
		}
		if p, ok := b.n.perf.performance(ctx, l.ID(), entries); ok {
			return p, nil
		}
	}
	return quicks.Performance{}, fmt.Errorf("%w: no link %s at this KMS", quicks.ErrNotFound, linkID)
}

// CreateRelay installs a forwarding entry (see relayEntry).
func (b *quicksBackend) CreateRelay(_ context.Context, stream string, rc quicks.RelayConfig) error {
	b.relayMu.Lock()
	defer b.relayMu.Unlock()
	if _, ok := b.n.relay.Lookup(stream); ok {
		return fmt.Errorf("%w: key stream %s has a relay entry already", quicks.ErrConflict, stream)
	}
	return b.install(stream, rc)
}

// ReplaceRelay changes an entry: absent members keep the values of the
// installed entry (also one the in-process controller installed).
func (b *quicksBackend) ReplaceRelay(_ context.Context, stream string, rc quicks.RelayConfig) error {
	b.relayMu.Lock()
	defer b.relayMu.Unlock()
	old, ok := b.n.relay.Lookup(stream)
	if !ok {
		return fmt.Errorf("%w: no relay entry for key stream %s", quicks.ErrNotFound, stream)
	}
	if rc.Source == "" {
		rc.Source = string(old.Master)
	}
	if rc.Destination == nil {
		for _, s := range old.Slaves {
			rc.Destination = append(rc.Destination, string(s))
		}
	}
	if rc.Route == nil {
		for _, n := range old.Route {
			rc.Route = append(rc.Route, string(n))
		}
	}
	if rc.Multipath == nil && old.Group != "" {
		rc.Multipath = &quicks.RelayMultipath{Group: old.Group, Path: old.Path, Paths: old.Paths, Mode: old.Mode, WeightBPS: old.Rate}
	}
	if rc.NextNodeInfo == nil {
		rc.NextNodeInfo = []string{}
		for _, hop := range []qkd.NodeID{old.Prev, old.Next} {
			if a := b.peerAddr(hop); a != "" {
				rc.NextNodeInfo = append(rc.NextNodeInfo, a)
			}
		}
	}
	return b.install(stream, rc)
}

func (b *quicksBackend) DeleteRelay(_ context.Context, stream string) error {
	b.relayMu.Lock()
	defer b.relayMu.Unlock()
	if _, ok := b.n.relay.Lookup(stream); !ok {
		return fmt.Errorf("%w: no relay entry for key stream %s", quicks.ErrNotFound, stream)
	}
	b.n.relay.Remove(stream)
	b.n.log.Info("relay entry removed through QUICKS", "stream", stream)
	return nil
}

func (b *quicksBackend) install(stream string, rc quicks.RelayConfig) error {
	en, err := b.relayEntry(stream, rc)
	if err != nil {
		return err
	}
	if err := b.n.relay.Install(en); err != nil {
		return fmt.Errorf("%w: %v", quicks.ErrBadRequest, err)
	}
	b.n.log.Info("relay entry installed through QUICKS", "stream", stream, "source", string(en.Source),
		"dest", string(en.Dest), "prev", string(en.Prev), "next", string(en.Next))
	return nil
}

// relayEntry maps a QUICKS relay configuration to the relay engine's entry:
//
//   - source is the master SAE, destination the slave SAEs (QUICKS: "URI
//     or UUID of the source/destination APP"; qkms SAE IDs); the source and
//     destination nodes come from the SAE directory of the config, and all
//     destination SAEs must be at one node (no group keys over relays);
//   - next_node_info lists the authorities (host:port) of the neighbouring
//     KMSes on the path (QUICKS readme §3.1.2: all of them, unordered for
//     hop-by-hop relay); each must be the peer_addr of one of this node's
//     links, which names the neighbour.
//
// At the source the one neighbour is the next hop, at the destination the
// previous one. At an intermediate node QUICKS gives both neighbours
// without saying which is upstream: a relay step is forwarded from the
// neighbour it came from to the other one (qkms's agent lists the previous
// hop first). An empty list at the destination is 501 (QUICKS allows it;
// the engine needs the previous hop to accept relay steps), and so is more
// than one next hop at an end (multi-path or tree relay).
func (b *quicksBackend) relayEntry(stream string, rc quicks.RelayConfig) (relay.Entry, error) {
	cfg := b.n.cfg
	master := qkd.SAEID(rc.Source)
	src, ok := cfg.NodeOf(master)
	if !ok {
		return relay.Entry{}, quicks.BadField("source", fmt.Sprintf("unknown SAE %q", clipID(rc.Source)))
	}
	var dst qkd.NodeID
	slaves := make([]qkd.SAEID, 0, len(rc.Destination))
	for i, d := range rc.Destination {
		node, ok := cfg.NodeOf(qkd.SAEID(d))
		switch {
		case !ok:
			return relay.Entry{}, quicks.BadField(fmt.Sprintf("destination[%d]", i), fmt.Sprintf("unknown SAE %q", clipID(d)))
		case dst != "" && node != dst:
			return relay.Entry{}, fmt.Errorf("%w: destination SAEs at several nodes (group keys over relays) are not supported", quicks.ErrNotSupported)
		case slices.Contains(slaves, qkd.SAEID(d)) || qkd.SAEID(d) == master:
			return relay.Entry{}, quicks.BadField(fmt.Sprintf("destination[%d]", i), "repeats an SAE")
		}
		dst = node
		slaves = append(slaves, qkd.SAEID(d))
	}
	if src == dst {
		return relay.Entry{}, quicks.BadField("destination", "source and destination SAEs are at the same KMS: nothing to relay")
	}
	var hops []qkd.NodeID
	for i, a := range rc.NextNodeInfo {
		peer, ok := b.neighbourAt(a)
		if !ok {
			return relay.Entry{}, quicks.BadField(fmt.Sprintf("next_node_info[%d]", i),
				fmt.Sprintf("%q is not the peer address of a link of this KMS", clipID(a)))
		}
		if !slices.Contains(hops, peer) {
			hops = append(hops, peer)
		}
	}
	en := relay.Entry{Stream: stream, Source: src, Dest: dst, Master: master, Slaves: slaves}
	self := cfg.NodeID
	switch {
	case self != src && self != dst && len(hops) != 2:
		return relay.Entry{}, quicks.BadField("next_node_info", "an intermediate KMS of a hop-by-hop path needs its two neighbours on the path")
	case self != src && self != dst:
		// The relay engine forwards a step arriving from one of the two
		// neighbours to the other; qkms's agent lists the previous hop first.
		en.Prev, en.Next = hops[0], hops[1]
	case len(hops) > 1:
		return relay.Entry{}, fmt.Errorf("%w: more than one neighbour at an end of the path (multi-path or tree relay)", quicks.ErrNotSupported)
	case len(hops) == 0 && self == src:
		return relay.Entry{}, quicks.BadField("next_node_info", "the source KMS needs its next hop")
	case len(hops) == 0:
		return relay.Entry{}, fmt.Errorf("%w: an empty next_node_info at the destination KMS: the previous hop is needed", quicks.ErrNotSupported)
	case self == src:
		en.Next = hops[0]
	default:
		en.Prev = hops[0]
	}
	if rc.Route != nil {
		route, err := checkRoute(rc.Route, en, self)
		if err != nil {
			return relay.Entry{}, err
		}
		en.Route = route
	}
	if mp := rc.Multipath; mp != nil {
		en.Group, en.Path, en.Paths, en.Mode, en.Rate = strings.ToLower(mp.Group), mp.Path, mp.Paths, mp.Mode, mp.WeightBPS
	}
	return en, nil
}

// checkRoute checks a qkms_route against the entry: from the source node
// to the destination node, without repeats, through this node, with this
// entry's neighbours next to it.
func checkRoute(names []string, en relay.Entry, self qkd.NodeID) ([]qkd.NodeID, error) {
	route := make([]qkd.NodeID, len(names))
	for i, r := range names {
		route[i] = qkd.NodeID(r)
	}
	at := slices.Index(route, self)
	fits := len(route) >= 2 && route[0] == en.Source && route[len(route)-1] == en.Dest && at >= 0
	for i := range route {
		fits = fits && !slices.Contains(route[i+1:], route[i])
	}
	if fits {
		near := func(i int) qkd.NodeID {
			if i < 0 || i >= len(route) {
				return ""
			}
			return route[i]
		}
		prev, next := near(at-1), near(at+1)
		fits = (en.Prev == prev && en.Next == next) || (en.Prev == next && en.Next == prev && en.Prev != "" && en.Next != "")
	}
	if !fits {
		return nil, quicks.BadField("qkms_route", "does not fit the source, destination and neighbours of this entry")
	}
	return route, nil
}

// neighbourAt returns the peer of the link whose peer_addr is authority.
func (b *quicksBackend) neighbourAt(authority string) (qkd.NodeID, bool) {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return "", false
	}
	for _, lc := range b.n.cfg.Links {
		h, p, err := net.SplitHostPort(lc.PeerAddr)
		if err == nil && p == port && strings.EqualFold(strings.Trim(h, "[]"), strings.Trim(host, "[]")) {
			return lc.Peer, true
		}
	}
	return "", false
}

// peerAddr returns the peer_addr of the first link to node ("" if none).
func (b *quicksBackend) peerAddr(node qkd.NodeID) string {
	if node == "" {
		return ""
	}
	for _, lc := range b.n.cfg.Links {
		if lc.Peer == node {
			return lc.PeerAddr
		}
	}
	return ""
}

func clipID(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// ---------------------------------------------------------------------------
// The server

// newQUICKS builds the QUICKS server: TLS 1.3 with client certificates of
// the network CA; the operator and the node's own KME certificate (used by
// its SDN agent) are allowed.
func (n *Node) newQUICKS(tlsCfg *tls.Config, version string) {
	if !quicks.IsSemver(version) {
		if v := strings.TrimPrefix(version, "v"); quicks.IsSemver(v) {
			version = v
		} else {
			version = DefaultVersion
		}
	}
	allowed := map[string]bool{string(n.cfg.KMEID): true}
	if n.cfg.OperatorCN != "" {
		allowed[n.cfg.OperatorCN] = true
	}
	n.quicks = kmsapi.New(kmsapi.Options{
		Backend:   &quicksBackend{n: n, version: version},
		Authorize: func(cn string, _ *http.Request) bool { return allowed[cn] },
		TLSConfig: tlsCfg.Clone(),
		Logger:    n.log.With("component", "quicks"),
	})
}
