package controller_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/sdn"
)

func nodeIDs(ids ...string) []qkd.NodeID {
	out := make([]qkd.NodeID, len(ids))
	for i, id := range ids {
		out[i] = qkd.NodeID(id)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type nodesAnswer struct {
	Nodes []controller.NodeView `json:"nodes"`
}

func (e *env) nodes() map[qkd.NodeID]controller.NodeView {
	e.t.Helper()
	a := e.do(operatorCN, http.MethodGet, controller.BasePath+"/nodes", "")
	if a.status != http.StatusOK {
		e.t.Fatalf("GET nodes = %d %s", a.status, a.body)
	}
	var out nodesAnswer
	if err := json.Unmarshal(a.body, &out); err != nil {
		e.t.Fatal(err)
	}
	m := map[qkd.NodeID]controller.NodeView{}
	for _, v := range out.Nodes {
		m[v.ID] = v
	}
	return m
}

func TestReportRegistersNodes(t *testing.T) {
	e := newEnv(t, controller.Options{})
	for _, id := range nodeIDs("A", "B") {
		doc := e.report(id, defaultLimits(id), nil)
		if doc.Node.ID != string(id) {
			t.Errorf("report answer for %s names %q", id, doc.Node.ID)
		}
		if _, ok := virtIn(doc.Node, ""); ok {
			t.Errorf("report answer for %s has a VIRT link before any stream", id)
		}
	}
	got := e.nodes()
	for _, id := range nodeIDs("A", "B") {
		if got[id].Status != sdn.NodeOnline || got[id].AgentURL != e.agents[id].srv.URL || got[id].LastSeen == "" {
			t.Errorf("node %s = %+v, want online at %s", id, got[id], e.agents[id].srv.URL)
		}
	}
	for _, id := range nodeIDs("C", "D", "E") {
		if got[id].Status != sdn.NodeOffline || got[id].AgentURL != "" {
			t.Errorf("node %s = %+v, want offline without agent", id, got[id])
		}
	}
	if !e.ctrl.Online("A") || e.ctrl.Online("C") {
		t.Errorf("Online(A), Online(C) = %v, %v; want true, false", e.ctrl.Online("A"), e.ctrl.Online("C"))
	}
	if !hasNote(e.ctrl, controller.NoteNodeStatus, func(n controller.Notification) bool { return n.NodeID == "A" }) {
		t.Errorf("no qkdn_status notification for A's registration: %+v", e.ctrl.Notifications())
	}
	// A stopped KMS (OUT) is not online.
	r := e.reportOf("A", nil, nil)
	r.Node.Status = sdn.QKDNodeOut
	if _, err := e.clients["A"].Report(ctx(t), r); err != nil {
		t.Fatal(err)
	}
	if got := e.nodes()["A"].Status; got != sdn.NodeStopped {
		t.Errorf("A after an OUT report = %s, want %s", got, sdn.NodeStopped)
	}
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t, controller.Options{})
	reportA := mustJSON(t, e.reportOf("A", nil, nil))
	reg := mustJSON(t, registration("SAE_A1", "SAE_C1"))
	tests := []struct {
		name         string
		cn           string
		method, path string
		body         string
		want         int
	}{
		{"agent reports its node", "KME_A", http.MethodPut, "/nodes/A", reportA, http.StatusOK},
		{"agent reports another node", "KME_B", http.MethodPut, "/nodes/A", reportA, http.StatusForbidden},
		{"report names another node", "KME_B", http.MethodPut, "/nodes/B", reportA, http.StatusBadRequest},
		{"operator reports a node", operatorCN, http.MethodPut, "/nodes/A", reportA, http.StatusForbidden},
		{"operator registers", operatorCN, http.MethodPost, "/applications", reg, http.StatusForbidden},
		{"operator notifies", operatorCN, http.MethodPost, "/notifications", `{"type":"event","severity":"info","message":"m"}`, http.StatusForbidden},
		{"operator patches", operatorCN, http.MethodPatch, "/applications/" + uuid.NewString(), "{}", http.StatusForbidden},
		{"unknown CN lists nodes", "stranger", http.MethodGet, "/nodes", "", http.StatusForbidden},
		{"unknown CN reports", "stranger", http.MethodPut, "/nodes/A", reportA, http.StatusForbidden},
		{"unknown CN unknown path", "stranger", http.MethodGet, "/nothing", "", http.StatusForbidden},
		{"KME of a node outside the topology", "KME_Z", http.MethodGet, "/nodes", "", http.StatusForbidden},
		{"operator lists nodes", operatorCN, http.MethodGet, "/nodes", "", http.StatusOK},
		{"operator reads a node", operatorCN, http.MethodGet, "/nodes/C", "", http.StatusOK},
		{"operator reads an unknown node", operatorCN, http.MethodGet, "/nodes/Z", "", http.StatusNotFound},
		{"operator lists links", operatorCN, http.MethodGet, "/links", "", http.StatusOK},
		{"operator lists streams", operatorCN, http.MethodGet, "/applications", "", http.StatusOK},
		{"operator lists notifications", operatorCN, http.MethodGet, "/notifications", "", http.StatusOK},
		{"agent lists nodes", "KME_C", http.MethodGet, "/nodes", "", http.StatusOK},
		{"known CN unknown path", "KME_C", http.MethodGet, "/nothing", "", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(tc.cn, tc.method, controller.BasePath+tc.path, tc.body)
			if tc.want >= 400 {
				wantProblem(t, a, tc.want)
				return
			}
			if a.status != tc.want {
				t.Fatalf("status = %d (%s), want %d", a.status, a.body, tc.want)
			}
			if a.ctype != "application/json" {
				t.Errorf("Content-Type = %q", a.ctype)
			}
		})
	}
}

