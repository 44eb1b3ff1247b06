package agentapi_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http/httptest"
	"testing"

	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
)

// FuzzHandler sends arbitrary requests to the handler (as the agent's
// KMS): it must not panic, and every error answer is a valid RFC 9457
// problem with the answer's status.
func FuzzHandler(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"GET", base + "/link/status?master_sae_id=a&slave_sae_id=b", ""},
		{"POST", base + "/link/registration", registerBody},
		{"PATCH", base + "/link/registration", `{"key_stream_id":"` + ksid + `","destination":["b"]}`},
		{"DELETE", base + "/link/" + ksid, ""},
		{"POST", base + "/notification/registration", kmsBody},
		{"PATCH", base + "/notification/status", `{"state":"online","reason":"r"}`},
		{"PUT", base + "/notification/event", `{"level":"info","code":1,"reason":"r"}`},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	srv := agentapi.New(agentapi.Options{Backend: newFake(), Authorize: authorize})
	state := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: kms}}}}}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if len(path) == 0 || path[0] != '/' || method == "" {
			return
		}
		for _, c := range method {
			if c < 'A' || c > 'Z' {
				return
			}
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
