// Package controller is the network's SDN controller service (`qkms
// controller`): an HTTPS API for the SDN agents of the nodes (and the
// operator) around the routing logic of internal/sdn. Agents report their
// node (ETSI 015 qkd_node with PHYS links and qkdl_performance), register
// applications (qkd_app) on a KMS's QUICKS link/registration and forward
// the KMS's notifications; the controller answers with routes and
// configures every node on a route by pushing that node's qkd_node (VIRT
// links with virt_prev_hop / virt_next_hop) to its agent, which turns it
// into QUICKS link/relay calls on its KMS. See docs/sdn.md.
package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/sdn"
)

// BasePath is the prefix of the controller's API.
const BasePath = "/sdn/v1"

// AgentBasePath is the prefix of the API an agent serves to the controller.
const AgentBasePath = "/sdn-agent/v1"

// NodeReport is an agent's report on its node (PUT /sdn/v1/nodes/{id}):
// the ETSI 015 qkd_node (status, capabilities, PHYS links with
// qkdl_performance) and, as qkms extensions, how to reach the agent and
// the node's ETSI 014 limits. The first report registers the node; later
// ones are its heartbeat. The answer is the node's configuration
// (sdn.QKDNodeDocument: its VIRT links), which the agent applies.
type NodeReport struct {
	Node  sdn.QKDNode `json:"etsi-qkd-sdn-node:qkd_node"`
	Agent AgentInfo   `json:"qkms:agent"`
}

// AgentInfo is the qkms extension of a NodeReport.
type AgentInfo struct {
	// URL is the base of the agent's controller-facing API
	// (https://host:port); the controller pushes configurations there.
	URL string `json:"url"`
	// KMSID is the KMS's QUICKS kms_id (notification/registration).
	KMSID string `json:"kms_id,omitempty"`
	// ETSI014 are the KMS's ETSI 014 limits (QUICKS etsi_014_info).
	ETSI014 *Limits `json:"etsi_014,omitempty"`
}

// Limits are a KMS's ETSI 014 limits, sizes in bits.
type Limits struct {
	KMEID            string `json:"kme_id"`
	KeySize          int    `json:"key_size"`
	MaxKeyCount      int    `json:"max_key_count"`
	MaxKeyPerRequest int    `json:"max_key_per_request"`
	MaxKeySize       int    `json:"max_key_size"`
	MinKeySize       int    `json:"min_key_size"`
	MaxSAEIDCount    int    `json:"max_sae_id_count"`
}

// AppRegistration asks for a key stream (POST /sdn/v1/applications): the
// ETSI 015 qkd_app of a KMS's QUICKS link/registration, with server_app_id
// the source SAE, client_app_id the destination SAEs (all at one node),
// local_qkdn_id the source node and app_qos.min_bandwidth the requested
// rate (bit/s, 0: best effort), promised on every link of the route.
type AppRegistration struct {
	App       sdn.QKDApp `json:"etsi-qkd-sdn-node:qkd_app"`
	Multipath bool       `json:"qkms:multipath,omitempty"`
	// Split, with Multipath: every key XOR-split over node-disjoint paths
	// (sdn.RequestOptions.Split).
	Split bool `json:"qkms:split,omitempty"`
}

// AppRegistered is the answer (201): the qkd_app with app_id (the key
// stream ID), remote_qkdn_id and backing_qkdl_id filled in, the route's
// nodes and the source's next hop. Every KMS on the route is configured
// when it is sent. CounterProposal: the stream is promised only RateBPS,
// less than the min_bandwidth asked for (an ETSI 004 QoS counter-proposal;
// the stream is registered all the same, and its source releases it if
// the application does not accept).
type AppRegistered struct {
	App             sdn.QKDApp   `json:"etsi-qkd-sdn-node:qkd_app"`
	Route           []qkd.NodeID `json:"qkms:route"`
	NextHop         qkd.NodeID   `json:"qkms:next_hop"`
	RateBPS         float64      `json:"qkms:rate_bps"`
	CounterProposal bool         `json:"qkms:counter_proposal,omitempty"`
}

// Notification is a node's or the controller's report of an event
// (POST /sdn/v1/notifications, GET lists them), shaped after the ETSI 015
// notifications: Type is "event", "alarm", "sdqkdn_link_down",
// "sdqkdn_application_disconnected" or "qkdn_status"; the QUICKS
// notification/event level is Severity, its code Code.
type Notification struct {
	Type     string    `json:"type"`
	NodeID   string    `json:"qkdn_id,omitempty"`
	Severity string    `json:"severity"`
	Code     *int      `json:"code,omitempty"`
	Message  string    `json:"message"`
	LinkID   string    `json:"qkdl_id,omitempty"`
	AppID    string    `json:"app_id,omitempty"`
	Status   string    `json:"status,omitempty"`
	Time     time.Time `json:"timestamp,omitzero"`
	From     string    `json:"reported_by,omitempty"`
}

// PathStatus is the path-wide ETSI 014 status of a pair (GET
// /sdn/v1/path-status?master=&slave=): QUICKS link/status, plus the route.
type PathStatus struct {
	quicks.LinkStatus
	Route []qkd.NodeID `json:"qkms:route,omitempty"`
}

// Notification types.
const (
	NoteEvent           = "event"
	NoteAlarm           = "alarm"
	NoteLinkDown        = "sdqkdn_link_down"
	NoteAppDisconnected = "sdqkdn_application_disconnected"
	NoteNodeStatus      = "qkdn_status"
)

