package sdn

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// Identities of the etsi-qkd-node-types module (ETSI GS QKD 015 V2.1.1),
// with the module prefix RESTCONF JSON puts on identityrefs.
const (
	QKDNodeNew       = "etsi-qkd-node-types:NEW"
	QKDNodeOperating = "etsi-qkd-node-types:OPERATING"
	QKDNodeDown      = "etsi-qkd-node-types:DOWN"
	QKDNodeFailure   = "etsi-qkd-node-types:FAILURE"
	QKDNodeOut       = "etsi-qkd-node-types:OUT"

	QKDLinkVirt = "etsi-qkd-node-types:VIRT"
	QKDLinkPhys = "etsi-qkd-node-types:PHYS"

	QKDLinkActive  = "etsi-qkd-node-types:ACTIVE"
	QKDLinkPassive = "etsi-qkd-node-types:PASSIVE"
	QKDLinkPending = "etsi-qkd-node-types:PENDING"
	QKDLinkOff     = "etsi-qkd-node-types:OFF"

	QKDAppClient   = "etsi-qkd-node-types:CLIENT"
	QKDAppInternal = "etsi-qkd-node-types:INTERNAL"
	QKDAppOn       = "etsi-qkd-node-types:ON"
)

// QKDNodeDocument is the RESTCONF body of
// /restconf/data/etsi-qkd-sdn-node:qkd_node.
type QKDNodeDocument struct {
	Node QKDNode `json:"etsi-qkd-sdn-node:qkd_node"`
	// Seq (qkms extension) orders the configurations the controller
	// renders: a later rendering has a greater Seq (a restarted controller
	// starts above the last one). An agent ignores a configuration older
	// than one it applied: a report's answer rendered before a push can
	// arrive after it.
	Seq uint64 `json:"qkms:config_seq,omitempty"`
}

// QKDNode is the `qkd_node` container of etsi-qkd-sdn-node (015 V2.1.1),
// reduced to what qkms uses.
type QKDNode struct {
	ID           string               `json:"qkdn_id"`
	Status       string               `json:"qkdn_status,omitempty"`
	Version      string               `json:"qkdn_version,omitempty"`
	LocationID   string               `json:"qkdn_location_id,omitempty"`
	Capabilities *QKDNodeCapabilities `json:"qkdn_capabilities,omitempty"`
	Applications *QKDApplications     `json:"qkd_applications,omitempty"`
	Links        *QKDLinks            `json:"qkd_links,omitempty"`
}

// QKDNodeCapabilities is `qkdn_capabilities`.
type QKDNodeCapabilities struct {
	LinkStatsSupport        bool `json:"link_stats_support"`
	ApplicationStatsSupport bool `json:"application_stats_support"`
	KeyRelayModeEnable      bool `json:"key_relay_mode_enable"`
}

// QKDApplications is the `qkd_applications` container.
type QKDApplications struct {
	Apps []QKDApp `json:"qkd_app"`
}

// QKDApp is one `qkd_app` list entry.
type QKDApp struct {
	ID           string   `json:"app_id"`
	Status       string   `json:"app_status,omitempty"`
	Type         string   `json:"app_type"`
	ServerAppID  string   `json:"server_app_id"`
	ClientAppIDs []string `json:"client_app_id"`
	Priority     uint32   `json:"app_priority,omitempty"`
	QoS          *AppQoS  `json:"app_qos,omitempty"`
	BackingLinks []string `json:"backing_qkdl_id,omitempty"`
	LocalNodeID  string   `json:"local_qkdn_id,omitempty"`
	RemoteNodeID string   `json:"remote_qkdn_id,omitempty"`
}

// AppQoS is `app_qos` (bandwidths in bit/s, jitter in ms, ttl in s).
type AppQoS struct {
	MaxBandwidth              uint32 `json:"max_bandwidth"`
	MinBandwidth              uint32 `json:"min_bandwidth"`
	Jitter                    uint32 `json:"jitter,omitempty"`
	TTL                       uint32 `json:"ttl,omitempty"`
	ClientsSharedPathEnable   bool   `json:"clients_shared_path_enable"`
	ClientsSharedKeysRequired bool   `json:"clients_shared_keys_required"`
}

// QKDLinks is the `qkd_links` container.
type QKDLinks struct {
	Links []QKDLink `json:"qkd_link"`
}

