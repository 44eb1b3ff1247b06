package etsi014_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/etsi014"
	"github.com/qkms/qkms/internal/etsi014/etsi014test"
	"github.com/qkms/qkms/internal/qkd"
)

func TestErrorMapping(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
	details := []map[string]any{{"max_key_per_request": float64(128)}}
	tests := []struct {
		name   string
		err    error
		code   int
		want   errorBody
		logged string // a text the log must hold ("" for none)
	}{
		{"request error", &qkd.RequestError{Msg: "number exceeds max_key_per_request (128)", Details: details}, 400,
			errorBody{Message: "number exceeds max_key_per_request (128)", Details: details}, ""},
		{"wrapped request error", fmt.Errorf("kms: %w", qkd.BadRequest("size is below min_key_size (64)")), 400,
			errorBody{Message: "size is below min_key_size (64)"}, ""},
		{"request error with unencodable details", &qkd.RequestError{Msg: "bad", Details: []map[string]any{{"x": func() {}}}}, 400,
			errorBody{Message: "bad"}, ""},
		{"not found", fmt.Errorf("kms: key 42: %w", qkd.ErrNotFound), 400,
			errorBody{Message: "one or more keys specified are not found on KME"}, ""},
		{"unauthorized", fmt.Errorf("kms: %w", qkd.ErrUnauthorized), 401, errorBody{Message: "unauthorized"}, ""},
		{"unknown SAE", fmt.Errorf("kms: caller SAE_A: %w", qkd.ErrUnknownSAE), 401, errorBody{Message: "unauthorized"}, ""},
		{"insufficient key", fmt.Errorf("kms: link L1 has 3 keys: %w", qkd.ErrInsufficientKey), 503,
			errorBody{Message: "insufficient key material available"}, ""},
		{"no route", fmt.Errorf("kms: %w", qkd.ErrNoRoute), 503,
			errorBody{Message: "no QKD connection available to the peer SAE's KME"}, ""},
		{"peer unavailable", fmt.Errorf("relay: node N7: %w", qkd.ErrPeerUnavailable), 503,
			errorBody{Message: "peer KME unavailable"}, ""},
		{"inactive", qkd.ErrInactive, 503, errorBody{Message: "KME is inactive"}, ""},
		{"internal", errors.New("keystore: sqlite: disk I/O error"), 503, errorBody{Message: "internal error"},
			"keystore: sqlite: disk I/O error"},
	}
	for _, tt := range tests {
		for _, target := range []string{statusPath, encPath, decPath + "?key_ID=550e8400-e29b-41d4-a716-446655440000"} {
			t.Run(tt.name+" "+target, func(t *testing.T) {
				e.fake.SetErr(tt.err)
				defer e.fake.SetErr(nil)
				r := e.do(t, saeA, "GET", target, "")
				if r.code != tt.code {
					t.Fatalf("GET %s with kms error %v = %d %s, want %d", target, tt.err, r.code, r.body, tt.code)
				}
				if diff := cmp.Diff(tt.want, r.error(t)); diff != "" {
					t.Errorf("error body (-want +got):\n%s", diff)
				}
				if tt.logged != "" && !strings.Contains(e.logs.String(), tt.logged) {
					t.Errorf("log does not hold the cause %q:\n%s", tt.logged, e.logs.String())
				}
			})
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
	tests := []struct {
		method, path, allow string
	}{
		{"POST", statusPath, "GET"},
		{"PUT", statusPath, "GET"},
		{"HEAD", statusPath, "GET"},
		{"PUT", encPath, "GET, POST"},
		{"DELETE", encPath, "GET, POST"},
		{"PATCH", decPath, "GET, POST"},
		{"OPTIONS", decPath, "GET, POST"},
	}
	for _, tt := range tests {
		r := e.do(t, saeA, tt.method, tt.path, "")
		if r.code != 405 || r.header.Get("Allow") != tt.allow {
			t.Errorf("%s %s = %d Allow %q, want 405 Allow %q", tt.method, tt.path, r.code, r.header.Get("Allow"), tt.allow)
		}
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Errorf("kms was called: %+v", calls)
	}
}

func TestNotFound(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
	for _, path := range []string{
		"/",
		"/admin/",
		"/api/v1/keys/",
		"/api/v1/keys/SAE_B",
		"/api/v1/keys/SAE_B/",
		"/api/v1/keys/SAE_B/keys",
		"/api/v1/keys/SAE_B/status/",
		"/api/v1/keys/SAE_B/status/x",
		"/api/v1/keys/a/b/status",
		"/api/v2/keys/SAE_B/status",
		"/api/v1/keys/SAE_B/STATUS",
	} {
		r := e.do(t, saeA, "GET", path, "")
		if r.code != 404 || r.error(t).Message != "not found" {
			t.Errorf("GET %s = %d %s, want 404", path, r.code, r.body)
		}
	}
}

func TestPathSAEIDDecoded(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
	for _, tt := range []struct{ escaped, want string }{
		{"SAE_B", "SAE_B"},
		{"sae%20b", "sae b"},
		{"urn%3Asae%2Fb", "urn:sae/b"},
		{"%C3%A9t%C3%A9", "été"},
	} {
		e.fake.Reset()
		r := e.do(t, saeA, "GET", "/api/v1/keys/"+tt.escaped+"/status", "")
		calls := e.fake.Calls()
		if r.code != 200 || len(calls) != 1 || calls[0].SAE != qkd.SAEID(tt.want) {
			t.Errorf("GET /api/v1/keys/%s/status = %d, calls %+v; want slave %q", tt.escaped, r.code, calls, tt.want)
		}
	}
}

func TestUnauthorized(t *testing.T) {
	t.Run("no client certificate", func(t *testing.T) {
		e := newEnv(t, tls.VerifyClientCertIfGiven, nil)
		for _, path := range []string{statusPath, encPath, decPath} {
			r := e.do(t, "", "GET", path, "")
			if r.code != 401 || r.error(t).Message != "unauthorized" {
				t.Errorf("GET %s without certificate = %d %s, want 401", path, r.code, r.body)
			}
		}
		if calls := e.fake.Calls(); len(calls) != 0 {
			t.Errorf("kms was called: %+v", calls)
		}
	})
	t.Run("handshake refuses a missing certificate", func(t *testing.T) {
		e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
		resp, err := e.pki.client(t, "").Get(e.ts.URL + statusPath)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET without certificate = %d, want a TLS error", resp.StatusCode)
		}
	})
	t.Run("unknown SAE", func(t *testing.T) {
		e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
		e.fake.SetKnown(saeA, saeB)
		for _, path := range []string{statusPath, encPath, decPath + "?key_ID=550e8400-e29b-41d4-a716-446655440000"} {
			r := e.do(t, saeC, "GET", path, "")
			if r.code != 401 || r.error(t).Message != "unauthorized" {
				t.Errorf("GET %s by unknown SAE = %d %s, want 401", path, r.code, r.body)
			}
		}
	})
	t.Run("handler without verified chain", func(t *testing.T) {
		h := etsi014.New(etsi014.Options{KMS: etsi014test.New()}).Handler()
		leaf := &x509.Certificate{}
		leaf.Subject.CommonName = saeA
		for name, state := range map[string]*tls.ConnectionState{
			"plain HTTP":          nil,
			"no certificate":      {},
			"unverified":          {PeerCertificates: []*x509.Certificate{leaf}},
			"verified without CN": {VerifiedChains: [][]*x509.Certificate{{{}}}},
		} {
			req := httptest.NewRequest("GET", statusPath, nil)
			req.TLS = state
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 401 {
				t.Errorf("%s: GET status = %d, want 401", name, rec.Code)
			}
		}
	})
}

func TestAdmin(t *testing.T) {
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, err := etsi014.Caller(r)
		if err != nil || caller != "operator" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "admin %s", r.URL.Path)
	})
	e := newEnv(t, tls.RequireAndVerifyClientCert, func(o *etsi014.Options) { o.Admin = admin })
	tests := []struct {
		caller, path string
		code         int
		body         string
	}{
		{"operator", "/admin/zeroize", 200, "admin /admin/zeroize"},
		{"operator", "/admin", 200, "admin /admin"},
		{saeA, "/admin/zeroize", 403, "forbidden\n"},
		{"operator", "/administrator", 404, `{"message":"not found"}`},
	}
	for _, tt := range tests {
		r := e.do(t, tt.caller, "POST", tt.path, "")
		if r.code != tt.code || string(r.body) != tt.body {
			t.Errorf("POST %s by %s = %d %q, want %d %q", tt.path, tt.caller, r.code, r.body, tt.code, tt.body)
		}
	}
}

