package telemetry

import (
	dto "github.com/prometheus/client_model/go"
	"net/http"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qkms/qkms/internal/qkd"
)

// MaterialState is the state label of qkms_link_material_bytes.
type MaterialState string

// Material states (unconfirmed material is never used).
const (
	MaterialUnconfirmed MaterialState = "unconfirmed"
	MaterialConfirmed   MaterialState = "confirmed"
)

// KeyState is the state label of qkms_keys.
type KeyState string

// Key states.
const (
	KeysPending KeyState = "pending"
	KeysReady   KeyState = "ready"
)

// BatchResult is the result label of qkms_batches_total (new_key_batch).
type BatchResult string

// Batch results (a mismatching batch is discarded on both sides).
const (
	BatchConfirmed BatchResult = "confirmed"
	BatchMismatch  BatchResult = "mismatch"
	BatchMissing   BatchResult = "missing"
)

// API is the api label of qkms_keys_delivered_total.
type API string

// Application interfaces (ETSI GS QKD 014 and 004).
const (
	APIETSI014 API = "etsi014"
	APIETSI004 API = "etsi004"
)

// PeerResult is the result label of qkms_peer_messages_total.
type PeerResult string

// Peer message results.
const (
	PeerOK       PeerResult = "ok"
	PeerBadMAC   PeerResult = "bad_mac"
	PeerRejected PeerResult = "rejected" // well-formed and authentic, refused by the receiver
	PeerError    PeerResult = "error"    // malformed, transport failure or timeout
)

// Metrics are one node's Prometheus metrics on their own registry. All
// methods are safe for concurrent use and do nothing on a nil *Metrics.
type Metrics struct {
	reg *prometheus.Registry

	skr              *prometheus.GaugeVec
	materialBytes    *prometheus.GaugeVec
	keys             *prometheus.GaugeVec
	macSlots         *prometheus.GaugeVec
	keysDelivered    *prometheus.CounterVec
	macFailures      *prometheus.CounterVec
	pskTags          *prometheus.CounterVec
	batches          *prometheus.CounterVec
	blocks           *prometheus.CounterVec
	internalKeyBytes *prometheus.CounterVec
	peerMessages     *prometheus.CounterVec
	nodeStatus       prometheus.Gauge
	hybridRejected   prometheus.Counter
	hybridKeys       *prometheus.CounterVec
	openStreams      atomic.Pointer[func() int] // qkms_etsi004_streams_open's source
}

// NewMetrics returns the metrics of node (label node="ID" on every qkms_
// series) on a new registry that also holds the Go runtime and process
// collectors. The node starts as inactive (qkms_node_status 0).
func NewMetrics(node string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var r prometheus.Registerer = reg
	if node != "" {
		r = prometheus.WrapRegistererWith(prometheus.Labels{"node": labelValue(node)}, reg)
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		r.MustRegister(v)
		return v
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		r.MustRegister(v)
		return v
	}
	m := &Metrics{
		reg:              reg,
		skr:              gauge("qkms_link_skr_bits_per_second", "Measured rate of key material pushed by the link's QKD module (SKR), bit/s.", "link"),
		materialBytes:    gauge("qkms_link_material_bytes", "Key material held per link, by state.", "link", "state"),
		keys:             gauge("qkms_keys", "Keys per link, by state.", "link", "state"),
		macSlots:         gauge("qkms_mac_slots", "One-time MAC keys available per link and sending side.", "link", "sender"),
		keysDelivered:    counter("qkms_keys_delivered_total", "Keys delivered to applications, by API.", "api"),
		macFailures:      counter("qkms_mac_failures_total", "KMS-to-KMS messages whose ITS MAC did not verify.", "link"),
		pskTags:          counter("qkms_psk_tags_total", "Tags computed or checked with the pre-shared key (bootstrap).", "link"),
		batches:          counter("qkms_batches_total", "new_key_batch confirmations, by result.", "link", "result"),
		blocks:           counter("qkms_link_blocks_total", "Blocks of link key material from the QKD module, by what became of them: received (from the module), stored, dropped (the link holds max_link_material), confirmed, discarded (mismatch or lost at one end).", "link", "result"),
		internalKeyBytes: counter("qkms_internal_key_bytes_total", "QKD key bytes this node turned into MAC keys or spent on batch checks; the link's ESKR is its SKR minus the rate of this summed over both ends.", "link"),
		hybridKeys:       counter("qkms_hybrid_keys_total", "Post-quantum hybrid keys this node stored, as the source or the destination of a relayed key stream.", "end"),
		peerMessages:     counter("qkms_peer_messages_total", "KMS-to-KMS messages, by type and result.", "link", "type", "result"),
	}
	m.nodeStatus = prometheus.NewGauge(prometheus.GaugeOpts{Name: "qkms_node_status", Help: "1 if the node is active, 0 if inactive (stopped or zeroised)."})
	r.MustRegister(m.nodeStatus)
	m.hybridRejected = prometheus.NewCounter(prometheus.CounterOpts{Name: "qkms_hybrid_rejected_total",
		Help: "Relay steps this node refused as a destination for their post-quantum hybrid part (path not the configured route, header or signature not verified, plain keys where hybrid ones are required)."})
	r.MustRegister(m.hybridRejected)
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "qkms_etsi004_streams_open",
		Help: "ETSI 004 key streams whose end at this node is open."}, func() float64 {
		if f := m.openStreams.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	}))
	for _, api := range []API{APIETSI014, APIETSI004} {
		m.keysDelivered.WithLabelValues(string(api))
	}
	return m
}