// wantVirt checks node n's newest configuration has the VIRT link of
// stream id with these hops and applications.
func wantVirt(t *testing.T, e *env, n qkd.NodeID, id, prev string, next []string, server string, clients []string) {
	t.Helper()
	l, ok := e.agents[n].virt(id)
	if !ok {
		t.Errorf("node %s: no VIRT link %s in its configuration", n, id)
		return
	}
	got := []any{l.VirtPrevHop, l.VirtNextHop, l.ServerAppID, l.ClientAppIDs, l.Local.NodeID}
	want := []any{prev, next, server, clients, string(n)}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("node %s: VIRT link [prev next server clients local] (-want +got):\n%s", n, diff)
	}
}

func TestRegisterConfiguresRouteBeforeAnswer(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	a := e.do("KME_A", http.MethodPost, controller.BasePath+"/applications", mustJSON(t, registration("SAE_A1", "SAE_C1")))
	if a.status != http.StatusCreated {
		t.Fatalf("POST applications = %d %s, want 201", a.status, a.body)
	}
	// Before looking at anything else: the 201 arrived, so every node of
	// the route must hold its configuration already.
	out, err := controller.DecodeAppRegistered(a.body)
	if err != nil {
		t.Fatalf("answer %s: %v", a.body, err)
	}
	id := out.App.ID
	if _, err := uuid.Parse(id); err != nil || strings.ToLower(id) != id {
		t.Errorf("app_id %q is not a lower-case UUID", id)
	}
	wantVirt(t, e, "A", id, "", []string{"B"}, "SAE_A1", []string{"SAE_C1"})
	wantVirt(t, e, "B", id, "A", []string{"C"}, "SAE_A1", []string{"SAE_C1"})
	wantVirt(t, e, "C", id, "B", nil, "SAE_A1", []string{"SAE_C1"})
	for _, n := range nodeIDs("D", "E") {
		if _, ok := e.agents[n].virt(id); ok {
			t.Errorf("node %s off the route got the VIRT link", n)
		}
	}
	if diff := cmp.Diff(nodeIDs("A", "B", "C"), out.Route); diff != "" {
		t.Errorf("qkms:route (-want +got):\n%s", diff)
	}
	if out.NextHop != "B" {
		t.Errorf("qkms:next_hop = %q, want B", out.NextHop)
	}
	if out.App.ServerAppID != "SAE_A1" || !cmp.Equal(out.App.ClientAppIDs, []string{"SAE_C1"}) ||
		out.App.LocalNodeID != "A" || out.App.RemoteNodeID != "C" {
		t.Errorf("qkd_app = %+v", out.App)
	}
	if got, ok := e.ctrl.Route("SAE_A1", "SAE_C1"); !ok || !cmp.Equal(got, out.Route) {
		t.Errorf("Route(SAE_A1, SAE_C1) = %v, %v", got, ok)
	}

	// The same pair again: the same stream.
	again, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_C1"))
	if err != nil {
		t.Fatal(err)
	}
	if again.App.ID != id || !cmp.Equal(again.Route, out.Route) {
		t.Errorf("second registration = %s over %v, want %s over %v", again.App.ID, again.Route, id, out.Route)
	}
	var streams struct {
		KeyStreams []sdn.Stream `json:"key_streams"`
	}
	if a := e.do(operatorCN, http.MethodGet, controller.BasePath+"/applications", ""); json.Unmarshal(a.body, &streams) != nil || len(streams.KeyStreams) != 1 {
		t.Errorf("GET applications = %s, want one stream", a.body)
	}

	// Another pair from a neighbour: a two-node route.
	ab, err := e.clients["B"].Register(ctx(t), registration("SAE_B1", "SAE_A2", "SAE_A1"))
	if err != nil {
		t.Fatal(err)
	}
	if ab.App.ID == id || !cmp.Equal(ab.Route, nodeIDs("B", "A")) || ab.NextHop != "A" {
		t.Errorf("B → A registration = %+v", ab)
	}
	wantVirt(t, e, "A", ab.App.ID, "B", nil, "SAE_B1", []string{"SAE_A2", "SAE_A1"})
	wantVirt(t, e, "A", id, "", []string{"B"}, "SAE_A1", []string{"SAE_C1"}) // still there
}