// TestKeysNeverLogged runs successes and every kind of failure with debug
// logging and checks that no delivered key shows in the log.
func TestKeysNeverLogged(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
	var delivered [][]byte
	for range 3 {
		keys := e.do(t, saeA, "GET", encPath+"?number=4", "").keys(t)
		for _, k := range keys {
			delivered = append(delivered, k.Bytes)
		}
		e.do(t, saeC, "GET", decPath+"?key_ID="+keys[0].ID.String(), "") // 401
		e.do(t, saeB, "GET", decPath+"?key_ID="+keys[1].ID.String(), "") // 200
		e.do(t, saeB, "GET", decPath+"?key_ID="+keys[1].ID.String(), "") // 400
	}
	e.fake.SetErr(errors.New("boom"))
	e.do(t, saeA, "GET", encPath, "")
	logs := e.logs.String()
	if !strings.Contains(logs, "boom") {
		t.Fatalf("log lacks the internal error; logging not exercised:\n%s", logs)
	}
	for _, k := range delivered {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(k), fmt.Sprintf("%x", k)} {
			if strings.Contains(logs, enc) {
				t.Fatalf("log holds key bytes %s", enc)
			}
		}
	}
	if err := e.fake.CheckWiped(); err != nil {
		t.Error(err)
	}
}