// Registry returns the registry, for collectors that live elsewhere (e.g. a
// relay latency histogram). Register them with the node label yourself.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// InitLink creates every per-link series at zero, so that a new link shows
// up in /metrics (and rate() works) before anything happens on it.
func (m *Metrics) InitLink(link qkd.LinkID) {
	if m == nil {
		return
	}
	l := labelValue(string(link))
	for _, s := range []MaterialState{MaterialUnconfirmed, MaterialConfirmed} {
		m.materialBytes.WithLabelValues(l, string(s))
	}
	for _, s := range []KeyState{KeysPending, KeysReady} {
		m.keys.WithLabelValues(l, string(s))
	}
	for _, r := range []BatchResult{BatchConfirmed, BatchMismatch, BatchMissing} {
		m.batches.WithLabelValues(l, string(r))
	}
	for _, r := range []BlockResult{BlocksReceived, BlocksStored, BlocksDropped, BlocksConfirmed, BlocksDiscarded} {
		m.blocks.WithLabelValues(l, string(r))
	}
	m.skr.WithLabelValues(l)
	m.macFailures.WithLabelValues(l)
	m.pskTags.WithLabelValues(l)
	m.internalKeyBytes.WithLabelValues(l)
}

// ForgetLink removes every series of link (a link taken out of service).
func (m *Metrics) ForgetLink(link qkd.LinkID) {
	if m == nil {
		return
	}
	match := prometheus.Labels{"link": labelValue(string(link))}
	for _, v := range []*prometheus.MetricVec{m.skr.MetricVec, m.materialBytes.MetricVec, m.keys.MetricVec,
		m.macSlots.MetricVec, m.macFailures.MetricVec, m.pskTags.MetricVec, m.batches.MetricVec, m.blocks.MetricVec,
		m.internalKeyBytes.MetricVec, m.peerMessages.MetricVec} {
		v.DeletePartialMatch(match)
	}
}

// SetLinkSKR sets the measured ingest rate of confirmed material on link.
func (m *Metrics) SetLinkSKR(link qkd.LinkID, bitsPerSecond float64) {
	if m == nil {
		return
	}
	m.skr.WithLabelValues(labelValue(string(link))).Set(bitsPerSecond)
}

// SetMaterialBytes sets the bytes of material in state on link.
func (m *Metrics) SetMaterialBytes(link qkd.LinkID, state MaterialState, n int64) {
	if m == nil {
		return
	}
	m.materialBytes.WithLabelValues(labelValue(string(link)), labelValue(string(state))).Set(float64(n))
}

// SetKeys sets the number of keys in state on link.
func (m *Metrics) SetKeys(link qkd.LinkID, state KeyState, n int) {
	if m == nil {
		return
	}
	m.keys.WithLabelValues(labelValue(string(link)), labelValue(string(state))).Set(float64(n))
}

