package agentapi_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
	"github.com/qkms/qkms/internal/quicks/internal/quickstest"
)

const (
	base = quicks.BasePath
	kms  = "KME_A" // the agent's own KMS
)

func authorize(cn string, _ *http.Request) bool { return cn == kms }

type env struct {
	*quickstest.Env
	srv *agentapi.Server
}

func newEnv(t *testing.T, b agentapi.Backend) *env {
	t.Helper()
	e := &env{}
	e.Env = quickstest.NewEnv(t, "sdn-agent-A", kms, func(cfg *tls.Config) func(context.Context, net.Listener) error {
		e.srv = agentapi.New(agentapi.Options{Backend: b, Authorize: authorize, TLSConfig: cfg, MaxBodyBytes: 64 << 10})
		return e.srv.Serve
	})
	return e
}

func (e *env) url(path string) string { return e.URL(path) }

func (e *env) do(t *testing.T, method, path, body string) quickstest.Answer {
	t.Helper()
	return e.Do(t, method, path, body)
}

func wantProblem(t *testing.T, a quickstest.Answer, status int, detail string) {
	t.Helper()
	quickstest.WantProblem(t, a, status, detail)
}

const (
	entryJSON    = `{"timestamp":"2024-08-27T17:41:28Z","delta_t":10000,"IKR":144,"SKR":1250,"EXKR":320,"KAV":1810}`
	registerBody = `{"source":"SAE_A1","destination":["SAE_C1"],"qos_request":{"type":"etsi_014","etsi_014":{"number":4,"size":256}},
		"performance":[{"link_id":"` + linkID + `","current_kpi":` + entryJSON + `}],"options":{"multipath":true}}`
	kmsBody = `{"kms_id":"` + kmsID + `","model":{"device_vendor":"qkms","device_model":"qkms KMS","device_version":"0.9.0"},"link_ids":["` + linkID + `"]}`
)