var noteTypes = []string{NoteEvent, NoteAlarm, NoteLinkDown, NoteAppDisconnected, NoteNodeStatus}

// Severities (the QUICKS event levels).
var severities = []string{"debug", "info", "warning", "error", "critical"}

// ErrBadMessage: a message of the API is malformed.
var ErrBadMessage = errors.New("controller: malformed message")

const maxMessage = 1 << 20

// decodeStrict decodes one JSON value of at most maxMessage bytes.
func decodeStrict(b []byte, v any) error {
	if len(b) > maxMessage {
		return fmt.Errorf("%w: over %d bytes", ErrBadMessage, maxMessage)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", ErrBadMessage, clip(err.Error()))
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data", ErrBadMessage)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

func bad(field, why string) error { return fmt.Errorf("%w: %s: %s", ErrBadMessage, field, why) }

func checkID(field, s string) error {
	switch {
	case s == "":
		return bad(field, "required")
	case len(s) > 256 || strings.ContainsAny(s, "\x00\r\n"):
		return bad(field, "not an identifier")
	}
	return nil
}

// DecodeNodeReport decodes and checks a NodeReport.
func DecodeNodeReport(b []byte) (NodeReport, error) {
	var r NodeReport
	if err := decodeStrict(b, &r); err != nil {
		return NodeReport{}, err
	}
	if err := checkID("qkd_node.qkdn_id", r.Node.ID); err != nil {
		return NodeReport{}, err
	}
	u, err := url.Parse(r.Agent.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return NodeReport{}, bad("qkms:agent.url", "must be an https URL")
	}
	if r.Node.Links != nil {
		for i, l := range r.Node.Links.Links {
			if err := checkID(fmt.Sprintf("qkd_links.qkd_link[%d].qkdl_id", i), l.ID); err != nil {
				return NodeReport{}, err
			}
			if l.Type != sdn.QKDLinkPhys {
				return NodeReport{}, bad(fmt.Sprintf("qkd_links.qkd_link[%d].qkdl_type", i), "agents report PHYS links only")
			}
		}
	}
	return r, nil
}

// DecodeAppRegistration decodes and checks an AppRegistration.
func DecodeAppRegistration(b []byte) (AppRegistration, error) {
	var r AppRegistration
	if err := decodeStrict(b, &r); err != nil {
		return AppRegistration{}, err
	}
	if err := checkID("qkd_app.server_app_id", r.App.ServerAppID); err != nil {
		return AppRegistration{}, err
	}
	if len(r.App.ClientAppIDs) == 0 || len(r.App.ClientAppIDs) > 64 {
		return AppRegistration{}, bad("qkd_app.client_app_id", "between 1 and 64 applications")
	}
	for i, c := range r.App.ClientAppIDs {
		if err := checkID(fmt.Sprintf("qkd_app.client_app_id[%d]", i), c); err != nil {
			return AppRegistration{}, err
		}
	}
	return r, nil
}

// DecodeAppRegistered decodes the answer to an AppRegistration.
func DecodeAppRegistered(b []byte) (AppRegistered, error) {
	var r AppRegistered
	if err := decodeStrict(b, &r); err != nil {
		return AppRegistered{}, err
	}
	if !quicks.IsUUID(r.App.ID) {
		return AppRegistered{}, bad("qkd_app.app_id", "not a UUID")
	}
	if len(r.Route) < 2 || r.NextHop == "" {
		return AppRegistered{}, bad("qkms:route", "a route has at least two nodes and a next hop")
	}
	return r, nil
}

// DecodeNotification decodes and checks a Notification.
func DecodeNotification(b []byte) (Notification, error) {
	var n Notification
	if err := decodeStrict(b, &n); err != nil {
		return Notification{}, err
	}
	if !contains(noteTypes, n.Type) {
		return Notification{}, bad("type", "one of "+strings.Join(noteTypes, ", "))
	}
	if !contains(severities, n.Severity) {
		return Notification{}, bad("severity", "one of "+strings.Join(severities, ", "))
	}
	if n.Message == "" || len(n.Message) > 1024 {
		return Notification{}, bad("message", "between 1 and 1024 characters")
	}
	return n, nil
}

// DecodeNodeDocument decodes a configuration the controller pushes to an
// agent (or answers to a report).
func DecodeNodeDocument(b []byte) (sdn.QKDNodeDocument, error) {
	var d sdn.QKDNodeDocument
	if err := decodeStrict(b, &d); err != nil {
		return sdn.QKDNodeDocument{}, err
	}
	if err := checkID("qkd_node.qkdn_id", d.Node.ID); err != nil {
		return sdn.QKDNodeDocument{}, err
	}
	if d.Node.Links != nil {
		for i, l := range d.Node.Links.Links {
			if l.Type != sdn.QKDLinkVirt {
				continue
			}
			if !quicks.IsUUID(l.ID) {
				return sdn.QKDNodeDocument{}, bad(fmt.Sprintf("qkd_links.qkd_link[%d].qkdl_id", i), "a VIRT link is named by its key stream UUID")
			}
		}
	}
	return d, nil
}

// DecodePathStatus decodes a PathStatus.
func DecodePathStatus(b []byte) (PathStatus, error) {
	var p PathStatus
	if err := decodeStrict(b, &p); err != nil {
		return PathStatus{}, err
	}
	if p.StoredKeyCount < 0 || p.KeySize < 0 || p.MaxKeyCount < 0 {
		return PathStatus{}, bad("stored_key_count", "negative")
	}
	return p, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
