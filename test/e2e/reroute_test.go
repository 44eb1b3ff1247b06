package e2e

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sae"
	"github.com/qkms/qkms/internal/telemetry"
)

// TestRerouteWhenALinkIsCut: on ring5, the QKD link on the route of a pair
// stops producing key; the controller notices, reroutes the pair's key
// stream, and new requests are served over the other route with identical
// keys. With every route cut, enc_keys answers 503 with a clear message.
func TestRerouteWhenALinkIsCut(t *testing.T) {
	var logs syncBuffer
	n := startNet(t, "ring5.json", telemetry.NewLogger(&logs, slog.LevelInfo, "json"), nil)
	master, slave := qkd.SAEID("SAE_A1"), qkd.SAEID("SAE_C1")
	pairKeys(t, n.Info, master, slave, 2)
	route, ok := n.Route(master, slave)
	if !ok || len(route) < 3 {
		t.Fatalf("route of %s→%s = %v, want a relayed route", master, slave, route)
	}
	// Cut the first link of the route: stop its QKD link pair.
	var cutLink qkd.LinkID
	for id, sim := range n.Sims {
		a, b := linkEnds(t, n, id)
		if (a == route[0] && b == route[1]) || (a == route[1] && b == route[0]) {
			sim.Pause(true)
			cutLink = id
		}
	}
	if cutLink == "" {
		t.Fatalf("no simulator for the first hop of %v", route)
	}
	waitFor(t, 60*time.Second, "a new route that avoids "+string(cutLink), func() bool {
		r, ok := n.Route(master, slave)
		return ok && !(slices.Contains(r, route[0]) && len(r) > 1 && r[1] == route[1])
	})
	newRoute, _ := n.Route(master, slave)
	t.Logf("route %v → %v after cutting %s", route, newRoute, cutLink)
	pairKeys(t, n.Info, master, slave, 2)
	if !strings.Contains(logs.String(), "QKD link status changed") {
		t.Errorf("the controller did not report the link going down")
	}

	// Cut every link of A: no route is left, enc_keys answers 503.
	for id, sim := range n.Sims {
		a, b := linkEnds(t, n, id)
		if a == "A" || b == "A" {
			sim.Pause(true)
		}
	}
	m := saeOf(n.Info, master)
	mc, err := sae.New(nodeOf(n.Info, m.Node).ETSI014URL, n.Info.CA, m.Cert, m.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	waitFor(t, 90*time.Second, "503 for a pair without any route", func() bool {
		_, err := mc.EncKeys(context.Background(), string(slave), 128, 1024) // no such keys were relayed before
		var e *sae.Error
		return errors.As(err, &e) && e.Code == 503 && strings.Contains(e.Message, "no QKD connection available")
	})
	// The controller reports it, and so does the KMS (QUICKS
	// notification/event through its agent).
	waitFor(t, 30*time.Second, "notifications of the missing route", func() bool {
		notes := n.Controller().Notifications()
		return notified(notes, "no route for SAE_A1 → SAE_C1") && notified(notes, "KMS of A: no key stream")
	})
}

// linkEnds returns the two nodes of a topology link.
func linkEnds(t *testing.T, n *netsim.Network, id qkd.LinkID) (qkd.NodeID, qkd.NodeID) {
	t.Helper()
	l, ok := loadTopology(t, "ring5.json").Link(id)
	if !ok {
		t.Fatalf("unknown link %s", id)
	}
	return l.A, l.B
}