func TestRegisterErrors(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	tests := []struct {
		name string
		cn   string
		body string
		want int
	}{
		{"source at another node", "KME_B", mustJSON(t, registration("SAE_A1", "SAE_C1")), http.StatusForbidden},
		{"unknown source SAE", "KME_A", mustJSON(t, registration("SAE_X", "SAE_C1")), http.StatusBadRequest},
		{"unknown destination SAE", "KME_A", mustJSON(t, registration("SAE_A1", "SAE_X")), http.StatusBadRequest},
		{"destinations at several nodes", "KME_A", mustJSON(t, registration("SAE_A1", "SAE_C1", "SAE_D1")), http.StatusNotImplemented},
		{"destination at the source node", "KME_A", mustJSON(t, registration("SAE_A1", "SAE_A2")), http.StatusBadRequest},
		{"no destination", "KME_A", mustJSON(t, registration("SAE_A1")), http.StatusBadRequest},
		{"not JSON", "KME_A", `{"etsi-qkd-sdn-node:qkd_app":`, http.StatusBadRequest},
		{"JSON array", "KME_A", `[]`, http.StatusBadRequest},
		{"trailing data", "KME_A", mustJSON(t, registration("SAE_A1", "SAE_C1")) + `{}`, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, e.do(tc.cn, http.MethodPost, controller.BasePath+"/applications", tc.body), tc.want)
		})
	}
	for _, n := range e.agents {
		if n.pushes() != 0 {
			t.Errorf("node %s got %d configuration pushes after failed registrations", n.node, n.pushes())
		}
	}
}

func TestBadBodies(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	tests := []struct {
		name         string
		cn           string
		method, path string
		body         string
		want         int
	}{
		{"report not JSON", "KME_A", http.MethodPut, "/nodes/A", `{"etsi-qkd-sdn-node:qkd_node"`, http.StatusBadRequest},
		{"report without agent URL", "KME_A", http.MethodPut, "/nodes/A", `{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A"}}`, http.StatusBadRequest},
		{"report of a VIRT link", "KME_A", http.MethodPut, "/nodes/A",
			`{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A","qkd_links":{"qkd_link":[{"qkdl_id":"A-B","qkdl_type":"etsi-qkd-node-types:VIRT"}]}},"qkms:agent":{"url":"https://h:1"}}`, http.StatusBadRequest},
		{"empty report", "KME_A", http.MethodPut, "/nodes/A", ``, http.StatusBadRequest},
		{"notification not JSON", "KME_A", http.MethodPost, "/notifications", `nope`, http.StatusBadRequest},
		{"notification of unknown type", "KME_A", http.MethodPost, "/notifications", `{"type":"x","severity":"info","message":"m"}`, http.StatusBadRequest},
		{"path status without slave", operatorCN, http.MethodGet, "/path-status?master=SAE_A1", "", http.StatusBadRequest},
		{"path status of unknown SAE", operatorCN, http.MethodGet, "/path-status?master=SAE_A1&slave=SAE_X", "", http.StatusNotFound},
		{"patch unknown stream", "KME_C", http.MethodPatch, "/applications/" + uuid.NewString(), "{}", http.StatusNotFound},
		{"delete unknown stream", operatorCN, http.MethodDelete, "/applications/" + uuid.NewString(), "", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, e.do(tc.cn, tc.method, controller.BasePath+tc.path, tc.body), tc.want)
		})
	}
	t.Run("wrong content type", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+controller.BasePath+"/applications",
			strings.NewReader(mustJSON(t, registration("SAE_A1", "SAE_C1"))))
		req.Header.Set("Content-Type", "text/plain")
		resp, err := e.raw("KME_A").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("status %d %q, want 400 problem", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
}

