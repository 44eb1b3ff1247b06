package agent_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/agent"
	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
	"github.com/qkms/qkms/internal/sdn"
)

const (
	node         = qkd.NodeID("B")
	kmsCN        = "KME_B"
	controllerCN = "controller"
	operatorCN   = "operator"
)

// neighbours of B (ring5: A, C and D) and their KMS↔KMS authorities.
var neighbours = map[qkd.NodeID]string{"A": "kms-a.example:5683", "C": "kms-c.example:5683", "D": "kms-d.example:5683"}

type testPKI struct{ ca *pki.CA }

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.InitCA(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatalf("InitCA = %v", err)
	}
	return &testPKI{ca: ca}
}

func (p *testPKI) pair(t testing.TB, cn string) pki.Pair {
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
	return pair
}

func (p *testPKI) serverTLS(t testing.TB, cn string) *tls.Config {
	t.Helper()
	pair := p.pair(t, cn)
	cfg, err := pki.ServerTLSConfig(p.ca.CertFile(), pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinVersion = tls.VersionTLS13
	return cfg
}

func (p *testPKI) clientTLS(t testing.TB, cn string) *tls.Config {
	t.Helper()
	pair := p.pair(t, cn)
	cfg, err := pki.ClientTLSConfig(p.ca.CertFile(), pair.CertFile, pair.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startTLS starts srv over TLS 1.3 with cfg.
func startTLS(t testing.TB, srv *httptest.Server, cfg *tls.Config) *httptest.Server {
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut off at Close
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// relayCall is one link/relay call the fake KMS received.
type relayCall struct {
	Op    string // create, replace, delete
	ID    string
	Entry quicks.RelayConfig
	Err   string // "" or the sentinel answered
}

// fakeKMS is the node's KMS behind a real QUICKS server.
type fakeKMS struct {
	kmsapi.Unimplemented

	mu      sync.Mutex
	state   quicks.State
	caps    quicks.Capabilities
	devices []quicks.QKDDevice
	perf    map[string]quicks.PerformanceEntry // by link_id
	relays  map[string]quicks.RelayConfig
	calls   []relayCall
}

func (k *fakeKMS) Status(context.Context, bool) (quicks.KMSStatus, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return quicks.KMSStatus{State: k.state, Operation: quicks.OperationNormal}, nil
}

func (k *fakeKMS) Capabilities(context.Context) (quicks.Capabilities, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.caps, nil
}

func (k *fakeKMS) QKDDevices(context.Context) (quicks.QKDDeviceList, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return quicks.QKDDeviceList{QKDDevices: append([]quicks.QKDDevice{}, k.devices...)}, nil
}

func (k *fakeKMS) LinkPerformance(_ context.Context, id string, _ int) (quicks.Performance, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.perf[id]
	if !ok {
		return quicks.Performance{}, fmt.Errorf("%w: link %s", quicks.ErrNotFound, id)
	}
	return quicks.Performance{Current: p}, nil
}

func (k *fakeKMS) CreateRelay(_ context.Context, id string, e quicks.RelayConfig) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.relays[id]; ok {
		k.calls = append(k.calls, relayCall{Op: "create", ID: id, Entry: e, Err: "conflict"})
		return fmt.Errorf("%w: relay %s exists", quicks.ErrConflict, id)
	}
	k.relays[id] = e
	k.calls = append(k.calls, relayCall{Op: "create", ID: id, Entry: e})
	return nil
}

func (k *fakeKMS) ReplaceRelay(_ context.Context, id string, e quicks.RelayConfig) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.relays[id]; !ok {
		k.calls = append(k.calls, relayCall{Op: "replace", ID: id, Entry: e, Err: "not found"})
		return fmt.Errorf("%w: relay %s", quicks.ErrNotFound, id)
	}
	k.relays[id] = e
	k.calls = append(k.calls, relayCall{Op: "replace", ID: id, Entry: e})
	return nil
}

func (k *fakeKMS) DeleteRelay(_ context.Context, id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.relays[id]; !ok {
		k.calls = append(k.calls, relayCall{Op: "delete", ID: id, Err: "not found"})
		return fmt.Errorf("%w: relay %s", quicks.ErrNotFound, id)
	}
	delete(k.relays, id)
	k.calls = append(k.calls, relayCall{Op: "delete", ID: id})
	return nil
}

// takeCalls returns the relay calls since the last takeCalls.
func (k *fakeKMS) takeCalls() []relayCall {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.calls
	k.calls = nil
	return c
}

func (k *fakeKMS) relayCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.relays)
}

