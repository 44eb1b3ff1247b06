package agent_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/qkms/qkms/internal/agent"
	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/sdn"
)

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var equateEmpty = cmpopts.EquateEmpty()

func TestNewRequiresClients(t *testing.T) {
	if _, err := agent.New(agent.Options{Node: "B"}); err == nil {
		t.Error("New without KMS and controller clients = nil error")
	}
}

func linkRegistration(qos quicks.QoSData, opts quicks.RegistrationOptions, dest ...string) quicks.LinkRegistration {
	return quicks.LinkRegistration{Source: "SAE_B1", Destination: dest, QoSRequest: qos,
		Performance: []quicks.LinkKPI{{LinkID: uuid.NewString()}}, Options: opts}
}

func registered(id string, route ...qkd.NodeID) controller.AppRegistered {
	return controller.AppRegistered{App: sdn.QKDApp{ID: id, Type: sdn.QKDAppClient, ServerAppID: "SAE_B1", ClientAppIDs: []string{"SAE_C1"}},
		Route: route, NextHop: route[1]}
}

func TestRegisterForwardsToController(t *testing.T) {
	e := newEnv(t)
	id := uuid.NewString()
	e.ctl.register = func(controller.AppRegistration) (int, any) {
		return http.StatusCreated, registered(id, "B", "D", "E")
	}
	qos004 := quicks.QoSData{Type: quicks.QoSETSI004, ETSI004: &quicks.ETSI004QoS{KeyChunkSize: 32, MaxBPS: 2000, MinBPS: 500, TTL: 10}}
	qos014 := quicks.QoSData{Type: quicks.QoSETSI014, ETSI014: &quicks.ETSI014QoS{Number: 1, Size: 256}}
	tests := []struct {
		name string
		req  quicks.LinkRegistration
		want controller.AppRegistration
	}{
		{"ETSI 014", linkRegistration(qos014, nil, "SAE_C1"), controller.AppRegistration{App: sdn.QKDApp{Type: sdn.QKDAppClient,
			ServerAppID: "SAE_B1", ClientAppIDs: []string{"SAE_C1"}, LocalNodeID: "B"}}},
		{"ETSI 004 rate, multipath, group", linkRegistration(qos004, quicks.RegistrationOptions{quicks.OptionMultipath: true}, "SAE_C1", "SAE_C2"),
			controller.AppRegistration{App: sdn.QKDApp{Type: sdn.QKDAppClient, ServerAppID: "SAE_B1", ClientAppIDs: []string{"SAE_C1", "SAE_C2"},
				LocalNodeID: "B", QoS: &sdn.AppQoS{MaxBandwidth: 2000, MinBandwidth: 500}}, Multipath: true}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.quicks.Register(ctx(t), tc.req)
			if err != nil {
				t.Fatalf("Register = %v", err)
			}
			want := quicks.RegistrationResult{KeyStreamID: id, NextNodeInfo: []string{neighbours["D"]}}
			if diff := cmp.Diff(want, res, equateEmpty); diff != "" {
				t.Errorf("registration result (-want +got):\n%s", diff)
			}
			e.ctl.mu.Lock()
			got := e.ctl.registrations[i]
			e.ctl.mu.Unlock()
			if diff := cmp.Diff(tc.want, got, equateEmpty); diff != "" {
				t.Errorf("registration sent to the controller (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRegisterErrors(t *testing.T) {
	tests := []struct {
		name     string
		reply    func(controller.AppRegistration) (int, any)
		down     bool // the controller is unreachable
		want     int
		sentinel error
	}{
		{"no route", func(controller.AppRegistration) (int, any) {
			return problem(http.StatusServiceUnavailable, "no route from B to C")
		},
			false, http.StatusServiceUnavailable, quicks.ErrUnavailable},
		{"forbidden", func(controller.AppRegistration) (int, any) { return problem(http.StatusForbidden, "not at B") },
			false, http.StatusForbidden, quicks.ErrForbidden},
		{"unknown SAE", func(controller.AppRegistration) (int, any) {
			return problem(http.StatusBadRequest, "unknown application")
		},
			false, http.StatusBadRequest, quicks.ErrBadRequest},
		{"several destination nodes", func(controller.AppRegistration) (int, any) {
			return problem(http.StatusNotImplemented, "several nodes")
		},
			false, http.StatusNotImplemented, quicks.ErrNotSupported},
		{"controller internal error", func(controller.AppRegistration) (int, any) { return problem(http.StatusInternalServerError, "boom") },
			false, http.StatusServiceUnavailable, quicks.ErrUnavailable},
		{"controller unreachable", nil, true, http.StatusServiceUnavailable, quicks.ErrUnavailable},
		{"route over a non-neighbour", func(controller.AppRegistration) (int, any) {
			return http.StatusCreated, registered(uuid.NewString(), "B", "E")
		}, false, http.StatusInternalServerError, nil},
		{"answer without route", func(controller.AppRegistration) (int, any) {
			return http.StatusCreated, map[string]any{"etsi-qkd-sdn-node:qkd_app": map[string]any{"app_id": uuid.NewString()}}
		}, false, http.StatusServiceUnavailable, quicks.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.ctl.register = tc.reply
			if tc.down {
				e.ctlSrv.Close()
			}
			_, err := e.quicks.Register(ctx(t), linkRegistration(quicks.QoSData{Type: quicks.QoSETSI014}, nil, "SAE_C1"))
			var p *quicks.Problem
			if !errors.As(err, &p) || p.Status != tc.want {
				t.Fatalf("Register = %v, want a %d problem", err, tc.want)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("Register = %v, want it to match %v", err, tc.sentinel)
			}
		})
	}
}

func TestForwardedCalls(t *testing.T) {
	e := newEnv(t)
	e.ctl.pathStatus = controller.PathStatus{LinkStatus: quicks.LinkStatus{SourceKMSID: "KME_B", TargetKMSID: "KME_C", KeySize: 256, StoredKeyCount: 7, MaxKeyCount: 100,
		MaxKeyPerRequest: 10, MaxKeySize: 512, MinKeySize: 64, MaxSAEIDCount: 1}, Route: []qkd.NodeID{"B", "C"}}
	st, err := e.quicks.LinkStatus(ctx(t), "SAE_B1", "SAE_C1")
	if err != nil {
		t.Fatal(err)
	}
	want := quicks.LinkStatus{SourceKMSID: "KME_B", TargetKMSID: "KME_C", KeySize: 256, StoredKeyCount: 7, MaxKeyCount: 100,
		MaxKeyPerRequest: 10, MaxKeySize: 512, MinKeySize: 64, MaxSAEIDCount: 1}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("LinkStatus (-want +got):\n%s", diff)
	}
	if _, err := e.quicks.LinkStatus(ctx(t), "SAE_B1", "SAE_X"); !errors.Is(err, quicks.ErrNotFound) {
		t.Errorf("LinkStatus of an unknown pair = %v, want 404", err)
	}

	id := uuid.NewString()
	if err := e.quicks.PatchRegistration(ctx(t), quicks.RegistrationUpdate{KeyStreamID: id, Destination: []string{"SAE_C1"}}); err != nil {
		t.Errorf("PatchRegistration = %v", err)
	}
	if err := e.quicks.DeleteStream(ctx(t), id); err != nil {
		t.Errorf("DeleteStream = %v", err)
	}
	if err := e.quicks.DeleteStream(ctx(t), unknownStream); !errors.Is(err, quicks.ErrNotFound) {
		t.Errorf("DeleteStream of an unknown stream = %v, want 404", err)
	}
	code := 1001
	if err := e.quicks.NotifyEvent(ctx(t), quicks.Event{Level: quicks.LevelWarning, Code: &code, Reason: "no key stream"}); err != nil {
		t.Errorf("NotifyEvent = %v", err)
	}
	if err := e.quicks.NotifyStatus(ctx(t), quicks.StatusNotification{State: "stopped", Reason: "maintenance"}); err != nil {
		t.Errorf("NotifyStatus = %v", err)
	}
	e.ctl.mu.Lock()
	defer e.ctl.mu.Unlock()
	if !cmp.Equal(e.ctl.established, []string{id}) || !cmp.Equal(e.ctl.closed, []string{id}) {
		t.Errorf("controller saw established %v, closed %v; want [%s] each", e.ctl.established, e.ctl.closed, id)
	}
	if len(e.ctl.notes) != 2 {
		t.Fatalf("controller got %d notifications, want 2", len(e.ctl.notes))
	}
	ev, stn := e.ctl.notes[0], e.ctl.notes[1]
	if ev.Type != controller.NoteEvent || ev.Severity != "warning" || ev.Code == nil || *ev.Code != 1001 || !strings.Contains(ev.Message, "no key stream") {
		t.Errorf("event notification = %+v", ev)
	}
	if stn.Type != controller.NoteNodeStatus || stn.Severity != "warning" || stn.Status != "stopped" || !strings.Contains(stn.Message, "maintenance") {
		t.Errorf("status notification = %+v", stn)
	}
}

func TestQUICKSAPIAuthorization(t *testing.T) {
	e := newEnv(t)
	for _, cn := range []string{controllerCN, "KME_A", "stranger"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+quicks.BasePath+"/version", nil)
		resp, err := e.raw(cn).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET version as %s = %d, want 403", cn, resp.StatusCode)
		}
	}
	if v, err := e.quicks.Version(ctx(t)); err != nil || v.Version != quicks.Version {
		t.Errorf("Version as the KMS = %+v, %v", v, err)
	}
}