// QKDLink is one `qkd_link` list entry: a physical QKD link (PHYS) or a
// virtual key association over relay hops (VIRT).
type QKDLink struct {
	ID           string     `json:"qkdl_id"`
	Status       string     `json:"qkdl_status,omitempty"`
	Enable       *bool      `json:"qkdl_enable,omitempty"` // YANG default true
	Local        QKDLinkEnd `json:"qkdl_local"`
	Remote       QKDLinkEnd `json:"qkdl_remote"`
	Type         string     `json:"qkdl_type"`
	Applications []string   `json:"qkdl_applications,omitempty"`
	// VIRT only.
	VirtPrevHop   string   `json:"virt_prev_hop,omitempty"`
	VirtNextHop   []string `json:"virt_next_hop,omitempty"`
	VirtBandwidth uint32   `json:"virt_bandwidth,omitempty"`
	// VIRT only, qkms extension: the key stream's source application
	// (server_app_id) and destination applications (client_app_id), which
	// every KMS on the path needs for its QUICKS link/relay entry.
	ServerAppID  string   `json:"qkms:server_app_id,omitempty"`
	ClientAppIDs []string `json:"qkms:client_app_id,omitempty"`
	// Route (VIRT only, qkms extension): the node IDs of the stream's
	// route from the source to this link's destination (single-path
	// streams), so that the destination can check the signed forwarding
	// path of hybrid keys (docs/hybrid.md).
	Route []string `json:"qkms:route,omitempty"`
	// Multipath (VIRT only, qkms extension): the link is one path of a
	// multipath key stream (docs/relay-design.md "Multipath relay").
	Multipath *VirtMultipath `json:"qkms:multipath,omitempty"`
	// PHYS only.
	Performance *QKDLinkPerformance `json:"qkdl_performance,omitempty"`
}

// VirtMultipath names the multipath key stream a VIRT link is one path of:
// Group is the stream's ID (the key stream its applications registered),
// the link's own ID that of the path (PathStreamID), Path its index among
// Paths, Mode "spread" or "split" (RequestOptions.Split) and Weight the
// path's share of the stream, bit/s (its rate, or its part of the
// max-flow for a best-effort stream).
type VirtMultipath struct {
	Group  string  `json:"group"`
	Path   int     `json:"path"`
	Paths  int     `json:"paths"`
	Mode   string  `json:"mode"`
	Weight float64 `json:"weight_bps"`
}