// fakeController answers the controller API the agent uses and records
// what the agent sent.
type fakeController struct {
	mu            sync.Mutex
	reports       []controller.NodeReport
	config        sdn.QKDNodeDocument // answer to reports
	registrations []controller.AppRegistration
	register      func(controller.AppRegistration) (int, any) // answer to registrations
	pathStatus    controller.PathStatus
	notes         []controller.Notification
	established   []string
	closed        []string
	reported      chan struct{} // a report arrived
}

func problem(status int, detail string) (int, any) {
	return status, quicks.NewProblem(status, detail)
}

func (f *fakeController) handler(t testing.TB) http.Handler {
	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter, status int, v any) {
		if p, ok := v.(*quicks.Problem); ok {
			quicks.WriteProblem(w, p)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if v != nil {
			_, _ = w.Write([]byte(mustJSON(t, v)))
		}
	}
	check := func(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
		if cn, ok := pki.PeerCN(r.TLS); !ok || cn != kmsCN {
			quicks.WriteProblem(w, quicks.NewProblem(http.StatusForbidden, "not the agent of B"))
			return nil, false
		}
		b, _ := io.ReadAll(r.Body)
		return b, true
	}
	mux.HandleFunc("PUT "+controller.BasePath+"/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		b, ok := check(w, r)
		if !ok {
			return
		}
		rep, err := controller.DecodeNodeReport(b)
		if err != nil || r.PathValue("id") != string(node) {
			problemOf(w, http.StatusBadRequest, fmt.Sprint(err))
			return
		}
		f.mu.Lock()
		f.reports = append(f.reports, rep)
		doc := f.config
		f.mu.Unlock()
		if doc.Node.ID == "" {
			doc.Node.ID = string(node)
		}
		answer(w, http.StatusOK, doc)
		select {
		case f.reported <- struct{}{}:
		default:
		}
	})
	mux.HandleFunc("POST "+controller.BasePath+"/applications", func(w http.ResponseWriter, r *http.Request) {
		b, ok := check(w, r)
		if !ok {
			return
		}
		reg, err := controller.DecodeAppRegistration(b)
		if err != nil {
			problemOf(w, http.StatusBadRequest, err.Error())
			return
		}
		f.mu.Lock()
		f.registrations = append(f.registrations, reg)
		reply := f.register
		f.mu.Unlock()
		st, v := reply(reg)
		answer(w, st, v)
	})
	mux.HandleFunc("GET "+controller.BasePath+"/path-status", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := check(w, r); !ok {
			return
		}
		q := r.URL.Query()
		if q.Get("master") != "SAE_B1" || q.Get("slave") != "SAE_C1" {
			problemOf(w, http.StatusNotFound, "unknown SAE")
			return
		}
		f.mu.Lock()
		ps := f.pathStatus
		f.mu.Unlock()
		answer(w, http.StatusOK, ps)
	})
	mux.HandleFunc("POST "+controller.BasePath+"/notifications", func(w http.ResponseWriter, r *http.Request) {
		b, ok := check(w, r)
		if !ok {
			return
		}
		n, err := controller.DecodeNotification(b)
		if err != nil {
			problemOf(w, http.StatusBadRequest, err.Error())
			return
		}
		f.mu.Lock()
		f.notes = append(f.notes, n)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PATCH "+controller.BasePath+"/applications/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := check(w, r); !ok {
			return
		}
		f.mu.Lock()
		f.established = append(f.established, r.PathValue("id"))
		f.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("DELETE "+controller.BasePath+"/applications/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := check(w, r); !ok {
			return
		}
		if r.PathValue("id") == unknownStream {
			problemOf(w, http.StatusNotFound, "no key stream "+unknownStream)
			return
		}
		f.mu.Lock()
		f.closed = append(f.closed, r.PathValue("id"))
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

const unknownStream = "00000000-0000-4000-8000-000000000404"

func problemOf(w http.ResponseWriter, status int, detail string) {
	quicks.WriteProblem(w, quicks.NewProblem(status, detail))
}

// env is an agent of node B between a fake controller and a fake KMS,
// each a real HTTPS server.
type env struct {
	t      *testing.T
	pki    *testPKI
	kms    *fakeKMS
	ctl    *fakeController
	ctlSrv *httptest.Server
	agent  *agent.Agent
	srv    *httptest.Server
	quicks *agentapi.Client // the KMS's client of its agent
	http   map[string]*http.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, pki: newPKI(t), http: map[string]*http.Client{}}
	e.kms = &fakeKMS{state: quicks.StateOnline, relays: map[string]quicks.RelayConfig{}, perf: map[string]quicks.PerformanceEntry{},
		caps: quicks.Capabilities{KeyRelaySupport: true, AppAPISupport: []quicks.AppAPI{quicks.AppAPIETSI014}}}
	kmsSrv := kmsapi.New(kmsapi.Options{Backend: e.kms, Authorize: func(cn string, _ *http.Request) bool { return cn == kmsCN }})
	kmsURL := startTLS(t, httptest.NewUnstartedServer(kmsSrv.Handler()), e.pki.serverTLS(t, kmsCN)).URL
	e.ctl = &fakeController{reported: make(chan struct{}, 1),
		register: func(controller.AppRegistration) (int, any) { return problem(http.StatusServiceUnavailable, "no route") }}
	e.ctlSrv = startTLS(t, httptest.NewUnstartedServer(e.ctl.handler(t)), e.pki.serverTLS(t, controllerCN))

	nodeTLS := e.pki.clientTLS(t, kmsCN)
	kc, err := kmsapi.NewClient(kmsapi.ClientOptions{BaseURL: kmsURL, TLSConfig: nodeTLS})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := controller.NewClient(e.ctlSrv.URL, nodeTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.CloseIdleConnections)
	t.Cleanup(cc.CloseIdleConnections)
	e.srv = httptest.NewUnstartedServer(http.NotFoundHandler())
	url := "https://" + e.srv.Listener.Addr().String()
	e.agent, err = agent.New(agent.Options{Node: node, KMS: kc, Controller: cc, URL: url, Neighbours: neighbours,
		KMSCN: kmsCN, ControllerCN: controllerCN, OperatorCN: operatorCN, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = e.agent.Handler()
	startTLS(t, e.srv, e.pki.serverTLS(t, kmsCN))
	e.quicks, err = agentapi.NewClient(agentapi.ClientOptions{BaseURL: e.srv.URL, TLSConfig: nodeTLS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.quicks.CloseIdleConnections)
	return e
}

// run runs the agent's reports until the test ends.
func (e *env) run() {
	c, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.agent.Run(c) })
	e.t.Cleanup(func() { cancel(); wg.Wait() })
}

// waitReport waits for the next report to reach the controller.
func (e *env) waitReport() controller.NodeReport {
	e.t.Helper()
	select {
	case <-e.ctl.reported:
	case <-time.After(5 * time.Second):
		e.t.Fatal("timed out waiting for a report")
	}
	e.ctl.mu.Lock()
	defer e.ctl.mu.Unlock()
	return e.ctl.reports[len(e.ctl.reports)-1]
}

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

type answer struct {
	status int
	ctype  string
	body   string
}

// push sends a configuration to the agent as cn.
func (e *env) push(cn, body string) answer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPut, e.srv.URL+controller.AgentBasePath+"/qkd_node", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.raw(cn).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: string(b)}
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