func TestLinkDownReroutes(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	out, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_C1"))
	if err != nil {
		t.Fatal(err)
	}
	id := out.App.ID
	if !cmp.Equal(out.Route, nodeIDs("A", "B", "C")) {
		t.Fatalf("route = %v, want A B C", out.Route)
	}
	pushesD := e.agents["D"].pushes()
	// B alone says A-B is off: the link is down.
	e.report("B", defaultLimits("B"), map[qkd.LinkID]linkOpt{"A-B": {status: sdn.QKDLinkOff}})
	want := nodeIDs("A", "E", "D", "C")
	waitFor(t, "the stream to be rerouted over A E D C", func() bool {
		r, ok := e.ctrl.Route("SAE_A1", "SAE_C1")
		return ok && cmp.Equal(r, want)
	})
	waitFor(t, "the new route's nodes to get the VIRT link", func() bool {
		_, e1 := e.agents["E"].virt(id)
		_, d1 := e.agents["D"].virt(id)
		a, a1 := e.agents["A"].virt(id)
		c, c1 := e.agents["C"].virt(id)
		return e1 && d1 && a1 && c1 && cmp.Equal(a.VirtNextHop, []string{"E"}) && c.VirtPrevHop == "D"
	})
	waitFor(t, "B to lose the VIRT link", func() bool {
		_, ok := e.agents["B"].virt(id)
		return !ok && e.agents["B"].pushes() > 0
	})
	if e.agents["D"].pushes() <= pushesD {
		t.Errorf("D got no new configuration")
	}
	wantVirt(t, e, "E", id, "A", []string{"D"}, "SAE_A1", []string{"SAE_C1"})
	wantVirt(t, e, "D", id, "E", []string{"C"}, "SAE_A1", []string{"SAE_C1"})
	if !hasNote(e.ctrl, controller.NoteLinkDown, func(n controller.Notification) bool { return n.LinkID == "A-B" && n.NodeID == "B" }) {
		t.Errorf("no sdqkdn_link_down for A-B: %+v", e.ctrl.Notifications())
	}
	// The notification is visible over the API, newest first.
	var got struct {
		Notifications []controller.Notification `json:"notifications"`
	}
	a := e.do(operatorCN, http.MethodGet, controller.BasePath+"/notifications", "")
	if err := json.Unmarshal(a.body, &got); err != nil || len(got.Notifications) == 0 {
		t.Fatalf("GET notifications = %s", a.body)
	}
	found := false
	for _, n := range got.Notifications {
		found = found || (n.Type == controller.NoteLinkDown && n.LinkID == "A-B")
	}
	if !found {
		t.Errorf("GET notifications lacks the link down: %s", a.body)
	}
	// The same pair now gets the new route.
	again, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_C1"))
	if err != nil || again.App.ID != id || !cmp.Equal(again.Route, want) || again.NextHop != "E" {
		t.Errorf("registration after reroute = %+v, %v", again, err)
	}
	// Both ends up again: A-B is up; a link only counts as up when no end
	// says it is down.
	e.report("A", defaultLimits("A"), nil)
	if n := len(notes(e.ctrl, controller.NoteLinkDown)); n != 1 {
		t.Errorf("%d link down notifications, want 1", n)
	}
	e.report("B", defaultLimits("B"), nil)
	if !hasNote(e.ctrl, controller.NoteEvent, func(n controller.Notification) bool { return n.LinkID == "A-B" && n.Status == "up" }) {
		t.Errorf("no event for A-B coming back: %+v", e.ctrl.Notifications())
	}
}

