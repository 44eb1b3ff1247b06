package kmsapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/quickstest"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
)

// Client certificate CNs: the node allows the operator and its agent.
const (
	operator = "operator"
	agent    = "sdn-agent-A"
)

func authorize(cn string, _ *http.Request) bool { return cn == operator || cn == agent }

// env is a KMS server on a loopback port over real TLS 1.3.
type env struct {
	pki    *quickstest.PKI
	srv    *kmsapi.Server
	addr   string
	client *http.Client // operator
}

func newEnv(t *testing.T, b kmsapi.Backend) *env {
	t.Helper()
	p := quickstest.NewPKI(t)
	srv := kmsapi.New(kmsapi.Options{Backend: b, Authorize: authorize, TLSConfig: p.ServerTLS(t, "KME_A"), MaxBodyBytes: 64 << 10})
	e := &env{pki: p, srv: srv}
	e.addr = quickstest.Serve(t, srv.Serve)
	e.client = quickstest.HTTPClient(t, p.ClientTLS(t, operator))
	return e
}

func (e *env) url(path string) string { return "https://" + e.addr + path }

func (e *env) do(t *testing.T, method, path, body string) quickstest.Answer {
	t.Helper()
	return quickstest.Do(t, e.client, method, e.url(path), body)
}

// wantProblem checks an RFC 9457 answer: status, media type, the published
// error-response members, and a detail that contains detail.
func wantProblem(t *testing.T, a quickstest.Answer, status int, detail string) {
	t.Helper()
	if a.Status != status || a.ContentType != quicks.MediaTypeProblem {
		t.Errorf("answer %d %q, want %d %s: %s", a.Status, a.ContentType, status, quicks.MediaTypeProblem, a.Body)
		return
	}
	want := map[string]any{"type": "string", "title": "string", "status": "number", "detail": "string"}
	if diff := cmp.Diff(want, quickstest.TypeTree(t, a.Body)); diff != "" {
		t.Errorf("problem members mismatch (-want +got):\n%s", diff)
	}
	p, err := quicks.DecodeProblem(a.Body)
	if err != nil {
		t.Fatalf("DecodeProblem(%s) = %v", a.Body, err)
	}
	if p.Status != status || !strings.Contains(p.Detail, detail) {
		t.Errorf("problem = %+v, want status %d and detail containing %q", p, status, detail)
	}
}
