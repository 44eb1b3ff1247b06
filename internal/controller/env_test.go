package controller_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sdn"
	"github.com/qkms/qkms/internal/topology"
)

const (
	controllerCN = "controller"
	operatorCN   = "operator"
)

// loadTopology reads ring5 from the shared topologies, or the copy in
// testdata when the shared directory is not there.
func loadTopology(t testing.TB, name string) *topology.Topology {
	t.Helper()
	path := filepath.Join("..", "..", "..", "shared", "topologies", name)
	if _, err := os.Stat(path); err != nil {
		path = filepath.Join("testdata", name)
	}
	topo, err := topology.Load(path)
	if err != nil {
		t.Fatalf("topology.Load(%s) = %v", path, err)
	}
	return topo
}

// testPKI is a CA in a temporary directory.
type testPKI struct {
	ca *pki.CA
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.InitCA(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatalf("InitCA = %v", err)
	}
	return &testPKI{ca: ca}
}

// serverTLS returns a TLS 1.3 server configuration for a certificate of
// name that requires verified client certificates.
func (p *testPKI) serverTLS(t testing.TB, name string) *tls.Config {
	t.Helper()
	pair, err := p.ca.IssueServer(name, nil)
	if err != nil {
		t.Fatalf("IssueServer(%s) = %v", name, err)
	}
	cfg, err := pki.ServerTLSConfig(p.ca.CertFile(), pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatalf("ServerTLSConfig = %v", err)
	}
	cfg.MinVersion = tls.VersionTLS13
	return cfg
}

// clientTLS returns a client configuration with a certificate of cn
// (a server-and-client certificate for KMEs and the controller, a client
// certificate otherwise).
func (p *testPKI) clientTLS(t testing.TB, cn string) *tls.Config {
	t.Helper()
	var pair pki.Pair
	var err error
	if cn == controllerCN || strings.HasPrefix(cn, "KME_") {
		pair, err = p.ca.IssueServer(cn, nil)
	} else {
		pair, err = p.ca.IssueClient(cn)
	}
	if err != nil {
		t.Fatalf("issue %s = %v", cn, err)
	}
	cfg, err := pki.ClientTLSConfig(p.ca.CertFile(), pair.CertFile, pair.KeyFile, "")
	if err != nil {
		t.Fatalf("ClientTLSConfig = %v", err)
	}
	return cfg
}

// serveTLS serves h over TLS 1.3 with cfg on a loopback port.
func serveTLS(t testing.TB, h http.Handler, cfg *tls.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut off at Close
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// fakeAgent is an agent's controller-facing API that records every
// configuration the controller pushes.
type fakeAgent struct {
	node qkd.NodeID
	srv  *httptest.Server

	mu     sync.Mutex
	docs   []sdn.QKDNodeDocument // guarded by mu
	status int                   // guarded by mu: answer to pushes (0: 204)
}

func newFakeAgent(t testing.TB, p *testPKI, node qkd.NodeID) *fakeAgent {
	a := &fakeAgent{node: node}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT "+controller.AgentBasePath+"/qkd_node", func(w http.ResponseWriter, r *http.Request) {
		if cn, ok := pki.PeerCN(r.TLS); !ok || cn != controllerCN {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		b, _ := io.ReadAll(r.Body)
		doc, err := controller.DecodeNodeDocument(b)
		if err != nil || qkd.NodeID(doc.Node.ID) != node {
			http.Error(w, "bad configuration", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		st := a.status
		if st == 0 {
			a.docs = append(a.docs, doc)
			st = http.StatusNoContent
		}
		a.mu.Unlock()
		w.WriteHeader(st)
	})
	a.srv = serveTLS(t, mux, p.serverTLS(t, string(qkd.KMEOf(node))))
	return a
}

func (a *fakeAgent) setStatus(st int) {
	a.mu.Lock()
	a.status = st
	a.mu.Unlock()
}

// pushes returns the number of configurations received.
func (a *fakeAgent) pushes() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.docs)
}

// virt returns the VIRT link id in the newest configuration received.
func (a *fakeAgent) virt(id string) (sdn.QKDLink, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.docs) == 0 {
		return sdn.QKDLink{}, false
	}
	return virtIn(a.docs[len(a.docs)-1].Node, id)
}

func virtIn(n sdn.QKDNode, id string) (sdn.QKDLink, bool) {
	if n.Links == nil {
		return sdn.QKDLink{}, false
	}
	for _, l := range n.Links.Links {
		if l.Type == sdn.QKDLinkVirt && l.ID == id {
			return l, true
		}
	}
	return sdn.QKDLink{}, false
}

// env is a controller for ring5 served over mTLS, a fake agent per node
// and clients for every node and the operator.
type env struct {
	t        *testing.T
	pki      *testPKI
	topo     *topology.Topology
	ctrl     *controller.Controller
	srv      *httptest.Server
	agents   map[qkd.NodeID]*fakeAgent
	clients  map[qkd.NodeID]*controller.Client
	http     map[string]*http.Client // raw clients by CN
	operator *controller.Client
}