// heartbeat reports the nodes every interval until the test ends; silence
// stops one node's reports.
type heartbeat struct {
	silent sync.Map // qkd.NodeID → true
	stop   context.CancelFunc
	done   sync.WaitGroup
}

func (e *env) heartbeat(every time.Duration) *heartbeat {
	c, cancel := context.WithCancel(context.Background())
	h := &heartbeat{stop: cancel}
	for _, n := range e.topo.Nodes {
		h.done.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				if _, quiet := h.silent.Load(n.ID); !quiet {
					_, _ = e.clients[n.ID].Report(c, e.reportOf(n.ID, defaultLimits(n.ID), nil))
				}
				select {
				case <-c.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	e.t.Cleanup(func() { cancel(); h.done.Wait() })
	return h
}

func TestNodeTimeoutReroutes(t *testing.T) {
	e := newEnv(t, controller.Options{NodeTimeout: 300 * time.Millisecond})
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range e.ctrl.Notifications() {
				t.Logf("notification: %s %s %s", n.Type, n.NodeID, n.Message)
			}
		}
	})
	runCtx, stopRun := context.WithCancel(context.Background())
	var running sync.WaitGroup
	running.Go(func() { e.ctrl.Run(runCtx) })
	t.Cleanup(func() { stopRun(); running.Wait() })

	e.reportAll()
	hb := e.heartbeat(25 * time.Millisecond)
	out, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_C1"))
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(out.Route, nodeIDs("A", "B", "C")) {
		t.Fatalf("route = %v, want A B C", out.Route)
	}
	hb.silent.Store(qkd.NodeID("B"), true)
	waitFor(t, "B to be offline", func() bool { return e.nodes()["B"].Status == sdn.NodeOffline })
	if e.ctrl.Online("B") {
		t.Error("Online(B) after the timeout")
	}
	for _, n := range nodeIDs("A", "C", "D", "E") {
		if !e.ctrl.Online(n) {
			t.Errorf("node %s went offline although it reports", n)
		}
	}
	waitFor(t, "the stream to avoid B", func() bool {
		r, ok := e.ctrl.Route("SAE_A1", "SAE_C1")
		return ok && cmp.Equal(r, nodeIDs("A", "E", "D", "C"))
	})
	waitFor(t, "E and D to get the VIRT link", func() bool {
		_, d := e.agents["D"].virt(out.App.ID)
		_, e1 := e.agents["E"].virt(out.App.ID)
		return d && e1
	})
	if !hasNote(e.ctrl, controller.NoteNodeStatus, func(n controller.Notification) bool {
		return n.NodeID == "B" && n.Status == string(sdn.NodeOffline) && n.From == "controller"
	}) {
		t.Errorf("no qkdn_status offline notification for B: %+v", e.ctrl.Notifications())
	}
	// B reports again: it is back online.
	hb.silent.Delete(qkd.NodeID("B"))
	waitFor(t, "B to be online again", func() bool { return e.ctrl.Online("B") })
}

func TestNoRoute(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	// A's both links are off: A is cut off.
	e.report("A", defaultLimits("A"), map[qkd.LinkID]linkOpt{"A-B": {status: sdn.QKDLinkOff}, "E-A": {status: sdn.QKDLinkPending}})
	a := e.do("KME_A", http.MethodPost, controller.BasePath+"/applications", mustJSON(t, registration("SAE_A1", "SAE_C1")))
	wantProblem(t, a, http.StatusServiceUnavailable)
	if !hasNote(e.ctrl, controller.NoteAlarm, func(n controller.Notification) bool {
		return n.NodeID == "A" && n.Severity == "error" && strings.Contains(n.Message, "SAE_A1")
	}) {
		t.Errorf("no alarm for the unroutable registration: %+v", e.ctrl.Notifications())
	}
	if _, ok := e.ctrl.Route("SAE_A1", "SAE_C1"); ok {
		t.Error("a route is recorded for the pair")
	}
	// Path status has no route either.
	wantProblem(t, e.do(operatorCN, http.MethodGet, controller.BasePath+"/path-status?master=SAE_A1&slave=SAE_C1", ""), http.StatusServiceUnavailable)
}

