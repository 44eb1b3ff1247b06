package link_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/qkd"
)

func refusal(err error) kmsproto.Code {
	var r *link.RefusedError
	if errors.As(err, &r) {
		return r.Code
	}
	return 255
}

func TestNewApp(t *testing.T) {
	p := msgPair(t)
	ctx := context.Background()
	app := kmsproto.NewAppReq{App: "SAE_A1>SAE_B1", Master: masterA, Slaves: slavesB, SizeBits: 256,
		QoS: &kmsproto.QoS{MaxBps: 8192}}
	tests := []struct {
		name string
		req  kmsproto.NewAppReq
		want kmsproto.Code // 0: accepted
	}{
		{"new", app, kmsproto.OK},
		{"repeat", app, kmsproto.OK},
		{"slave not attached to the peer", kmsproto.NewAppReq{App: "x", Master: masterA, Slaves: []qkd.SAEID{"SAE_B1", "SAE_X"}, SizeBits: 256}, kmsproto.UnknownSAE},
		{"master attached to the peer", kmsproto.NewAppReq{App: "y", Master: "SAE_B1", Slaves: slavesB}, kmsproto.BadRequest},
		{"no slaves", kmsproto.NewAppReq{App: "z", Master: masterA}, kmsproto.BadRequest},
		{"odd size", kmsproto.NewAppReq{App: "z", Master: masterA, Slaves: slavesB, SizeBits: 7}, kmsproto.BadRequest},
		{"ID of another pair", kmsproto.NewAppReq{App: app.App, Master: "SAE_A2", Slaves: slavesB}, kmsproto.BadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.A.NewApp(ctx, tt.req)
			if got := refusal(err); tt.want == kmsproto.OK && err != nil || tt.want != kmsproto.OK && got != tt.want {
				t.Fatalf("NewApp = %v, want code %v", err, tt.want)
			}
		})
	}
	if diff := cmp.Diff([]kmsproto.NewAppReq{app}, p.B.Apps()); diff != "" {
		t.Errorf("B's applications (-want +got):\n%s", diff)
	}
	if got := p.A.Apps(); len(got) != 0 {
		t.Errorf("A records %d applications of its own announcements", len(got))
	}
}

func TestKeyStreamClosed(t *testing.T) {
	p := readyPair(t)
	ctx := context.Background()
	app := kmsproto.NewAppReq{App: "SAE_A1>SAE_B1", Master: masterA, Slaves: slavesB, SizeBits: 256}
	if err := p.A.NewApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	reserve(t, p, 256, 3)
	reserve(t, p, 512, 1)
	other, err := p.B.Reserve(ctx, "SAE_B1", []qkd.SAEID{"SAE_A1"}, 256, 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsproto.KeyStreamClosedReq{App: app.App, Master: masterA, Slaves: slavesB, Reason: "closed"}
	here, there, err := p.A.CloseApp(ctx, req)
	if err != nil || here != 4 || there != 4 {
		t.Fatalf("CloseApp = %d here, %d there, %v; want 4, 4, nil", here, there, err)
	}
	sameKeys(t, p, nil, 0)
	if got := p.B.Apps(); len(got) != 0 {
		t.Errorf("B still knows %d applications after the close", len(got))
	}
	// The other pair's keys are untouched; a repeated close changes nothing.
	here, there, err = p.A.CloseApp(ctx, req)
	if err != nil || here != 0 || there != 0 {
		t.Fatalf("CloseApp again = %d, %d, %v; want 0, 0, nil", here, there, err)
	}
	for name, st := range map[string]keystore.Store{"A": p.SA, "B": p.SB} {
		keys, err := st.ListKeys(ctx, keystore.KeyFilter{Master: "SAE_B1", Slaves: []qkd.SAEID{"SAE_A1"}})
		if err != nil || len(keys) != len(other) {
			t.Errorf("%s holds %d keys of the other pair after the close, %v; want %d", name, len(keys), err, len(other))
		}
	}
	// Only the master's node closes its pair.
	if _, _, err = p.B.CloseApp(ctx, req); err == nil {
		t.Fatal("CloseApp at the slave's node = nil error")
	}
}
