package kmsapi_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"

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
	*quickstest.Env
	srv *kmsapi.Server
}

func newEnv(t *testing.T, b kmsapi.Backend) *env {
	t.Helper()
	e := &env{}
	e.Env = quickstest.NewEnv(t, "KME_A", operator, func(cfg *tls.Config) func(context.Context, net.Listener) error {
		e.srv = kmsapi.New(kmsapi.Options{Backend: b, Authorize: authorize, TLSConfig: cfg, MaxBodyBytes: 64 << 10})
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
