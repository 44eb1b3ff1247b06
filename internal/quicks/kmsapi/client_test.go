package kmsapi_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/quickstest"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
)

func newClient(t *testing.T, e *env, cn string) *kmsapi.Client {
	t.Helper()
	c, err := kmsapi.NewClient(kmsapi.ClientOptions{BaseURL: e.url(base), TLSConfig: e.PKI.ClientTLS(t, cn)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestClientRoundTrip: kmsapi.Client against kmsapi.Server carries every
// operation's arguments and answers unchanged.
func TestClientRoundTrip(t *testing.T) {
	f := newFake()
	e := newEnv(t, f)
	c := newClient(t, e, agent)
	ctx := context.Background()

	caps, err := c.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(newFake().caps, caps); diff != "" {
		t.Errorf("Capabilities mismatch (-want +got):\n%s", diff)
	}
	if v, err := c.Version(ctx); err != nil || v.Version != quicks.Version {
		t.Errorf("Version() = %v, %v", v, err)
	}
	if d, err := c.DeviceInfo(ctx); err != nil || d.Vendor != "qkms" {
		t.Errorf("DeviceInfo() = %v, %v", d, err)
	}
	if s, err := c.Status(ctx, true); err != nil || s.State != quicks.StateOnline || !f.last().reset {
		t.Errorf("Status(true) = %v, %v; backend reset = %v", s, err, f.last().reset)
	}
	lf, err := c.Log(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(lf.Body)
	if lf.ContentType != "text/plain; charset=utf-8" || len(b) == 0 {
		t.Errorf("Log() = %q %q", lf.ContentType, b)
	}
	devs, err := c.QKDDevices(ctx)
	if err != nil || !cmp.Equal(newFake().devs, devs) {
		t.Errorf("QKDDevices() = %v, %v", devs, err)
	}
	perf, err := c.LinkPerformance(ctx, linkID, 1)
	if err != nil || len(perf.History) != 1 || !perf.Current.Timestamp.Equal(entry.Timestamp) || perf.Current.KAV != entry.KAV {
		t.Errorf("LinkPerformance(1) = %+v, %v", perf, err)
	}
	if f.last().entries != 1 {
		t.Errorf("backend entries = %d, want 1", f.last().entries)
	}

	dev := quicks.DeviceConnection{LinkID: linkID, Label: "l", State: quicks.StateOnline, Interface: quicks.InterfaceETSI014,
		Protocol: "https", PeerKMS: "KME_B", ServerAddress: "127.0.0.1:8443",
		ETSI014: &quicks.DeviceETSI014{PrimaryID: "SAE_A1", SecondaryID: "SAE_B1"}}
	relay := quicks.RelayConfig{Source: "SAE_A1", Destination: []string{"SAE_C1"}, NextNodeInfo: []string{},
		QoSRequest: &quicks.QoSData{Type: quicks.QoSETSI004, ETSI004: &quicks.ETSI004QoS{KeyChunkSize: 32, MaxBPS: 0, MinBPS: 0, TTL: 5}}}
	ops := []struct {
		name string
		do   func() error
		want call
	}{
		{"SetStatus", func() error { return c.SetStatus(ctx, quicks.StateStopped) }, call{op: "SetStatus", state: quicks.StateStopped}},
		{"RegisterDevice", func() error { return c.RegisterDevice(ctx, devID, dev) }, call{op: "RegisterDevice", id: devID, dev: dev}},
		{"UpdateDevice", func() error { return c.UpdateDevice(ctx, devID, quicks.DeviceConnection{Label: "new"}) }, call{op: "UpdateDevice", id: devID, dev: quicks.DeviceConnection{Label: "new"}}},
		{"RemoveDevice", func() error { return c.RemoveDevice(ctx, devID) }, call{op: "RemoveDevice", id: devID}},
		{"CreateRelay", func() error { return c.CreateRelay(ctx, ksid, relay) }, call{op: "CreateRelay", id: ksid, relay: relay}},
		{"ReplaceRelay", func() error { return c.ReplaceRelay(ctx, ksid, quicks.RelayConfig{NextNodeInfo: []string{"h:1"}}) }, call{op: "ReplaceRelay", id: ksid, relay: quicks.RelayConfig{NextNodeInfo: []string{"h:1"}}}},
		{"DeleteRelay", func() error { return c.DeleteRelay(ctx, ksid) }, call{op: "DeleteRelay", id: ksid}},
	}
	for _, op := range ops {
		if err := op.do(); err != nil {
			t.Errorf("%s() = %v", op.name, err)
			continue
		}
		got := f.last()
		if got.caller != agent {
			t.Errorf("%s: caller %q, want %q", op.name, got.caller, agent)
		}
		got.caller = ""
		if diff := cmp.Diff(op.want, got, cmp.AllowUnexported(call{})); diff != "" {
			t.Errorf("%s: backend call mismatch (-want +got):\n%s", op.name, diff)
		}
	}
}

func TestClientErrors(t *testing.T) {
	f := newFake()
	f.setErr("LinkPerformance", quicks.ErrNotFound)
	f.setErr("SetStatus", quicks.ErrForbidden)
	e := newEnv(t, f)
	c := newClient(t, e, operator)
	ctx := context.Background()

	_, err := c.LinkPerformance(ctx, linkID, kmsapi.AllHistory)
	var p *quicks.Problem
	if !errors.Is(err, quicks.ErrNotFound) || !errors.As(err, &p) || p.Status != http.StatusNotFound {
		t.Errorf("LinkPerformance(unknown) = %v, want a 404 *quicks.Problem matching ErrNotFound", err)
	}
	if err := c.SetStatus(ctx, quicks.StateOffline); !errors.Is(err, quicks.ErrForbidden) {
		t.Errorf("SetStatus() = %v, want ErrForbidden", err)
	}
	// Refused before sending.
	n := f.count()
	for name, err := range map[string]error{
		"CreateRelay":  c.CreateRelay(ctx, ksid, quicks.RelayConfig{Source: "a"}),
		"RemoveDevice": c.RemoveDevice(ctx, "dev-1"),
		"SetStatus":    c.SetStatus(ctx, "sleeping"),
	} {
		if !errors.Is(err, quicks.ErrBadRequest) {
			t.Errorf("%s(invalid) = %v, want ErrBadRequest", name, err)
		}
	}
	if f.count() != n {
		t.Error("an invalid request reached the server")
	}
	// Not authorised.
	_, err = newClient(t, e, "SAE_A1").Version(ctx)
	if !errors.Is(err, quicks.ErrForbidden) {
		t.Errorf("Version() as SAE_A1 = %v, want ErrForbidden", err)
	}
}

// TestClientForeignServer: answers of a server that is not ours.
func TestClientForeignServer(t *testing.T) {
	p := quickstest.NewPKI(t)
	addr := quickstest.ServeHandler(t, p.ServerTLS(t, "KME_X"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case base + "/monitor/device-info": // 200 but not the published message
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"vendor":"x","model":"y","version":"one"}`)
		case base + "/monitor/status": // a web server's 404 without a problem body
			http.NotFound(w, r)
		default:
			quicks.WriteProblem(w, quicks.NewProblem(http.StatusServiceUnavailable, "maintenance"))
		}
	}))
	c, err := kmsapi.NewClient(kmsapi.ClientOptions{BaseURL: "https://" + addr, TLSConfig: p.ClientTLS(t, operator)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx := context.Background()
	if _, err := c.DeviceInfo(ctx); !errors.Is(err, quicks.ErrInvalidAnswer) || errors.Is(err, quicks.ErrBadRequest) {
		t.Errorf("DeviceInfo() = %v, want ErrInvalidAnswer only", err)
	}
	if _, err := c.Status(ctx, false); !errors.Is(err, quicks.ErrNotFound) {
		t.Errorf("Status() = %v, want ErrNotFound", err)
	}
	_, err = c.Capabilities(ctx)
	var pr *quicks.Problem
	if !errors.As(err, &pr) || pr.Status != 503 || pr.Detail != "maintenance" {
		t.Errorf("Capabilities() = %v, want the 503 problem", err)
	}
}

func TestNewClient(t *testing.T) {
	p := quickstest.NewPKI(t)
	for _, u := range []string{"http://h/api/v2/sdn", "h:1", "https://", "https://h/?a=b"} {
		if _, err := kmsapi.NewClient(kmsapi.ClientOptions{BaseURL: u, TLSConfig: p.ClientTLS(t, operator)}); err == nil {
			t.Errorf("NewClient(%q) = nil error", u)
		}
	}
	if _, err := kmsapi.NewClient(kmsapi.ClientOptions{BaseURL: "https://h"}); err == nil {
		t.Error("NewClient without TLS = nil error")
	}
}