func TestLinkLossClosesUnroutableStream(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	out, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_B1"))
	if err != nil {
		t.Fatal(err)
	}
	// B's every link goes down: the stream has no route left.
	e.report("B", defaultLimits("B"), map[qkd.LinkID]linkOpt{"A-B": {status: sdn.QKDLinkOff}, "B-C": {status: sdn.QKDLinkOff}, "B-D": {status: sdn.QKDLinkOff}})
	waitFor(t, "an alarm for the stream", func() bool {
		return hasNote(e.ctrl, controller.NoteAlarm, func(n controller.Notification) bool { return n.AppID == out.App.ID })
	})
	if _, ok := e.ctrl.Route("SAE_A1", "SAE_B1"); ok {
		t.Error("the pair still has a route")
	}
	waitFor(t, "A to lose the VIRT link", func() bool {
		_, ok := e.agents["A"].virt(out.App.ID)
		return !ok
	})
}

func TestClose(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	out, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_C1"))
	if err != nil {
		t.Fatal(err)
	}
	id := out.App.ID
	// D is not an end of the stream; B is on the route but not an end.
	for _, n := range nodeIDs("D", "B") {
		err := e.clients[n].Close(ctx(t), id)
		if controller.StatusOf(err) != http.StatusForbidden {
			t.Errorf("Close by %s = %v, want 403", n, err)
		}
	}
	// Only a destination may say the stream is established.
	if err := e.clients["C"].Established(ctx(t), strings.ToUpper(id)); err != nil {
		t.Errorf("Established by C = %v", err)
	}
	if err := e.clients["A"].Established(ctx(t), id); controller.StatusOf(err) != http.StatusForbidden {
		t.Errorf("Established by A = %v, want 403", err)
	}
	before := map[qkd.NodeID]int{}
	for n, a := range e.agents {
		before[n] = a.pushes()
	}
	if err := e.clients["A"].Close(ctx(t), id); err != nil {
		t.Fatalf("Close = %v", err)
	}
	waitFor(t, "the route's nodes to lose the VIRT link", func() bool {
		for _, n := range nodeIDs("A", "B", "C") {
			if _, ok := e.agents[n].virt(id); ok || e.agents[n].pushes() == before[n] {
				return false
			}
		}
		return true
	})
	if _, ok := e.ctrl.Route("SAE_A1", "SAE_C1"); ok {
		t.Error("the pair still has a route")
	}
	if !hasNote(e.ctrl, controller.NoteAppDisconnected, func(n controller.Notification) bool { return n.AppID == id }) {
		t.Errorf("no sdqkdn_application_disconnected: %+v", e.ctrl.Notifications())
	}
	a := e.do(operatorCN, http.MethodGet, controller.BasePath+"/applications", "")
	if !strings.Contains(string(a.body), `"key_streams":[]`) {
		t.Errorf("GET applications after close = %s", a.body)
	}
	if err := e.clients["A"].Close(ctx(t), id); controller.StatusOf(err) != http.StatusNotFound {
		t.Errorf("second Close = %v, want 404", err)
	}
	// A new registration gets a new stream; the operator may close it.
	again, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_C1"))
	if err != nil || again.App.ID == id {
		t.Fatalf("registration after close = %+v, %v", again, err)
	}
	if a := e.do(operatorCN, http.MethodDelete, controller.BasePath+"/applications/"+again.App.ID, ""); a.status != http.StatusNoContent {
		t.Errorf("operator DELETE = %d %s, want 204", a.status, a.body)
	}
}