// PathStreamID is the key stream ID of path i of multipath stream id: a
// name-based UUID (RFC 9562 version 5: SHA-1 in the URL namespace) of
// both, the same at every node. (Spelled out here: the uuid package would
// pull a database driver interface into the routing logic.)
func PathStreamID(id StreamID, i int) string {
	h := sha1.New()
	h.Write(nsURL[:])
	fmt.Fprintf(h, "qkms:key-stream:%s#path-%d", id, i)
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	x := hex.EncodeToString(u)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// nsURL is the URL namespace of name-based UUIDs (RFC 9562 section 6.6).
var nsURL = [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// QKDLinkEnd is `qkdl_local` / `qkdl_remote`.
type QKDLinkEnd struct {
	NodeID      string  `json:"qkdn_id"`
	InterfaceID *uint32 `json:"qkdi_id,omitempty"`
}

// QKDLinkPerformance is `qkdl_performance`, bit/s.
type QKDLinkPerformance struct {
	ExpectedConsumption uint32 `json:"expected_consumption"`
	SKR                 uint32 `json:"skr"`
	ESKR                uint32 `json:"eskr"`
	// KAV (qkms extension, from QUICKS): key available for applications
	// on the link now, bytes.
	KAV uint64 `json:"qkms:kav,omitempty"`
}

func ptr[T any](v T) *T { return &v }

func bps(x float64) uint32 {
	return uint32(min(max(math.Round(x), 0), math.MaxUint32))
}

var nodeStatus015 = map[NodeStatus]string{
	NodeOnline: QKDNodeOperating, NodeStopped: QKDNodeOut, NodeOffline: QKDNodeDown,
}

// QKDNode renders node id's `qkd_node`: its capabilities; a CLIENT
// qkd_app per key stream that starts or ends there; a PHYS qkd_link per
// QKD link at the node (with status, the streams booked on it and
// qkdl_performance: skr and eskr as routing assumes them, the promised rate
// as expected_consumption); and a VIRT qkd_link per key stream through the
// node, named by the stream ID, with its previous and next hop nodes and
// its rate. Lists are in topology order, then registration order.
func (c *Controller) QKDNode(id qkd.NodeID) (QKDNode, error) {
	d, err := c.QKDNodeDocument(id)
	return d.Node, err
}

// QKDNodeDocument is QKDNode in its document, with the rendering's Seq.
func (c *Controller) QKDNodeDocument(id qkd.NodeID) (QKDNodeDocument, error) {
	if _, ok := c.g.index[id]; !ok {
		return QKDNodeDocument{}, fmt.Errorf("%w %q", ErrUnknownNode, id)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	// Renderings under the read lock see no change between them: the
	// order of Seq is the order of the states rendered.
	return QKDNodeDocument{Node: c.qkdNode(id), Seq: c.seqBase + c.renders.Add(1)}, nil
}

// qkdNode renders node id's qkd_node; caller holds mu (read).
func (c *Controller) qkdNode(id qkd.NodeID) QKDNode {
	n := c.g.index[id]
	out := QKDNode{
		ID:     string(id),
		Status: nodeStatus015[c.node[n]],
		Capabilities: &QKDNodeCapabilities{
			LinkStatsSupport: true, ApplicationStatsSupport: true, KeyRelayModeEnable: true,
		},
	}
	now := c.now()
	users := c.linkUsers()
	var links []QKDLink
	for li, l := range c.g.links {
		if l.A == id || l.B == id {
			links = append(links, c.physLink(li, id, now, users[li]))
		}
	}
	var apps []QKDApp
	for _, r := range c.sortedRecords() {
		if _, on := slices.BinarySearch(r.nodes, n); !on {
			continue
		}
		links = append(links, virtLinks(r.s, id)...)
		if id == r.s.Source || slices.Contains(r.s.Destinations, id) {
			apps = append(apps, clientApp(r.s, id))
		}
	}
	if len(apps) > 0 {
		out.Applications = &QKDApplications{Apps: apps}
	}
	if len(links) > 0 {
		out.Links = &QKDLinks{Links: links}
	}
	return out
}

// physLink: caller holds mu.
func (c *Controller) physLink(li int, at qkd.NodeID, now time.Time, users []StreamID) QKDLink {
	st := c.linkState(li, now, users)
	l := QKDLink{
		ID: string(st.ID), Status: QKDLinkActive, Enable: ptr(st.Status == LinkUp),
		Local: QKDLinkEnd{NodeID: string(at)}, Type: QKDLinkPhys,
		Performance: &QKDLinkPerformance{
			ExpectedConsumption: bps(st.Promised), SKR: bps(st.Nominal), ESKR: bps(st.Capacity),
		},
	}
	l.Remote.NodeID = string(st.B)
	if st.B == at {
		l.Remote.NodeID = string(st.A)
	}
	if st.Perf != nil && !st.Stale {
		l.Performance.SKR = bps(st.Perf.SKR)
	}
	if st.Status == LinkDown {
		l.Status = QKDLinkOff
		if st.Perf != nil && st.Perf.KAV > 0 {
			l.Status = QKDLinkPassive // not generating, keys left
		}
	}
	for _, s := range users {
		l.Applications = append(l.Applications, string(s))
	}
	return l
}

// virtLinks are the VIRT qkd_links of stream s at node at: one for a
// single-path or group stream, one per path through at for a multipath
// stream.
func virtLinks(s Stream, at qkd.NodeID) []QKDLink {
	if !s.Route.Multipath {
		return []QKDLink{virtLink(s, at, -1)}
	}
	mode := MultipathSpread
	if s.Route.Options.Split {
		mode = MultipathSplit
	}
	var out []QKDLink
	for i, p := range s.Route.Paths {
		if !slices.Contains(p.Nodes, at) {
			continue
		}
		l := virtLink(s, at, i)
		l.ID = PathStreamID(s.ID, i)
		l.VirtBandwidth = bps(p.Rate)
		weight := p.Rate
		if weight <= 0 {
			weight = p.Capacity
		}
		l.Multipath = &VirtMultipath{Group: string(s.ID), Path: i, Paths: len(s.Route.Paths), Mode: mode, Weight: weight}
		for _, n := range p.Nodes {
			l.Route = append(l.Route, string(n))
		}
		out = append(out, l)
	}
	return out
}

// Multipath modes (VirtMultipath.Mode).
const (
	MultipathSpread = "spread"
	MultipathSplit  = "split"
)

// virtLink is the VIRT qkd_link of stream s at node at (of its path path
// only, if path >= 0): local end at, remote end the other end of the key
// association (the source, seen from a destination; the first destination
// otherwise).
func virtLink(s Stream, at qkd.NodeID, path int) QKDLink {
	l := QKDLink{
		ID: string(s.ID), Status: QKDLinkActive, Enable: ptr(true), Type: QKDLinkVirt,
		Local: QKDLinkEnd{NodeID: string(at)}, Remote: QKDLinkEnd{NodeID: string(s.Destinations[0])},
		Applications: []string{string(s.ID)}, VirtBandwidth: bps(s.Rate),
		ServerAppID: string(s.SourceSAE),
	}
	for _, d := range s.DestinationSAEs {
		l.ClientAppIDs = append(l.ClientAppIDs, string(d))
	}
	if slices.Contains(s.Destinations, at) {
		l.Remote.NodeID = string(s.Source)
	}
	for _, e := range Forwarding(s) {
		if e.Node != at || path >= 0 && e.Path != path {
			continue
		}
		if e.Prev != nil && l.VirtPrevHop == "" {
			l.VirtPrevHop = string(e.Prev.Node)
		}
		for _, h := range e.Next {
			if !slices.Contains(l.VirtNextHop, string(h.Node)) {
				l.VirtNextHop = append(l.VirtNextHop, string(h.Node))
			}
		}
	}
	slices.Sort(l.VirtNextHop)
	if !s.Route.Multipath && len(s.Route.Paths) == 1 {
		for _, n := range s.Route.Paths[0].Nodes {
			l.Route = append(l.Route, string(n))
		}
	}
	return l
}

// clientApp is the CLIENT qkd_app of stream s at one of its end nodes.
func clientApp(s Stream, at qkd.NodeID) QKDApp {
	group := len(s.Destinations) > 1
	a := QKDApp{
		ID: string(s.ID), Status: QKDAppOn, Type: QKDAppClient,
		ServerAppID: string(s.SourceSAE), ClientAppIDs: []string{},
		QoS: &AppQoS{
			MaxBandwidth: bps(s.Rate), MinBandwidth: bps(s.Rate),
			ClientsSharedPathEnable: group, ClientsSharedKeysRequired: group,
		},
		BackingLinks: []string{string(s.ID)},
		LocalNodeID:  string(at), RemoteNodeID: string(s.Destinations[0]),
	}
	if a.ServerAppID == "" {
		a.ServerAppID = string(s.Source)
	}
	for i, d := range s.Destinations {
		if i < len(s.DestinationSAEs) {
			a.ClientAppIDs = append(a.ClientAppIDs, string(s.DestinationSAEs[i]))
		} else {
			a.ClientAppIDs = append(a.ClientAppIDs, string(d))
		}
	}
	if at != s.Source {
		a.RemoteNodeID = string(s.Source)
	}
	return a
}

// ApplyQKDNode takes an agent's `qkd_node` report: the node's status
// (OPERATING → online, OUT → stopped, anything else → offline) and, for
// each PHYS link, its status (OFF or PENDING, or qkdl_enable false → down;
// ACTIVE or PASSIVE → up) and qkdl_performance (skr, eskr; timestamped
// now). VIRT links and applications are the controller's to write and are
// ignored. Status changes reroute streams as Reroute does; the result
// lists them. Problems with single links are joined into the error; the
// rest of the report is still applied.
func (c *Controller) ApplyQKDNode(n QKDNode) ([]Rerouted, error) {
	id := qkd.NodeID(n.ID)
	if _, ok := c.g.index[id]; !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownNode, n.ID)
	}
	var out []Rerouted
	var errs []error
	if n.Status != "" {
		st := NodeOffline
		switch n.Status {
		case QKDNodeOperating:
			st = NodeOnline
		case QKDNodeOut:
			st = NodeStopped
		}
		rr, err := c.SetNodeStatus(id, st)
		out, errs = append(out, rr...), append(errs, err)
	}
	if n.Links != nil {
		for _, l := range n.Links.Links {
			if l.Type != QKDLinkPhys {
				continue
			}
			rr, err := c.applyPhys(id, l)
			out, errs = append(out, rr...), append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

func (c *Controller) applyPhys(at qkd.NodeID, l QKDLink) ([]Rerouted, error) {
	li, ok := c.g.linkIndex[qkd.LinkID(l.ID)]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownLink, l.ID)
	}
	if link := c.g.links[li]; link.A != at && link.B != at {
		return nil, fmt.Errorf("%w: link %q does not end at %s", ErrInvalid, l.ID, at)
	}
	if p := l.Performance; p != nil {
		perf := LinkPerf{SKR: float64(p.SKR), ESKR: float64(p.ESKR), KAV: p.KAV}
		c.mu.RLock()
		if old := c.perf[li]; old != nil {
			perf.EXKR = old.EXKR
			if p.KAV == 0 {
				perf.KAV = old.KAV
			}
		}
		c.mu.RUnlock()
		if err := c.Report(qkd.LinkID(l.ID), perf); err != nil {
			return nil, err
		}
	}
	st := LinkUp
	if (l.Enable != nil && !*l.Enable) || l.Status == QKDLinkOff || l.Status == QKDLinkPending {
		st = LinkDown
	}
	return c.SetLinkStatus(qkd.LinkID(l.ID), st)
}