// virt is a VIRT link of stream id at B.
func virt(id, prev string, next ...string) sdn.QKDLink {
	tru := true
	return sdn.QKDLink{ID: id, Type: sdn.QKDLinkVirt, Enable: &tru, Status: sdn.QKDLinkActive, Local: sdn.QKDLinkEnd{NodeID: string(node)},
		Remote: sdn.QKDLinkEnd{NodeID: "C"}, VirtPrevHop: prev, VirtNextHop: next, ServerAppID: "SAE_A1", ClientAppIDs: []string{"SAE_C1"}}
}

func config(n qkd.NodeID, links ...sdn.QKDLink) string {
	doc := sdn.QKDNodeDocument{Node: sdn.QKDNode{ID: string(n), Status: sdn.QKDNodeOperating}}
	// A PHYS link is part of every configuration and ignored by the agent.
	links = append([]sdn.QKDLink{{ID: "A-B", Type: sdn.QKDLinkPhys, Local: sdn.QKDLinkEnd{NodeID: string(n)}, Remote: sdn.QKDLinkEnd{NodeID: "A"}}}, links...)
	doc.Node.Links = &sdn.QKDLinks{Links: links}
	b, _ := json.Marshal(doc)
	return string(b)
}

func TestPushedConfigurations(t *testing.T) {
	e := newEnv(t)
	id1, id2 := uuid.NewString(), uuid.NewString()
	a, c, d := neighbours["A"], neighbours["C"], neighbours["D"]
	entry := func(next ...string) quicks.RelayConfig {
		return quicks.RelayConfig{Source: "SAE_A1", Destination: []string{"SAE_C1"}, NextNodeInfo: next}
	}
	disabled := virt(id2, "A", "C")
	disabled.Enable = new(bool)
	steps := []struct {
		name   string
		cn     string
		body   string
		status int
		calls  []relayCall
	}{
		{"new VIRT link", controllerCN, config(node, virt(id1, "A", "C")), http.StatusNoContent,
			[]relayCall{{Op: "create", ID: id1, Entry: entry(a, c)}}},
		{"same again", controllerCN, config(node, virt(id1, "A", "C")), http.StatusNoContent, nil},
		{"changed next hop", controllerCN, config(node, virt(id1, "A", "D")), http.StatusNoContent,
			[]relayCall{{Op: "create", ID: id1, Entry: entry(a, d), Err: "conflict"}, {Op: "replace", ID: id1, Entry: entry(a, d)}}},
		{"second stream from the source", operatorCN, config(node, virt(id1, "A", "D"), virt(strings.ToUpper(id2), "", "C")), http.StatusNoContent,
			[]relayCall{{Op: "create", ID: id2, Entry: entry(c)}}},
		{"a disabled link is removed", controllerCN, config(node, virt(id1, "A", "D"), disabled), http.StatusNoContent,
			[]relayCall{{Op: "delete", ID: id2}}},
		{"last node", controllerCN, config(node, virt(id1, "D")), http.StatusNoContent,
			[]relayCall{{Op: "create", ID: id1, Entry: entry(d), Err: "conflict"}, {Op: "replace", ID: id1, Entry: entry(d)}}},
		{"non-neighbour hop", controllerCN, config(node, virt(id1, "A", "E")), http.StatusBadGateway, nil},
		{"from the KMS", kmsCN, config(node), http.StatusForbidden, nil},
		{"from another node", "KME_A", config(node), http.StatusForbidden, nil},
		{"from a stranger", "stranger", config(node), http.StatusForbidden, nil},
		{"for another node", controllerCN, config("A"), http.StatusBadRequest, nil},
		{"not JSON", controllerCN, `{"etsi-qkd-sdn-node:qkd_node":`, http.StatusBadRequest, nil},
		{"VIRT not named by a UUID", controllerCN, config(node, virt("stream-1", "A", "C")), http.StatusBadRequest, nil},
		{"removed", controllerCN, config(node), http.StatusNoContent, []relayCall{{Op: "delete", ID: id1}}},
	}
	for _, s := range steps {
		a := e.push(s.cn, s.body)
		if a.status != s.status {
			t.Fatalf("%s: PUT qkd_node = %d %s, want %d", s.name, a.status, a.body, s.status)
		}
		if s.status >= 400 && a.ctype != quicks.MediaTypeProblem {
			t.Errorf("%s: Content-Type = %q", s.name, a.ctype)
		}
		if diff := cmp.Diff(s.calls, e.kms.takeCalls(), equateEmpty); diff != "" {
			t.Errorf("%s: KMS relay calls (-want +got):\n%s", s.name, diff)
		}
	}
	if n := e.kms.relayCount(); n != 0 {
		t.Errorf("%d relay entries left", n)
	}
}