func TestPathStatus(t *testing.T) {
	e := newEnv(t, controller.Options{})
	// Before the route's KMSes reported: unavailable.
	e.report("A", nil, nil)
	e.report("B", nil, nil)
	if _, err := e.operator.PathStatus(ctx(t), "SAE_A1", "SAE_B1"); controller.StatusOf(err) != http.StatusServiceUnavailable {
		t.Errorf("PathStatus without limits = %v, want 503", err)
	}
	lim := map[qkd.NodeID]*controller.Limits{
		"A": {KMEID: "KME_A", KeySize: 256, MaxKeyCount: 1000, MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64, MaxSAEIDCount: 4},
		"B": {KMEID: "KME_B", KeySize: 512, MaxKeyCount: 500, MaxKeyPerRequest: 256, MaxKeySize: 512, MinKeySize: 128, MaxSAEIDCount: 2},
		"C": {KMEID: "KME_C", KeySize: 256, MaxKeyCount: 800, MaxKeyPerRequest: 64, MaxKeySize: 2048, MinKeySize: 32, MaxSAEIDCount: 3},
		"D": defaultLimits("D"), "E": defaultLimits("E"),
	}
	// Key available (bytes) per link end: A-B min 3200 B = 100 keys of
	// 256 bits, B-C min 1600 B = 50 keys.
	kav := map[qkd.NodeID]map[qkd.LinkID]linkOpt{
		"A": {"A-B": {kav: 3200}, "E-A": {kav: 1 << 20}},
		"B": {"A-B": {kav: 6400}, "B-C": {kav: 1600}, "B-D": {kav: 1 << 20}},
		"C": {"B-C": {kav: 1600}, "C-D": {kav: 1 << 20}},
		"D": {"C-D": {kav: 1 << 20}, "D-E": {kav: 1 << 20}, "B-D": {kav: 1 << 20}},
		"E": {"D-E": {kav: 1 << 20}, "E-A": {kav: 1 << 20}},
	}
	for _, n := range e.topo.Nodes {
		e.report(n.ID, lim[n.ID], kav[n.ID])
	}
	want := controller.PathStatus{LinkStatus: quicks.LinkStatus{SourceKMSID: "KME_A", TargetKMSID: "KME_C", KeySize: 256, StoredKeyCount: 50,
		MaxKeyCount: 500, MaxKeyPerRequest: 64, MaxKeySize: 512, MinKeySize: 128, MaxSAEIDCount: 2}, Route: nodeIDs("A", "B", "C")}
	// The route it would take, then the registered stream's route.
	for _, registered := range []bool{false, true} {
		if registered {
			if _, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_C1")); err != nil {
				t.Fatal(err)
			}
		}
		got, err := e.clients["C"].PathStatus(ctx(t), "SAE_A1", "SAE_C1")
		if err != nil {
			t.Fatalf("PathStatus = %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("registered=%v: PathStatus (-want +got):\n%s", registered, diff)
		}
	}
	// Plenty of key: capped at max_key_count.
	got, err := e.operator.PathStatus(ctx(t), "SAE_E1", "SAE_A1")
	if err != nil || got.StoredKeyCount != 1000 || !cmp.Equal(got.Route, nodeIDs("E", "A")) {
		t.Errorf("PathStatus(E1, A1) = %+v, %v; want 1000 keys over E A", got, err)
	}
}

func TestNotifications(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	code := 1001
	if err := e.clients["C"].Notify(ctx(t), controller.Notification{Type: controller.NoteEvent, NodeID: "A", From: "A", Severity: "warning",
		Code: &code, Message: "no key stream"}); err != nil {
		t.Fatal(err)
	}
	if err := e.clients["D"].Notify(ctx(t), controller.Notification{Type: controller.NoteAlarm, Severity: "critical", Message: "last"}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Notifications []controller.Notification `json:"notifications"`
	}
	a := e.do(operatorCN, http.MethodGet, controller.BasePath+"/notifications?last=2", "")
	if err := json.Unmarshal(a.body, &got); err != nil || len(got.Notifications) != 2 {
		t.Fatalf("GET notifications?last=2 = %s", a.body)
	}
	last, first := got.Notifications[0], got.Notifications[1]
	if last.Message != "last" || last.NodeID != "D" {
		t.Errorf("newest = %+v, want D's alarm", last)
	}
	// The caller's node, not what the message claims.
	if first.NodeID != "C" || first.From != "C" || first.Code == nil || *first.Code != 1001 || first.Time.IsZero() {
		t.Errorf("C's notification = %+v", first)
	}
}

func TestRegisterWaitsForFailingAgent(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	e.agents["B"].setStatus(http.StatusInternalServerError)
	short, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	_, err := e.ctrl.Register(short, "A", registration("SAE_A1", "SAE_C1"))
	if err == nil || !strings.Contains(err.Error(), "agent of B") {
		t.Fatalf("Register with B refusing = %v, want an error naming B's agent", err)
	}
	// B accepts again: the retried push gets through and the pair works.
	e.agents["B"].setStatus(0)
	out, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_C1"))
	if err != nil {
		t.Fatal(err)
	}
	wantVirt(t, e, "B", out.App.ID, "A", []string{"C"}, "SAE_A1", []string{"SAE_C1"})
}

