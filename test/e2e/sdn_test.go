package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/qkd"
)

// operatorClient is an HTTPS client with the operator's certificate.
func operatorClient(t *testing.T, info map[string]string) *http.Client {
	return httpsClient(t, info["ca"], info["cert"], info["key"])
}

// notified reports whether the controller recorded a notification whose
// message contains all of parts.
func notified(n []controller.Notification, parts ...string) bool {
	for _, x := range n {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(x.Message, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestControllerAndAgentsOverQUICKS: on ring5 the route of a relayed pair
// is set up by the controller through the agents; the operator sees nodes,
// key streams and notifications on the controller's API; QUICKS
// control/status offline at an intermediate node makes the controller
// route around it, and killing an intermediate node too.
func TestControllerAndAgentsOverQUICKS(t *testing.T) {
	n := startNet(t, "ring5.json", nil, nil)
	info := n.Info
	op := operatorClient(t, map[string]string{"ca": info.CA, "cert": info.Operator.Cert, "key": info.Operator.Key})
	ctl := info.Controller.URL + controller.BasePath
	if !strings.HasPrefix(info.Controller.URL, "https://127.0.0.1:") {
		t.Fatalf("network.json controller.url = %q", info.Controller.URL)
	}

	// Every node registered through its agent and is online.
	r := do(t, op, http.MethodGet, ctl+"/nodes", "")
	var nodes struct {
		Nodes []controller.NodeView `json:"nodes"`
	}
	if r.code != 200 || json.Unmarshal(r.body, &nodes) != nil || len(nodes.Nodes) != 5 {
		t.Fatalf("GET /nodes: %d %s", r.code, r.body)
	}
	for _, v := range nodes.Nodes {
		if v.Status != "online" || !strings.HasPrefix(v.AgentURL, "https://") {
			t.Errorf("node %s: status %s, agent %q", v.ID, v.Status, v.AgentURL)
		}
	}
	// An SAE certificate is not accepted on the controller.
	m := saeOf(info, "SAE_A1")
	if r := do(t, httpsClient(t, info.CA, m.Cert, m.Key), http.MethodGet, ctl+"/nodes", ""); r.code != 403 {
		t.Errorf("GET /nodes with an SAE certificate: %d, want 403", r.code)
	}

	master, slave := qkd.SAEID("SAE_A1"), qkd.SAEID("SAE_C1")
	pairKeys(t, info, master, slave, 2)
	route, ok := n.Route(master, slave)
	if !ok || len(route) < 3 {
		t.Fatalf("route %s→%s = %v, want a relayed route", master, slave, route)
	}
	r = do(t, op, http.MethodGet, ctl+"/applications", "")
	if r.code != 200 || !strings.Contains(string(r.body), `"source_sae":"SAE_A1"`) {
		t.Fatalf("GET /applications: %d %s", r.code, r.body)
	}
	if !notified(n.Controller().Notifications(), "set up for SAE_A1 → SAE_C1") {
		t.Errorf("no notification of the key stream set-up")
	}
	// The destination KMS told its agent (QUICKS PATCH link/registration).
	waitFor(t, 10*time.Second, "the stream established at C", func() bool {
		return notified(n.Controller().Notifications(), "established at its destination C")
	})
	// The path-wide status (QUICKS link/status through the agent).
	r = do(t, op, http.MethodGet, ctl+"/path-status?master=SAE_A1&slave=SAE_C1", "")
	if r.code != 200 || !strings.Contains(string(r.body), `"source_kms_id":"KME_A"`) || !strings.Contains(string(r.body), `"target_kms_id":"KME_C"`) {
		t.Errorf("GET /path-status: %d %s", r.code, r.body)
	}

	// Take the intermediate node out of service through its QUICKS API.
	mid := route[1]
	kmsURL := nodeOf(info, mid).KMSSDNURL
	if r := do(t, op, http.MethodPut, kmsURL+"/control/status", `{"state":"offline"}`); r.code != 200 {
		t.Fatalf("control/status offline: %d %s", r.code, r.body)
	}
	waitFor(t, 30*time.Second, "a route around the offline node "+string(mid), func() bool {
		r, ok := n.Route(master, slave)
		return ok && !slices.Contains(r, mid)
	})
	pairKeys(t, info, master, slave, 2)
	if r := do(t, op, http.MethodPut, kmsURL+"/control/status", `{"state":"online"}`); r.code != 200 {
		t.Fatalf("control/status online: %d %s", r.code, r.body)
	}
	waitFor(t, 30*time.Second, string(mid)+" online at the controller", func() bool { return n.Controller().Online(mid) })

	// Kill the intermediate node of the current route: the controller loses
	// its agent's reports and routes around it.
	route, _ = n.Route(master, slave)
	victim := route[1]
	n.StopNode(victim)
	waitFor(t, 60*time.Second, "a route around the killed node "+string(victim), func() bool {
		r, ok := n.Route(master, slave)
		return ok && !slices.Contains(r, victim)
	})
	pairKeys(t, info, master, slave, 2)
	if !notified(n.Controller().Notifications(), "node "+string(victim)+" lost") {
		t.Errorf("the controller did not report node %s lost", victim)
	}
	r = do(t, op, http.MethodGet, ctl+"/notifications", "")
	if r.code != 200 || !strings.Contains(string(r.body), "rerouted") {
		t.Errorf("GET /notifications: %d %s", r.code, string(r.body[:min(len(r.body), 300)]))
	}
}
