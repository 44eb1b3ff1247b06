package kmsapi_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http/httptest"
	"testing"

	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
)

// FuzzHandler sends arbitrary requests to the handler (as an authorised
// client): it must not panic, and every error answer is a valid RFC 9457
// problem with the answer's status.
func FuzzHandler(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"GET", base + "/monitor/status?reset=true", ""},
		{"PUT", base + "/control/status", `{"state":"online"}`},
		{"POST", base + "/control/qkd-device/" + devID, deviceBody},
		{"PUT", base + "/control/qkd-device/" + devID, `{"etsi_004":{"source":"a"}}`},
		{"GET", base + "/link/performance/" + linkID + "?entries=2", ""},
		{"POST", base + "/link/relay/" + ksid, relayBody},
		{"PUT", base + "/link/relay/" + ksid, `{"qos_request":{"type":"etsi_004","etsi_004":{}}}`},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	srv := kmsapi.New(kmsapi.Options{Backend: newFake(), Authorize: authorize})
	state := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: operator}}}}}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if len(path) == 0 || path[0] != '/' || !validMethod(method) {
			return
		}
		req := httptest.NewRequest("GET", "/", bytes.NewReader(body))
		req.Method = method
		req.URL.Path, req.URL.RawPath = path, ""
		req.TLS = state
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code < 400 {
			return
		}
		p, err := quicks.DecodeProblem(rec.Body.Bytes())
		if err != nil || p.Status != rec.Code || rec.Header().Get("Content-Type") != quicks.MediaTypeProblem {
			t.Fatalf("%s %s: %d %q %s is not a problem: %v", method, path, rec.Code, rec.Header().Get("Content-Type"), rec.Body, err)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