func TestRegisterWithoutAgent(t *testing.T) {
	e := newEnv(t, controller.Options{})
	for _, n := range nodeIDs("A", "C") {
		e.report(n, defaultLimits(n), nil)
	}
	// B never reported: the route A B C cannot be configured... unless the
	// routing avoids nodes without an agent.
	_, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_C1"))
	if st := controller.StatusOf(err); st != http.StatusServiceUnavailable {
		t.Errorf("Register with B, D, E unregistered = %v, want 503", err)
	}
}

func TestPathStatusEmptyLinkEnd(t *testing.T) {
	e := newEnv(t, controller.Options{})
	for _, n := range e.topo.Nodes {
		opts := map[qkd.LinkID]linkOpt{}
		for _, l := range e.topo.LinksAt(n.ID) {
			opts[l.ID] = linkOpt{kav: 1 << 20}
		}
		if n.ID == "A" {
			opts["A-B"] = linkOpt{kav: 0}
		}
		if n.ID == "B" {
			opts["A-B"] = linkOpt{kav: 6400}
		}
		e.report(n.ID, defaultLimits(n.ID), opts)
	}
	for range 20 { // map order varies between calls
		got, err := e.operator.PathStatus(ctx(t), "SAE_A1", "SAE_B1")
		if err != nil {
			t.Fatal(err)
		}
		if got.StoredKeyCount != 0 {
			t.Fatalf("stored_key_count = %d with A's end of A-B empty, want 0", got.StoredKeyCount)
		}
	}
}

// Admission of ETSI 004 QoS: min_bandwidth is the rate promised on the
// route; a route, or the pair's existing stream, that cannot carry it is
// a counter-proposal of the rate it can.
func TestRegisterAdmitsMinBandwidth(t *testing.T) {
	e := newEnv(t, controller.Options{})
	e.reportAll()
	reg := func(master, slave string, minBps, maxBps uint32) controller.AppRegistered {
		t.Helper()
		r := registration(master, slave)
		r.App.QoS = &sdn.AppQoS{MinBandwidth: minBps, MaxBandwidth: maxBps}
		out, err := e.clients["A"].Register(ctx(t), r)
		if err != nil {
			t.Fatalf("Register %s → %s (min %d) = %v", master, slave, minBps, err)
		}
		return out
	}
	// A→C: widest A-B-C (bottleneck B-C 25000 bit/s).
	first := reg("SAE_A1", "SAE_C1", 10000, 0)
	if first.CounterProposal || first.RateBPS != 10000 {
		t.Fatalf("min 10000 on a free route = rate %v, counter %v; want 10000 admitted", first.RateBPS, first.CounterProposal)
	}
	// 10000 is promised: the best A→C now carries 15000.
	second := reg("SAE_A2", "SAE_C1", 20000, 30000)
	if !second.CounterProposal || second.RateBPS < 14999 || second.RateBPS > 15001 {
		t.Fatalf("min 20000 with 15000 left = rate %v, counter %v; want a counter-proposal of 15000", second.RateBPS, second.CounterProposal)
	}
	// The pair's existing stream is promised 10000.
	if again := reg("SAE_A1", "SAE_C1", 12000, 0); !again.CounterProposal || again.RateBPS != 10000 || again.App.ID != first.App.ID {
		t.Errorf("min 12000 on the pair's 10000 stream = %+v; want its stream counter-proposed at 10000", again)
	}
	if again := reg("SAE_A1", "SAE_C1", 8000, 0); again.CounterProposal || again.App.ID != first.App.ID {
		t.Errorf("min 8000 on the pair's 10000 stream = %+v; want it admitted", again)
	}
	// Releasing the counter-proposed stream gives its rate back.
	if err := e.clients["A"].Close(ctx(t), second.App.ID); err != nil {
		t.Fatal(err)
	}
	if third := reg("SAE_A2", "SAE_C1", 15000, 0); third.CounterProposal || third.RateBPS != 15000 {
		t.Errorf("min 15000 after the release = rate %v, counter %v; want admitted", third.RateBPS, third.CounterProposal)
	}
	// Without QoS (ETSI 014): best effort, never a counter-proposal.
	if be, err := e.clients["A"].Register(ctx(t), registration("SAE_A1", "SAE_E1")); err != nil || be.CounterProposal || be.RateBPS != 0 {
		t.Errorf("Register without QoS = %+v, %v; want best effort", be, err)
	}
}
