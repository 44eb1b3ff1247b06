package agentapi_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
)

func newClient(t *testing.T, e *env, cn string) *agentapi.Client {
	t.Helper()
	c, err := agentapi.NewClient(agentapi.ClientOptions{BaseURL: "https://" + e.Addr, TLSConfig: e.PKI.ClientTLS(t, cn)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestRoundTrip: agentapi.Client against agentapi.Server; every operation
// arrives at the backend as the KMS sent it, and the answers come back
// unchanged.
func TestRoundTrip(t *testing.T) {
	f := newFake()
	e := newEnv(t, f)
	c := newClient(t, e, kms)
	ctx := context.Background()
	want := newFake()

	if v, err := c.Version(ctx); err != nil || v.Version != quicks.Version {
		t.Errorf("Version() = %v, %v", v, err)
	}
	st, err := c.LinkStatus(ctx, "SAE_A1", "SAE C/1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.status, st); diff != "" {
		t.Errorf("LinkStatus mismatch (-want +got):\n%s", diff)
	}
	if got := f.last(); got.master != "SAE_A1" || got.slave != "SAE C/1" {
		t.Errorf("backend LinkStatus(%q, %q)", got.master, got.slave)
	}

	reg := quicks.LinkRegistration{Source: "SAE_A1", Destination: []string{"SAE_C1", "SAE_D1"},
		QoSRequest:  quicks.QoSData{Type: quicks.QoSETSI004, ETSI004: &quicks.ETSI004QoS{KeyChunkSize: 32, MaxBPS: 0, MinBPS: 0, TTL: 5, Priority: 3}},
		Performance: []quicks.LinkKPI{{LinkID: "7184f8e9-4503-45d6-a399-afb9c0e61d06", CurrentKPI: &entry}},
		Options:     quicks.RegistrationOptions{quicks.OptionMultipath: true, "hybrid_pqc": true}}
	res, err := c.Register(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.result, res); diff != "" {
		t.Errorf("Register result mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(reg, f.last().reg); diff != "" {
		t.Errorf("backend registration mismatch (-want +got):\n%s", diff)
	}

	cfg, err := c.NotifyRegistration(ctx, quicks.KMSRegistration{KMSID: kmsID,
		Model: quicks.KMSModel{DeviceVendor: "qkms", DeviceModel: "qkms KMS", DeviceVersion: "0.9.0"}})
	if err != nil || string(cfg) != "node: A\n" {
		t.Errorf("NotifyRegistration() = %q, %v", cfg, err)
	}

	ops := []struct {
		name string
		do   func() error
		want call
	}{
		{"PatchRegistration", func() error {
			return c.PatchRegistration(ctx, quicks.RegistrationUpdate{KeyStreamID: ksid, Destination: []string{"SAE_C1"}})
		}, call{op: "PatchRegistration", patch: quicks.RegistrationUpdate{KeyStreamID: ksid, Destination: []string{"SAE_C1"}}}},
		{"DeleteStream", func() error { return c.DeleteStream(ctx, ksid) }, call{op: "DeleteStream", id: ksid}},
		{"NotifyStatus", func() error {
			return c.NotifyStatus(ctx, quicks.StatusNotification{State: string(quicks.StateStopped), Reason: "maintenance"})
		}, call{op: "NotifyStatus", status: quicks.StatusNotification{State: "stopped", Reason: "maintenance"}}},
		{"NotifyEvent", func() error {
			return c.NotifyEvent(ctx, quicks.Event{Level: quicks.LevelCritical, Code: intp(0), Reason: "MAC failure"})
		}, call{op: "NotifyEvent", event: quicks.Event{Level: quicks.LevelCritical, Code: intp(0), Reason: "MAC failure"}}},
	}
	for _, op := range ops {
		if err := op.do(); err != nil {
			t.Errorf("%s() = %v", op.name, err)
			continue
		}
		got := f.last()
		if got.caller != kms {
			t.Errorf("%s: caller %q, want %q", op.name, got.caller, kms)
		}
		got.caller = ""
		if diff := cmp.Diff(op.want, got, cmp.AllowUnexported(call{})); diff != "" {
			t.Errorf("%s: backend call mismatch (-want +got):\n%s", op.name, diff)
		}
	}
}

// TestRoundTripErrors: problems of the agent come back as *quicks.Problem
// errors matching the sentinels; invalid requests never leave the KMS.
func TestRoundTripErrors(t *testing.T) {
	f := newFake()
	f.setErr("DeleteStream", quicks.ErrNotFound)
	f.setErr("Register", quicks.ErrNotSupported)
	e := newEnv(t, f)
	c := newClient(t, e, kms)
	ctx := context.Background()

	err := c.DeleteStream(ctx, ksid)
	var p *quicks.Problem
	if !errors.Is(err, quicks.ErrNotFound) || !errors.As(err, &p) || p.Status != http.StatusNotFound || p.Title != "Not Found" {
		t.Errorf("DeleteStream(unknown) = %v, want a 404 problem", err)
	}
	reg := quicks.LinkRegistration{Source: "a", Destination: []string{"b"}, QoSRequest: quicks.QoSData{Type: quicks.QoSETSI014},
		Performance: []quicks.LinkKPI{{}}}
	if _, err := c.Register(ctx, reg); !errors.Is(err, quicks.ErrNotSupported) {
		t.Errorf("Register() = %v, want ErrNotSupported", err)
	}

	n := f.count()
	for name, err := range map[string]error{
		"DeleteStream":      c.DeleteStream(ctx, "ks-1"),
		"PatchRegistration": c.PatchRegistration(ctx, quicks.RegistrationUpdate{KeyStreamID: ksid}),
		"NotifyEvent":       c.NotifyEvent(ctx, quicks.Event{Level: "loud", Reason: "x"}),
		"NotifyStatus":      c.NotifyStatus(ctx, quicks.StatusNotification{State: "online"}),
		"Register":          func() error { _, err := c.Register(ctx, quicks.LinkRegistration{Source: "a"}); return err }(),
		"LinkStatus":        func() error { _, err := c.LinkStatus(ctx, "", "b"); return err }(),
		"NotifyRegistration": func() error {
			_, err := c.NotifyRegistration(ctx, quicks.KMSRegistration{KMSID: "KME_A"})
			return err
		}(),
	} {
		if !errors.Is(err, quicks.ErrBadRequest) {
			t.Errorf("%s(invalid) = %v, want ErrBadRequest", name, err)
		}
	}
	if f.count() != n {
		t.Error("an invalid request reached the agent")
	}

	if _, err := newClient(t, e, "KME_B").Version(ctx); !errors.Is(err, quicks.ErrForbidden) {
		t.Errorf("Version() as KME_B = %v, want ErrForbidden", err)
	}
}

// A Client is a Backend: a proxy agent that forwards to another agent.
func TestClientAsBackend(t *testing.T) {
	f := newFake()
	inner := newEnv(t, f)
	proxy := newEnv(t, newClient(t, inner, kms))
	c := newClient(t, proxy, kms)
	res, err := c.Register(context.Background(), quicks.LinkRegistration{Source: "a", Destination: []string{"b"},
		QoSRequest: quicks.QoSData{Type: quicks.QoSETSI014, ETSI014: &quicks.ETSI014QoS{Number: 1, Size: 256}}, Performance: []quicks.LinkKPI{{}}})
	if err != nil || res.KeyStreamID != ksid {
		t.Errorf("Register via proxy = %v, %v", res, err)
	}
	f.setErr("DeleteStream", quicks.ErrNotFound)
	if err := c.DeleteStream(context.Background(), ksid); !errors.Is(err, quicks.ErrNotFound) {
		t.Errorf("DeleteStream via proxy = %v, want ErrNotFound", err)
	}
}
