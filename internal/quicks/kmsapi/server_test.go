package kmsapi_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/quickstest"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
)

const base = quicks.BasePath

var (
	entryTree = map[string]any{"timestamp": "string", "delta_t": "number", "IKR": "number", "EXKR": "number", "SKR": "number", "KAV": "number"}

	deviceBody = `{"link_id":"` + linkID + `","label":"sim A-B","state":"online","interface":"etsi_004","protocol":"coap",
		"peer_kms":"KME_B","server_address":"127.0.0.1:5683","etsi_004":{"source":"coap://a","destination":"coap://b","key_chunk_size":32}}`
	relayBody = `{"source":"SAE_A1","destination":["SAE_C1"],"next_node_info":["127.0.0.1:5684"],
		"qos_request":{"type":"etsi_014","etsi_014":{"number":4,"size":256}},"peer_application_info":[{"kms_id":"KME_C","application_ids":["SAE_C1"]}]}`
)

// TestEndpoints: every resource of sdn_to_kms_api.yaml answers with the
// published status, media type, member names and JSON types, and hands the
// backend what the request said.
func TestEndpoints(t *testing.T) {
	f := newFake()
	e := newEnv(t, f)
	tests := []struct {
		method, path, body string
		wantStatus         int
		wantTree           any  // nil: no body
		wantCall           call // compared without caller
	}{
		{"GET", base + "/version", "", 200, map[string]any{"version": "string"}, call{op: "Version"}},
		{"GET", base + "/monitor/capabilities", "", 200, map[string]any{
			"key_relay_support": "boolean",
			"app_api_support":   []any{"string"},
			"etsi_014_info": map[string]any{"kms_id": "string", "key_size": "number", "stored_key_count": "number",
				"max_key_count": "number", "max_key_per_request": "number", "max_key_size": "number",
				"min_key_size": "number", "max_sae_id_count": "number", "status_extension": map[string]any{"links": "number"}},
			"capabilities_extension": []any{"string"}, // qkms extension, README
		}, call{op: "Capabilities"}},
		{"GET", base + "/monitor/device-info", "", 200, map[string]any{"vendor": "string", "model": "string", "version": "string"}, call{op: "DeviceInfo"}},
		{"GET", base + "/monitor/status", "", 200, map[string]any{"state": "string", "operation": "string"}, call{op: "Status"}},
		{"GET", base + "/monitor/status?new_operation_state_only=true", "", 200, map[string]any{"state": "string", "operation": "string"}, call{op: "Status", reset: true}},
		{"GET", base + "/monitor/status?reset=true", "", 200, map[string]any{"state": "string", "operation": "string"}, call{op: "Status", reset: true}},
		{"GET", base + "/monitor/qkd-device", "", 200, map[string]any{"qkd_devices": []any{map[string]any{
			"device_id": "string", "link_id": "string", "label": "string", "state": "string",
			"interface": "string", "protocol": "string", "peer_kms": "string"}}}, call{op: "QKDDevices"}},
		{"PUT", base + "/control/status", `{"state":"stopped"}`, 200, nil, call{op: "SetStatus", state: quicks.StateStopped}},
		{"POST", base + "/control/qkd-device/" + devID, deviceBody, 201, nil, call{op: "RegisterDevice", id: devID, dev: quicks.DeviceConnection{
			LinkID: linkID, Label: "sim A-B", State: quicks.StateOnline, Interface: quicks.InterfaceETSI004, Protocol: "coap",
			PeerKMS: "KME_B", ServerAddress: "127.0.0.1:5683", ETSI004: &quicks.DeviceETSI004{Source: "coap://a", Destination: "coap://b", KeyChunkSize: 32}}}},
		{"PUT", base + "/control/qkd-device/" + devID, `{"state":"stopped"}`, 200, nil, call{op: "UpdateDevice", id: devID, dev: quicks.DeviceConnection{State: quicks.StateStopped}}},
		{"DELETE", base + "/control/qkd-device/" + devID, "", 204, nil, call{op: "RemoveDevice", id: devID}},
		{"GET", base + "/link/performance/" + linkID, "", 200, map[string]any{"current": entryTree, "history": []any{entryTree}}, call{op: "LinkPerformance", id: linkID, entries: kmsapi.AllHistory}},
		{"GET", base + "/link/performance/" + linkID + "?entries=0", "", 200, map[string]any{"current": entryTree}, call{op: "LinkPerformance", id: linkID}},
		{"GET", base + "/link/performance/" + linkID + "?entries=2", "", 200, map[string]any{"current": entryTree, "history": []any{entryTree}}, call{op: "LinkPerformance", id: linkID, entries: 2}},
		{"POST", base + "/link/relay/" + ksid, relayBody, 201, nil, call{op: "CreateRelay", id: ksid, relay: quicks.RelayConfig{
			Source: "SAE_A1", Destination: []string{"SAE_C1"}, NextNodeInfo: []string{"127.0.0.1:5684"},
			QoSRequest:          &quicks.QoSData{Type: quicks.QoSETSI014, ETSI014: &quicks.ETSI014QoS{Number: 4, Size: 256}},
			PeerApplicationInfo: []quicks.PeerApplicationInfo{{KMSID: "KME_C", ApplicationIDs: []string{"SAE_C1"}}}}}},
		{"PUT", base + "/link/relay/" + ksid, `{"next_node_info":[]}`, 200, nil, call{op: "ReplaceRelay", id: ksid, relay: quicks.RelayConfig{NextNodeInfo: []string{}}}},
		{"DELETE", base + "/link/relay/" + ksid, "", 204, nil, call{op: "DeleteRelay", id: ksid}},
		// The base path of sdn_to_kms_api.yaml 2.2.0's servers entry.
		{"GET", quicks.KMSBasePath + "/version", "", 200, map[string]any{"version": "string"}, call{op: "Version"}},
		{"DELETE", quicks.KMSBasePath + "/link/relay/" + ksid, "", 204, nil, call{op: "DeleteRelay", id: ksid}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			a := e.do(t, tt.method, tt.path, tt.body)
			if a.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", a.Status, tt.wantStatus, a.Body)
			}
			if tt.wantTree == nil {
				if len(a.Body) != 0 || a.ContentType != "" {
					t.Errorf("answer %q %q, want no body", a.ContentType, a.Body)
				}
			} else {
				if a.ContentType != quicks.MediaTypeJSON {
					t.Errorf("Content-Type = %q, want %s", a.ContentType, quicks.MediaTypeJSON)
				}
				if diff := cmp.Diff(tt.wantTree, quickstest.TypeTree(t, a.Body)); diff != "" {
					t.Errorf("answer members mismatch (-want +got):\n%s", diff)
				}
			}
			got := f.last()
			if got.caller != operator {
				t.Errorf("backend saw caller %q, want %q", got.caller, operator)
			}
			got.caller = ""
			if diff := cmp.Diff(tt.wantCall, got, cmp.AllowUnexported(call{})); diff != "" {
				t.Errorf("backend call mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLog(t *testing.T) {
	e := newEnv(t, newFake())
	a := e.do(t, "GET", base+"/monitor/log", "")
	if a.Status != 200 || a.ContentType != "text/plain; charset=utf-8" || !strings.HasPrefix(string(a.Body), "[2025-12-11 10:00:00] INFO") {
		t.Errorf("GET monitor/log = %d %q %q, want 200 text/plain log", a.Status, a.ContentType, a.Body)
	}
}

// TestBadInput: malformed JSON, wrong types, unknown enum values, missing
// required members and bad parameters are 400 problems naming the field.
func TestBadInput(t *testing.T) {
	f := newFake()
	e := newEnv(t, f)
	tests := []struct{ method, path, body, detail string }{
		{"PUT", "/control/status", ``, "body: required"},
		{"PUT", "/control/status", `{"state":`, "body: malformed JSON"},
		{"PUT", "/control/status", `["online"]`, "body: must be a JSON object"},
		{"PUT", "/control/status", `{}`, "state: required"},
		{"PUT", "/control/status", `{"state":5}`, "state: must be a string"},
		{"PUT", "/control/status", `{"state":"paused"}`, `state: unknown value "paused"`},
		{"POST", "/control/qkd-device/dev-1", deviceBody, "device_id: path parameter must be a UUID"},
		{"POST", "/control/qkd-device/" + devID, `{"label":"x"}`, "link_id: required"},
		{"POST", "/control/qkd-device/" + devID, strings.Replace(deviceBody, `"etsi_004"`, `"usb"`, 1), `interface: unknown value "usb"`},
		{"POST", "/control/qkd-device/" + devID, strings.Replace(deviceBody, `"key_chunk_size":32`, `"key_chunk_size":"32"`, 1), "etsi_004.key_chunk_size: must be an integer"},
		{"PUT", "/control/qkd-device/" + devID, `{"etsi_014":{"primary_id":"a"}}`, "etsi_014.secondary_id: required"},
		{"PUT", "/control/qkd-device/" + devID, `{"link_id":"L1"}`, "link_id: must be a UUID"},
		{"DELETE", "/control/qkd-device/%41", "", `device_id: path parameter must be a UUID, not "A"`},
		{"GET", "/monitor/status?new_operation_state_only=yes", "", "new_operation_state_only: must be true or false"},
		{"GET", "/monitor/status?reset=1", "", "reset: must be true or false"},
		{"GET", "/link/performance/L1", "", "link_id: path parameter must be a UUID"},
		{"GET", "/link/performance/" + linkID + "?entries=-1", "", "entries: must be a non-negative integer"},
		{"GET", "/link/performance/" + linkID + "?entries=ten", "", "entries: must be a non-negative integer"},
		{"GET", "/link/performance/" + linkID + "?entries=1&entries=2", "", "entries: query parameter given more than once"},
		{"POST", "/link/relay/" + ksid, `{"source":"a"}`, "destination: required"},
		{"POST", "/link/relay/" + ksid, `{"source":"a","destination":["b"]}`, "next_node_info: required"},
		{"POST", "/link/relay/" + ksid, strings.Replace(relayBody, `"etsi_014","etsi_014"`, `"etsi_015","etsi_014"`, 1), `qos_request.type: unknown value "etsi_015"`},
		{"POST", "/link/relay/" + ksid, strings.Replace(relayBody, `"number":4,`, ``, 1), "qos_request.etsi_014.number: required"},
		{"POST", "/link/relay/" + ksid, `{"source":"a","destination":["b"],"next_node_info":"kms-1:5683"}`, "next_node_info: must be an array"},
		{"PUT", "/link/relay/" + ksid, `{"destination":[]}`, "destination: must have at least 1 item"},
		{"PUT", "/link/relay/not-a-uuid", `{}`, "key_stream_id: path parameter must be a UUID"},
		{"DELETE", "/link/relay/not-a-uuid", "", "key_stream_id"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.body, func(t *testing.T) {
			wantProblem(t, e.do(t, tt.method, base+tt.path, tt.body), 400, tt.detail)
		})
	}
	wantProblem(t, e.do(t, "POST", base+"/link/relay/"+ksid, `{"source":"`+strings.Repeat("a", 65<<10)+`"}`), 413, "too large")
}

// TestNotSupported: what the backend does not offer is 501.
func TestNotSupported(t *testing.T) {
	e := newEnv(t, kmsapi.Unimplemented{})
	tests := []struct{ method, path, body string }{
		{"GET", "/monitor/capabilities", ""},
		{"GET", "/monitor/device-info", ""},
		{"GET", "/monitor/status", ""},
		{"GET", "/monitor/log", ""},
		{"GET", "/monitor/qkd-device", ""},
		{"PUT", "/control/status", `{"state":"online"}`},
		{"POST", "/control/qkd-device/" + devID, deviceBody},
		{"PUT", "/control/qkd-device/" + devID, `{}`},
		{"DELETE", "/control/qkd-device/" + devID, ""},
		{"GET", "/link/performance/" + linkID, ""},
		{"POST", "/link/relay/" + ksid, relayBody},
		{"PUT", "/link/relay/" + ksid, `{}`},
		{"DELETE", "/link/relay/" + ksid, ""},
	}
	for _, tt := range tests {
		wantProblem(t, e.do(t, tt.method, base+tt.path, tt.body), 501, "not supported")
	}
	a := e.do(t, "GET", base+"/version", "")
	if a.Status != 200 || string(a.Body) != `{"version":"`+quicks.Version+`"}` {
		t.Errorf("GET version = %d %s, want 200 %s", a.Status, a.Body, quicks.Version)
	}
}

// TestBackendErrors: the sentinels map to the published codes; other
// errors are 500 without their text.
func TestBackendErrors(t *testing.T) {
	tests := []struct {
		op                 string
		err                error
		method, path, body string
		status             int
		detail             string
	}{
		{"RegisterDevice", fmt.Errorf("device %s: %w", devID, quicks.ErrConflict), "POST", "/control/qkd-device/" + devID, deviceBody, 409, "conflict"},
		{"UpdateDevice", quicks.ErrNotFound, "PUT", "/control/qkd-device/" + devID, `{}`, 400, "device_id: unknown QKD device"},
		{"RemoveDevice", quicks.ErrNotFound, "DELETE", "/control/qkd-device/" + devID, "", 400, "device_id: unknown QKD device"},
		{"SetStatus", fmt.Errorf("%w: remote state change disabled", quicks.ErrForbidden), "PUT", "/control/status", `{"state":"offline"}`, 403, "remote state change disabled"},
		{"LinkPerformance", fmt.Errorf("link %s: %w", linkID, quicks.ErrNotFound), "GET", "/link/performance/" + linkID, "", 404, "not found"},
		{"CreateRelay", quicks.ErrConflict, "POST", "/link/relay/" + ksid, relayBody, 409, "conflict"},
		{"ReplaceRelay", quicks.ErrNotFound, "PUT", "/link/relay/" + ksid, `{}`, 404, "not found"},
		{"DeleteRelay", quicks.ErrNotFound, "DELETE", "/link/relay/" + ksid, "", 404, "not found"},
		{"CreateRelay", quicks.BadField("next_node_info[0]", "unknown peer"), "POST", "/link/relay/" + ksid, relayBody, 400, "next_node_info[0]: unknown peer"},
		{"Capabilities", errors.New("keystore at /var/lib/qkms is locked"), "GET", "/monitor/capabilities", "", 500, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			f := newFake()
			f.setErr(tt.op, tt.err)
			e := newEnv(t, f)
			a := e.do(t, tt.method, base+tt.path, tt.body)
			wantProblem(t, a, tt.status, tt.detail)
			if strings.Contains(string(a.Body), "/var/lib") {
				t.Errorf("500 leaks the cause: %s", a.Body)
			}
		})
	}
}

// A backend answer that breaks the schema is never sent: 500.
func TestInvalidAnswer(t *testing.T) {
	f := newFake()
	f.setStatus(quicks.KMSStatus{State: "sleeping"})
	e := newEnv(t, f)
	wantProblem(t, e.do(t, "GET", base+"/monitor/status", ""), 500, "internal error")
}

func TestRouting(t *testing.T) {
	e := newEnv(t, newFake())
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/", 404, ""},
		{"GET", base, 404, ""},
		{"GET", base + "/", 404, ""},
		{"GET", base + "/nope", 404, ""},
		{"GET", base + "/monitor/status/", 404, ""},
		{"GET", "/api/v1/sdn/version", 404, ""},
		{"POST", base + "/control/qkd-device", 404, ""},
		{"POST", base + "/control/qkd-device/", 404, ""},
		{"DELETE", base + "/monitor/status", 405, "GET"},
		{"HEAD", base + "/version", 405, "GET"},
		{"POST", base + "/control/status", 405, "PUT"},
		{"GET", base + "/link/relay/" + ksid, 405, "DELETE, POST, PUT"},
		{"PATCH", base + "/control/qkd-device/" + devID, 405, "DELETE, POST, PUT"},
	}
	for _, tt := range tests {
		a := e.do(t, tt.method, tt.path, "")
		if tt.method == "HEAD" { // no body on HEAD
			if a.Status != tt.status || a.Header.Get("Allow") != tt.allow {
				t.Errorf("HEAD %s = %d Allow %q, want %d %q", tt.path, a.Status, a.Header.Get("Allow"), tt.status, tt.allow)
			}
			continue
		}
		wantProblem(t, a, tt.status, "")
		if got := a.Header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

// TestAuthorization: a certificate of the network CA whose CN Authorize
// refuses gets a 403 problem; a certificate of another CA, none, or TLS
// below 1.3 fails the handshake.
func TestAuthorization(t *testing.T) {
	f := newFake()
	e := newEnv(t, f)
	for _, cn := range []string{operator, agent} {
		c := quickstest.HTTPClient(t, e.PKI.ClientTLS(t, cn))
		if a := quickstest.Do(t, c, "GET", e.url(base+"/version"), ""); a.Status != 200 {
			t.Errorf("client %q: status %d, want 200", cn, a.Status)
		}
	}
	intruder := quickstest.HTTPClient(t, e.PKI.ClientTLS(t, "SAE_A1"))
	before := f.count()
	wantProblem(t, quickstest.Do(t, intruder, "PUT", e.url(base+"/control/status"), `{"state":"offline"}`), 403, `client "SAE_A1" is not authorised`)
	wantProblem(t, quickstest.Do(t, intruder, "GET", e.url(base+"/nope"), ""), 403, "not authorised")
	if f.count() != before {
		t.Errorf("the backend was called for a refused client")
	}

	tls12 := e.PKI.ClientTLS(t, operator)
	tls12.MaxVersion = tls.VersionTLS12
	refused := map[string]*tls.Config{
		"foreign CA":     e.PKI.ForeignClientTLS(t, operator),
		"no certificate": e.PKI.ClientTLS(t, ""),
		"TLS 1.2":        tls12,
	}
	for name, cfg := range refused {
		c := quickstest.HTTPClient(t, cfg)
		resp, err := c.Get(e.url(base + "/version"))
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: GET version = %d, want a TLS failure", name, resp.StatusCode)
		}
	}
}

// Handler mounted without TLS (no verified certificate): 403.
func TestHandlerWithoutTLS(t *testing.T) {
	srv := kmsapi.New(kmsapi.Options{Backend: newFake(), Authorize: func(string, *http.Request) bool { return true }})
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", base+"/version", nil))
	if rec.Code != 403 || rec.Header().Get("Content-Type") != quicks.MediaTypeProblem {
		t.Errorf("no TLS: %d %q, want 403 problem", rec.Code, rec.Header().Get("Content-Type"))
	}
}

func TestServeNeedsTLS(t *testing.T) {
	p := quickstest.NewPKI(t)
	noCAs := p.ServerTLS(t, "KME_A")
	noCAs.ClientCAs = nil
	for name, cfg := range map[string]*tls.Config{"nil": nil, "no client CAs": noCAs, "no certificate": {ClientCAs: p.ServerTLS(t, "x").ClientCAs}} {
		srv := kmsapi.New(kmsapi.Options{Backend: newFake(), TLSConfig: cfg})
		ln := listen(t)
		if err := srv.Serve(context.Background(), ln); err == nil {
			t.Errorf("%s: Serve() = nil, want an error", name)
		}
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, newFake())
	if got := e.srv.Addr(); got == nil || got.String() != e.Addr {
		t.Errorf("Addr() = %v, want %s", got, e.Addr)
	}
	a := e.do(t, "GET", base+"/version", "")
	if a.Status != 200 {
		t.Fatalf("GET version = %d", a.Status)
	}
	for range 2 {
		if err := e.srv.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
	}
	e.Client.CloseIdleConnections()
	if resp, err := e.Client.Get(e.url(base + "/version")); err == nil {
		resp.Body.Close()
		t.Error("GET after Shutdown succeeded")
	}
}