// SetMACSlots sets the one-time MAC keys available on link for messages
// sent by sender.
func (m *Metrics) SetMACSlots(link qkd.LinkID, sender qkd.NodeID, n int) {
	if m == nil {
		return
	}
	m.macSlots.WithLabelValues(labelValue(string(link)), labelValue(string(sender))).Set(float64(n))
}

// AddKeysDelivered counts n keys delivered through api.
func (m *Metrics) AddKeysDelivered(api API, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.keysDelivered.WithLabelValues(labelValue(string(api))).Add(float64(n))
}

// SetOpenStreams makes f the source of qkms_etsi004_streams_open (read
// at every scrape; e.g. streams.Service.OpenStreams).
func (m *Metrics) SetOpenStreams(f func() int) {
	if m == nil || f == nil {
		return
	}
	m.openStreams.Store(&f)
}

// AddHybridKeys counts n hybrid keys stored at end ("source" or
// "destination").
func (m *Metrics) AddHybridKeys(end string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.hybridKeys.WithLabelValues(labelValue(end)).Add(float64(n))
}

// AddHybridRejected counts a relay step refused for its hybrid part.
func (m *Metrics) AddHybridRejected() {
	if m == nil {
		return
	}
	m.hybridRejected.Inc()
}

// IncMACFailures counts a message on link whose MAC did not verify.
func (m *Metrics) IncMACFailures(link qkd.LinkID) {
	if m == nil {
		return
	}
	m.macFailures.WithLabelValues(labelValue(string(link))).Inc()
}

// IncPSKTags counts a tag made or checked with link's pre-shared key.
func (m *Metrics) IncPSKTags(link qkd.LinkID) {
	if m == nil {
		return
	}
	m.pskTags.WithLabelValues(labelValue(string(link))).Inc()
}

// IncBatches counts a new_key_batch on link with result.
func (m *Metrics) IncBatches(link qkd.LinkID, result BatchResult) {
	if m == nil {
		return
	}
	m.batches.WithLabelValues(labelValue(string(link)), labelValue(string(result))).Inc()
}

// BlockResult is what became of blocks of link key material.
type BlockResult string

// Block results.
const (
	BlocksReceived  BlockResult = "received"
	BlocksStored    BlockResult = "stored"
	BlocksDropped   BlockResult = "dropped"
	BlocksConfirmed BlockResult = "confirmed"
	BlocksDiscarded BlockResult = "discarded"
)

// AddBlocks counts n blocks of link with result.
func (m *Metrics) AddBlocks(link qkd.LinkID, result BlockResult, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.blocks.WithLabelValues(labelValue(string(link)), string(result)).Add(float64(n))
}

// AddInternalKeyBytes counts n key bytes consumed internally on link.
func (m *Metrics) AddInternalKeyBytes(link qkd.LinkID, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.internalKeyBytes.WithLabelValues(labelValue(string(link))).Add(float64(n))
}

// IncPeerMessages counts a KMS-to-KMS message of msgType (one of the fixed
// message names, e.g. "new_key_batch") on link with result.
func (m *Metrics) IncPeerMessages(link qkd.LinkID, msgType string, result PeerResult) {
	if m == nil {
		return
	}
	m.peerMessages.WithLabelValues(labelValue(string(link)), labelValue(msgType), labelValue(string(result))).Inc()
}

// SetNodeActive sets qkms_node_status to 1 (active) or 0 (inactive).
func (m *Metrics) SetNodeActive(active bool) {
	if m == nil {
		return
	}
	v := 0.0
	if active {
		v = 1
	}
	m.nodeStatus.Set(v)
}

// labelValue makes s acceptable as a label value (prometheus panics on
// invalid UTF-8).
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// Value returns the current value of the first gauge or counter series
// named name whose labels include every pair in match (in-process readers:
// tests, benchmarks, readiness).
func (m *Metrics) Value(name string, match map[string]string) (float64, bool) {
	if m == nil {
		return 0, false
	}
	mfs, err := m.reg.Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if !labelsMatch(mt.GetLabel(), match) {
				continue
			}
			if g := mt.GetGauge(); g != nil {
				return g.GetValue(), true
			}
			if c := mt.GetCounter(); c != nil {
				return c.GetValue(), true
			}
		}
	}
	return 0, false
}

func labelsMatch(have []*dto.LabelPair, want map[string]string) bool {
	n := 0
	for _, l := range have {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}