func newEnv(t *testing.T, o controller.Options) *env {
	t.Helper()
	e := &env{t: t, pki: newPKI(t), topo: loadTopology(t, "ring5.json"), agents: map[qkd.NodeID]*fakeAgent{},
		clients: map[qkd.NodeID]*controller.Client{}, http: map[string]*http.Client{}}
	o.Topology = e.topo
	o.ClientTLS = e.pki.clientTLS(t, controllerCN)
	o.OperatorCN = operatorCN
	if o.PushTimeout == 0 {
		o.PushTimeout = 5 * time.Second
	}
	c, err := controller.New(o)
	if err != nil {
		t.Fatalf("controller.New = %v", err)
	}
	e.ctrl = c
	e.srv = serveTLS(t, c.Handler(), e.pki.serverTLS(t, controllerCN))
	for _, n := range e.topo.Nodes {
		e.agents[n.ID] = newFakeAgent(t, e.pki, n.ID)
		e.clients[n.ID] = e.client(string(qkd.KMEOf(n.ID)))
	}
	e.operator = e.client(operatorCN)
	return e
}

func (e *env) client(cn string) *controller.Client {
	e.t.Helper()
	c, err := controller.NewClient(e.srv.URL, e.pki.clientTLS(e.t, cn))
	if err != nil {
		e.t.Fatalf("NewClient = %v", err)
	}
	e.t.Cleanup(c.CloseIdleConnections)
	return c
}

// raw returns a plain HTTPS client with the certificate of cn.
func (e *env) raw(cn string) *http.Client {
	if hc, ok := e.http[cn]; ok {
		return hc
	}
	cfg := e.pki.clientTLS(e.t, cn)
	cfg.MinVersion = tls.VersionTLS13
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	e.t.Cleanup(hc.CloseIdleConnections)
	e.http[cn] = hc
	return hc
}

// answer is a raw HTTP answer.
type answer struct {
	status int
	ctype  string
	body   []byte
}

func (e *env) do(cn, method, path, body string) answer {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.raw(cn).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: b}
}

// wantProblem checks an RFC 9457 answer.
func wantProblem(t *testing.T, a answer, status int) controller.Problem {
	t.Helper()
	if a.status != status {
		t.Fatalf("status = %d (%s), want %d", a.status, a.body, status)
	}
	if a.ctype != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", a.ctype)
	}
	var p controller.Problem
	if err := json.Unmarshal(a.body, &p); err != nil || p.Status != status || p.Title == "" || p.Detail == "" {
		t.Errorf("problem = %s (%v), want title, status %d and detail", a.body, err, status)
	}
	return p
}

// linkOpt changes the report of one link end.
type linkOpt struct {
	status string // default ACTIVE
	kav    uint64
}

// reportOf is node n's report: every PHYS link of n with its nominal rate
// (opts override per link), the node OPERATING, the agent at its fake
// agent's URL and ETSI 014 limits lim.
func (e *env) reportOf(n qkd.NodeID, lim *controller.Limits, opts map[qkd.LinkID]linkOpt) controller.NodeReport {
	var links []sdn.QKDLink
	for _, l := range e.topo.LinksAt(n) {
		o := opts[l.ID]
		if o.status == "" {
			o.status = sdn.QKDLinkActive
		}
		links = append(links, sdn.QKDLink{ID: string(l.ID), Status: o.status, Type: sdn.QKDLinkPhys,
			Local: sdn.QKDLinkEnd{NodeID: string(n)}, Remote: sdn.QKDLinkEnd{NodeID: string(l.Other(n))},
			Performance: &sdn.QKDLinkPerformance{SKR: uint32(l.SKRbps), ESKR: uint32(l.SKRbps), KAV: o.kav}})
	}
	r := controller.NodeReport{Node: sdn.QKDNode{ID: string(n), Status: sdn.QKDNodeOperating}, Agent: controller.AgentInfo{URL: e.agents[n].srv.URL, ETSI014: lim}}
	if len(links) > 0 {
		r.Node.Links = &sdn.QKDLinks{Links: links}
	}
	return r
}

func (e *env) report(n qkd.NodeID, lim *controller.Limits, opts map[qkd.LinkID]linkOpt) sdn.QKDNodeDocument {
	e.t.Helper()
	doc, err := e.clients[n].Report(ctx(e.t), e.reportOf(n, lim, opts))
	if err != nil {
		e.t.Fatalf("report of %s = %v", n, err)
	}
	return doc
}

// reportAll registers every node.
func (e *env) reportAll() {
	e.t.Helper()
	for _, n := range e.topo.Nodes {
		e.report(n.ID, defaultLimits(n.ID), nil)
	}
}

func defaultLimits(n qkd.NodeID) *controller.Limits {
	return &controller.Limits{KMEID: string(qkd.KMEOf(n)), KeySize: 256, MaxKeyCount: 1000, MaxKeyPerRequest: 128,
		MaxKeySize: 1024, MinKeySize: 64, MaxSAEIDCount: 0}
}

func registration(master string, slaves ...string) controller.AppRegistration {
	return controller.AppRegistration{App: sdn.QKDApp{Type: sdn.QKDAppClient, ServerAppID: master, ClientAppIDs: slaves}}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// waitFor waits until cond holds, for at most 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// notes returns the controller's notifications of type typ.
func notes(c *controller.Controller, typ string) []controller.Notification {
	var out []controller.Notification
	for _, n := range c.Notifications() {
		if n.Type == typ {
			out = append(out, n)
		}
	}
	return out
}

func hasNote(c *controller.Controller, typ string, match func(controller.Notification) bool) bool {
	return slices.ContainsFunc(notes(c, typ), match)
}