func TestPushedConfigurationRefused(t *testing.T) {
	e := newEnv(t)
	id := uuid.NewString()
	// The KMS has an entry the agent does not know of: create conflicts,
	// replace updates it.
	e.kms.relays[id] = quicks.RelayConfig{Source: "old", Destination: []string{"x"}, NextNodeInfo: []string{}}
	if a := e.push(controllerCN, config(node, virt(id, "A", "C"))); a.status != http.StatusNoContent {
		t.Fatalf("PUT = %d %s", a.status, a.body)
	}
	// A stream the KMS no longer has is deleted without error.
	e.kms.mu.Lock()
	delete(e.kms.relays, id)
	e.kms.mu.Unlock()
	e.kms.takeCalls()
	if a := e.push(controllerCN, config(node)); a.status != http.StatusNoContent {
		t.Fatalf("PUT removing a vanished entry = %d %s", a.status, a.body)
	}
	if diff := cmp.Diff([]relayCall{{Op: "delete", ID: id, Err: "not found"}}, e.kms.takeCalls(), equateEmpty); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestReport(t *testing.T) {
	e := newEnv(t)
	linkAB, linkBC, linkBD := uuid.NewString(), uuid.NewString(), uuid.NewString()
	e.kms.caps.ETSI014Info = &quicks.ETSI014Info{KMSID: "KME_B", KeySize: 256, StoredKeyCount: 10, MaxKeyCount: 1000,
		MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64, MaxSAEIDCount: 2}
	e.kms.devices = []quicks.QKDDevice{
		{DeviceID: uuid.NewString(), LinkID: linkAB, Label: "A-B", State: quicks.StateOnline, Interface: quicks.InterfaceETSI004, Protocol: "BB84", PeerKMS: "KME_A"},
		{DeviceID: uuid.NewString(), LinkID: linkBC, Label: "B-C", State: quicks.StateOffline, Interface: quicks.InterfaceETSI004, Protocol: "BB84", PeerKMS: "KME_C"},
		{DeviceID: uuid.NewString(), LinkID: linkBD, Label: "B-D", State: quicks.StateStopped, Interface: quicks.InterfaceETSI014, Protocol: "BB84", PeerKMS: "KME_D"},
	}
	now := time.Now().UTC()
	e.kms.perf[linkAB] = quicks.PerformanceEntry{Timestamp: now, DeltaT: 1000, SKR: 1000, IKR: 100, EXKR: 50, KAV: 4000}
	e.kms.perf[linkBC] = quicks.PerformanceEntry{Timestamp: now, DeltaT: 1000, SKR: 10, IKR: 20, EXKR: 0, KAV: -5}
	// B-D: no performance (404 from the KMS).
	id := uuid.NewString()
	e.ctl.config = sdn.QKDNodeDocument{Node: sdn.QKDNode{ID: "B", Links: &sdn.QKDLinks{Links: []sdn.QKDLink{virt(id, "A", "C")}}}}
	e.run()
	got := e.waitReport()
	want := controller.NodeReport{
		Node: sdn.QKDNode{ID: "B", Status: sdn.QKDNodeOperating, Capabilities: &sdn.QKDNodeCapabilities{LinkStatsSupport: true, KeyRelayModeEnable: true},
			Links: &sdn.QKDLinks{Links: []sdn.QKDLink{
				{ID: "A-B", Status: sdn.QKDLinkActive, Type: sdn.QKDLinkPhys, Local: sdn.QKDLinkEnd{NodeID: "B"}, Remote: sdn.QKDLinkEnd{NodeID: "A"},
					Performance: &sdn.QKDLinkPerformance{SKR: 8000, ESKR: 7200, ExpectedConsumption: 400, KAV: 4000}},
				{ID: "B-C", Status: sdn.QKDLinkOff, Type: sdn.QKDLinkPhys, Local: sdn.QKDLinkEnd{NodeID: "B"}, Remote: sdn.QKDLinkEnd{NodeID: "C"},
					Performance: &sdn.QKDLinkPerformance{SKR: 80, ESKR: 0, ExpectedConsumption: 0, KAV: 0}},
				{ID: "B-D", Status: sdn.QKDLinkOff, Type: sdn.QKDLinkPhys, Local: sdn.QKDLinkEnd{NodeID: "B"}, Remote: sdn.QKDLinkEnd{NodeID: "D"}},
			}}},
		Agent: controller.AgentInfo{URL: e.srv.URL, ETSI014: &controller.Limits{KMEID: "KME_B", KeySize: 256, MaxKeyCount: 1000,
			MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64, MaxSAEIDCount: 2}},
	}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	// The configuration in the answer is applied.
	waitFor(t, "the relay entry of the report's answer", func() bool { return e.kms.relayCount() == 1 })
	wantCalls := []relayCall{{Op: "create", ID: id, Entry: quicks.RelayConfig{Source: "SAE_A1", Destination: []string{"SAE_C1"},
		NextNodeInfo: []string{neighbours["A"], neighbours["C"]}}}}
	if diff := cmp.Diff(wantCalls, e.kms.takeCalls(), equateEmpty); diff != "" {
		t.Errorf("relay calls after the report (-want +got):\n%s", diff)
	}

	// The KMS stops and tells its agent: the agent reports at once (the
	// interval is an hour).
	e.kms.mu.Lock()
	e.kms.state = quicks.StateStopped
	e.kms.mu.Unlock()
	if err := e.quicks.NotifyStatus(ctx(t), quicks.StatusNotification{State: "stopped", Reason: "operator"}); err != nil {
		t.Fatal(err)
	}
	if got := e.waitReport(); got.Node.Status != sdn.QKDNodeOut {
		t.Errorf("qkdn_status after the KMS stopped = %q, want %q", got.Node.Status, sdn.QKDNodeOut)
	}
	e.kms.mu.Lock()
	e.kms.state = quicks.StateOffline
	e.kms.mu.Unlock()
	if _, err := e.quicks.NotifyRegistration(ctx(t), quicks.KMSRegistration{KMSID: uuid.NewString(),
		Model: quicks.KMSModel{DeviceVendor: "qkms", DeviceModel: "qkms", DeviceVersion: "1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	if got := e.waitReport(); got.Node.Status != sdn.QKDNodeDown {
		t.Errorf("qkdn_status of an offline KMS = %q, want %q", got.Node.Status, sdn.QKDNodeDown)
	}
}

func TestReportLargeRates(t *testing.T) {
	e := newEnv(t)
	link := uuid.NewString()
	e.kms.devices = []quicks.QKDDevice{{DeviceID: uuid.NewString(), LinkID: link, Label: "A-B", State: quicks.StateOnline,
		Interface: quicks.InterfaceETSI004, Protocol: "BB84", PeerKMS: "KME_A"}}
	e.kms.perf[link] = quicks.PerformanceEntry{Timestamp: time.Now().UTC(), DeltaT: 1000, SKR: 1 << 30, KAV: 1}
	e.run()
	got := e.waitReport()
	if p := got.Node.Links.Links[0].Performance; p == nil || p.SKR != 1<<32-1 {
		t.Errorf("skr of 2^30 B/s = %+v, want 4294967295 bit/s (saturated)", p)
	}
}

func TestPushedConfigurationNonCanonicalUUID(t *testing.T) {
	e := newEnv(t)
	a := e.push(controllerCN, config(node, virt("urn:uuid:"+uuid.NewString(), "A", "C")))
	if a.status != http.StatusBadRequest {
		t.Errorf("PUT with a urn:uuid VIRT link = %d %s, want 400", a.status, a.body)
	}
}

// TestStaleConfigurationIgnored: configurations carry the controller's
// rendering order (qkms:config_seq); one older than a configuration the
// agent applied (the answer to a report that a push overtook) is ignored
// instead of undoing the newer one.
func TestStaleConfigurationIgnored(t *testing.T) {
	e := newEnv(t)
	id := uuid.NewString()
	withSeq := func(body string, seq uint64) string {
		return strings.Replace(body, `{"etsi-qkd-sdn-node:qkd_node"`, fmt.Sprintf(`{"qkms:config_seq":%d,"etsi-qkd-sdn-node:qkd_node"`, seq), 1)
	}
	for _, s := range []struct {
		name  string
		body  string
		calls int
	}{
		{"newer: the stream", withSeq(config(node, virt(id, "A", "C")), 20), 1},
		{"older, without it: ignored", withSeq(config(node), 10), 0},
		{"newer still, without it: removed", withSeq(config(node), 30), 1},
	} {
		if a := e.push(controllerCN, s.body); a.status != http.StatusNoContent {
			t.Fatalf("%s: PUT = %d %s", s.name, a.status, a.body)
		}
		if calls := e.kms.takeCalls(); len(calls) != s.calls {
			t.Errorf("%s: %d KMS relay calls %+v, want %d", s.name, len(calls), calls, s.calls)
		}
	}
}