// TestEndpoints: every resource of kms_to_sdn_api.yaml answers with the
// published status, media type, member names and JSON types, and hands the
// backend what the request said.
func TestEndpoints(t *testing.T) {
	f := newFake()
	e := newEnv(t, f)
	tests := []struct {
		method, path, body string
		wantStatus         int
		wantCT             string
		wantTree           any // JSON answers
		wantCall           call
	}{
		{"GET", "/version", "", 200, quicks.MediaTypeJSON, map[string]any{"version": "string"}, call{op: "Version"}},
		{"GET", "/link/status?master_sae_id=SAE_A1&slave_sae_id=SAE_C1", "", 200, quicks.MediaTypeJSON, map[string]any{
			"source_kms_id": "string", "target_kms_id": "string", "key_size": "number", "stored_key_count": "number",
			"max_key_count": "number", "max_key_per_request": "number", "max_key_size": "number", "min_key_size": "number",
			"max_sae_id_count": "number", "status_extension": map[string]any{"hops": "number"}},
			call{op: "LinkStatus", master: "SAE_A1", slave: "SAE_C1"}},
		{"POST", "/link/registration", registerBody, 201, quicks.MediaTypeJSON, map[string]any{
			"key_stream_id": "string", "next_node_info": []any{"string"},
			"qos":                   map[string]any{"max_bps": "number", "min_bps": "number", "ttl": "number"},
			"peer_application_info": []any{map[string]any{"kms_id": "string", "application_ids": []any{"string"}}}},
			call{op: "Register", reg: quicks.LinkRegistration{Source: "SAE_A1", Destination: []string{"SAE_C1"},
				QoSRequest:  quicks.QoSData{Type: quicks.QoSETSI014, ETSI014: &quicks.ETSI014QoS{Number: 4, Size: 256}},
				Performance: []quicks.LinkKPI{{LinkID: linkID, CurrentKPI: &entry}},
				Options:     quicks.RegistrationOptions{"multipath": true}}}},
		{"PATCH", "/link/registration", `{"key_stream_id":"` + ksid + `","destination":["SAE_C1"]}`, 200, "", nil,
			call{op: "PatchRegistration", patch: quicks.RegistrationUpdate{KeyStreamID: ksid, Destination: []string{"SAE_C1"}}}},
		{"DELETE", "/link/" + ksid, "", 200, "", nil, call{op: "DeleteStream", id: ksid}},
		{"POST", "/notification/registration", kmsBody, 201, quicks.MediaTypeOctetStream, nil, call{op: "NotifyRegistration",
			kms: quicks.KMSRegistration{KMSID: kmsID, Model: quicks.KMSModel{DeviceVendor: "qkms", DeviceModel: "qkms KMS", DeviceVersion: "0.9.0"}, LinkIDs: []string{linkID}}}},
		{"PATCH", "/notification/status", `{"state":"stopped","reason":"maintenance"}`, 200, "", nil,
			call{op: "NotifyStatus", status: quicks.StatusNotification{State: "stopped", Reason: "maintenance"}}},
		{"PUT", "/notification/event", `{"level":"error","code":14,"reason":"QKD device not reachable"}`, 200, "", nil,
			call{op: "NotifyEvent", event: quicks.Event{Level: quicks.LevelError, Code: intp(14), Reason: "QKD device not reachable"}}},
		{"PUT", "/notification/event", `{"level":"info","reason":"started"}`, 200, "", nil,
			call{op: "NotifyEvent", event: quicks.Event{Level: quicks.LevelInfo, Reason: "started"}}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			a := e.do(t, tt.method, base+tt.path, tt.body)
			if a.Status != tt.wantStatus || a.ContentType != tt.wantCT {
				t.Fatalf("answer %d %q, want %d %q: %s", a.Status, a.ContentType, tt.wantStatus, tt.wantCT, a.Body)
			}
			switch {
			case tt.wantTree != nil:
				if diff := cmp.Diff(tt.wantTree, quickstest.TypeTree(t, a.Body)); diff != "" {
					t.Errorf("answer members mismatch (-want +got):\n%s", diff)
				}
			case tt.wantCT == "" && len(a.Body) != 0:
				t.Errorf("answer body %q, want none", a.Body)
			}
			got := f.last()
			if got.caller != kms {
				t.Errorf("backend saw caller %q, want %q", got.caller, kms)
			}
			got.caller = ""
			if diff := cmp.Diff(tt.wantCall, got, cmp.AllowUnexported(call{})); diff != "" {
				t.Errorf("backend call mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// No configuration file: 201 without a body.
func TestNotifyRegistrationNoConfig(t *testing.T) {
	f := newFake()
	f.setConfig(nil)
	e := newEnv(t, f)
	a := e.do(t, "POST", base+"/notification/registration", kmsBody)
	if a.Status != 201 || a.ContentType != "" || len(a.Body) != 0 {
		t.Errorf("answer %d %q %q, want 201 without body", a.Status, a.ContentType, a.Body)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, newFake())
	tests := []struct{ method, path, body, detail string }{
		{"GET", "/link/status", "", "master_sae_id: required query parameter"},
		{"GET", "/link/status?master_sae_id=SAE_A1", "", "slave_sae_id: required query parameter"},
		{"GET", "/link/status?master_sae_id=&slave_sae_id=b", "", "master_sae_id: query parameter must not be empty"},
		{"GET", "/link/status?master_sae_id=a&master_sae_id=b&slave_sae_id=c", "", "master_sae_id: query parameter given more than once"},
		{"POST", "/link/registration", ``, "body: required"},
		{"POST", "/link/registration", `{"source":`, "body: malformed JSON"},
		{"POST", "/link/registration", `{"source":"a"}`, "destination: required"},
		{"POST", "/link/registration", strings.Replace(registerBody, `"etsi_014","etsi_014"`, `"etsi_014x","etsi_014"`, 1), `qos_request.type: unknown value "etsi_014x"`},
		{"POST", "/link/registration", strings.Replace(registerBody, `"size":256`, `"size":"256"`, 1), "qos_request.etsi_014.size: must be an integer, not string"},
		{"POST", "/link/registration", strings.Replace(registerBody, `"KAV":1810`, `"KAV":"a lot"`, 1), "performance.current_kpi.KAV: must be an integer (int32)"},
		{"POST", "/link/registration", strings.Replace(registerBody, `"delta_t":10000,`, ``, 1), "performance[0].current_kpi.delta_t: required"},
		{"POST", "/link/registration", strings.Replace(registerBody, linkID, "L1", 1), "performance[0].link_id: must be a UUID"},
		{"POST", "/link/registration", strings.Replace(registerBody, `"multipath":true`, `"multipath":1`, 1), "options.multipath: must be a boolean"},
		{"PATCH", "/link/registration", `{"key_stream_id":"` + ksid + `"}`, "destination: required"},
		{"PATCH", "/link/registration", `{"key_stream_id":"ks1","destination":["b"]}`, "key_stream_id: must be a UUID"},
		{"PATCH", "/link/registration", `{"key_stream_id":"` + ksid + `","destination":"b"}`, "destination: must be an array, not string"},
		{"DELETE", "/link/ks1", "", "key_stream_id: path parameter must be a UUID"},
		{"POST", "/notification/registration", `{"kms_id":"` + kmsID + `"}`, "model: required"},
		{"POST", "/notification/registration", strings.Replace(kmsBody, kmsID, "KME_A", 1), "kms_id: must be a UUID"},
		{"PATCH", "/notification/status", `{"state":"stopped"}`, "reason: required"},
		{"PATCH", "/notification/status", `{"state":0,"reason":"x"}`, "state: must be a string, not number"},
		{"PUT", "/notification/event", `{"level":"panic","reason":"x"}`, `level: unknown value "panic"`},
		{"PUT", "/notification/event", `{"level":"info","reason":"x","code":1.5}`, "code: must be an integer, not number"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.body, func(t *testing.T) {
			wantProblem(t, e.do(t, tt.method, base+tt.path, tt.body), 400, tt.detail)
		})
	}
	wantProblem(t, e.do(t, "PUT", base+"/notification/event", `{"reason":"`+strings.Repeat("x", 65<<10)+`"}`), 413, "too large")
}

func TestNotSupported(t *testing.T) {
	e := newEnv(t, agentapi.Unimplemented{})
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "/link/status?master_sae_id=a&slave_sae_id=b", ""},
		{"POST", "/link/registration", registerBody},
		{"PATCH", "/link/registration", `{"key_stream_id":"` + ksid + `","destination":["b"]}`},
		{"DELETE", "/link/" + ksid, ""},
		{"POST", "/notification/registration", kmsBody},
		{"PATCH", "/notification/status", `{"state":"online","reason":"started"}`},
		{"PUT", "/notification/event", `{"level":"info","reason":"x"}`},
	} {
		wantProblem(t, e.do(t, tt.method, base+tt.path, tt.body), 501, "not supported")
	}
}

func TestBackendErrors(t *testing.T) {
	tests := []struct {
		op                 string
		err                error
		method, path, body string
		status             int
		detail             string
	}{
		{"DeleteStream", fmt.Errorf("key stream %s: %w", ksid, quicks.ErrNotFound), "DELETE", "/link/" + ksid, "", 404, "not found"},
		{"PatchRegistration", quicks.ErrNotFound, "PATCH", "/link/registration", `{"key_stream_id":"` + ksid + `","destination":["b"]}`, 404, "not found"},
		{"Register", fmt.Errorf("%w: no route with 128 B/s", quicks.ErrConflict), "POST", "/link/registration", registerBody, 409, "no route"},
		{"Register", quicks.BadField("destination[0]", "unknown application"), "POST", "/link/registration", registerBody, 400, "destination[0]: unknown application"},
		{"NotifyStatus", quicks.ErrForbidden, "PATCH", "/notification/status", `{"state":"online","reason":"r"}`, 403, "forbidden"},
		{"LinkStatus", errors.New("controller at 10.0.0.1 down"), "GET", "/link/status?master_sae_id=a&slave_sae_id=b", "", 500, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			f := newFake()
			f.setErr(tt.op, tt.err)
			a := newEnv(t, f).do(t, tt.method, base+tt.path, tt.body)
			wantProblem(t, a, tt.status, tt.detail)
			if strings.Contains(string(a.Body), "10.0.0.1") {
				t.Errorf("500 leaks the cause: %s", a.Body)
			}
		})
	}
}

// A registration result without next nodes breaks the schema: 500.
func TestInvalidAnswer(t *testing.T) {
	f := newFake()
	f.setResult(quicks.RegistrationResult{KeyStreamID: ksid})
	wantProblem(t, newEnv(t, f).do(t, "POST", base+"/link/registration", registerBody), 500, "internal error")
}

func TestRouting(t *testing.T) {
	e := newEnv(t, newFake())
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", base + "/nope", 404, ""},
		{"GET", quicks.KMSBasePath + "/version", 404, ""},
		{"GET", base + "/link", 404, ""},
		{"GET", base + "/link/" + ksid + "/x", 404, ""},
		{"DELETE", base + "/link/status", 405, "GET"}, // a literal segment wins over {key_stream_id}
		{"DELETE", base + "/link/registration", 405, "PATCH, POST"},
		{"GET", base + "/link/" + ksid, 405, "DELETE"},
		{"GET", base + "/notification/event", 405, "PUT"},
		{"POST", base + "/notification/status", 405, "PATCH"},
	}
	for _, tt := range tests {
		a := e.do(t, tt.method, tt.path, "")
		wantProblem(t, a, tt.status, "")
		if got := a.Header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

func TestAuthorization(t *testing.T) {
	f := newFake()
	e := newEnv(t, f)
	other := quickstest.HTTPClient(t, e.PKI.ClientTLS(t, "KME_B"))
	wantProblem(t, quickstest.Do(t, other, "PUT", e.url(base+"/notification/event"), `{"level":"info","reason":"x"}`), 403, `client "KME_B" is not authorised`)
	if f.count() != 0 {
		t.Error("the backend was called for a refused client")
	}
	tls12 := e.PKI.ClientTLS(t, kms)
	tls12.MaxVersion = tls.VersionTLS12
	for name, cfg := range map[string]*tls.Config{
		"foreign CA":     e.PKI.ForeignClientTLS(t, kms),
		"no certificate": e.PKI.ClientTLS(t, ""),
		"TLS 1.2":        tls12,
	} {
		c := quickstest.HTTPClient(t, cfg)
		if resp, err := c.Get(e.url(base + "/version")); err == nil {
			resp.Body.Close()
			t.Errorf("%s: GET version = %d, want a TLS failure", name, resp.StatusCode)
		}
	}
}
