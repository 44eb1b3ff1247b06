package controller_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/qkms/qkms/internal/agent"
	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
)

// relayKMS is a node's KMS that records its relay entries.
type relayKMS struct {
	kmsapi.Unimplemented
	devices []quicks.QKDDevice

	mu     sync.Mutex
	relays map[string]quicks.RelayConfig
}

func (k *relayKMS) Status(context.Context, bool) (quicks.KMSStatus, error) {
	return quicks.KMSStatus{State: quicks.StateOnline}, nil
}

func (k *relayKMS) Capabilities(context.Context) (quicks.Capabilities, error) {
	return quicks.Capabilities{KeyRelaySupport: true, AppAPISupport: []quicks.AppAPI{quicks.AppAPIETSI014},
		ETSI014Info: &quicks.ETSI014Info{KMSID: "KME", KeySize: 256, MaxKeyCount: 100, MaxKeyPerRequest: 10, MaxKeySize: 256, MinKeySize: 256}}, nil
}

func (k *relayKMS) QKDDevices(context.Context) (quicks.QKDDeviceList, error) {
	return quicks.QKDDeviceList{QKDDevices: k.devices}, nil
}

func (k *relayKMS) LinkPerformance(context.Context, string, int) (quicks.Performance, error) {
	return quicks.Performance{Current: quicks.PerformanceEntry{Timestamp: time.Now().UTC(), DeltaT: 1000, SKR: 1000, KAV: 1 << 20}}, nil
}

func (k *relayKMS) CreateRelay(_ context.Context, id string, e quicks.RelayConfig) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.relays[id]; ok {
		return quicks.ErrConflict
	}
	k.relays[id] = e
	return nil
}

func (k *relayKMS) ReplaceRelay(_ context.Context, id string, e quicks.RelayConfig) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.relays[id] = e
	return nil
}

func (k *relayKMS) DeleteRelay(_ context.Context, id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.relays, id)
	return nil
}

func (k *relayKMS) relay(id string) (quicks.RelayConfig, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r, ok := k.relays[id]
	return r, ok
}

func authority(n qkd.NodeID) string { return "kms-" + string(n) + ".example:5683" }

// TestAgentsAndController runs the controller with real agents of every
// ring5 node, each in front of a fake KMS: a registration at A's agent
// configures the relay entries of every KMS of the route before it is
// answered.
func TestAgentsAndController(t *testing.T) {
	e := newEnv(t, controller.Options{})
	kms := map[qkd.NodeID]*relayKMS{}
	var quicksA *agentapi.Client
	runCtx, stop := context.WithCancel(context.Background())
	var running sync.WaitGroup
	t.Cleanup(func() { stop(); running.Wait() })
	for _, n := range e.topo.Nodes {
		kme := string(qkd.KMEOf(n.ID))
		k := &relayKMS{relays: map[string]quicks.RelayConfig{}}
		neighbours := map[qkd.NodeID]string{}
		for _, l := range e.topo.LinksAt(n.ID) {
			k.devices = append(k.devices, quicks.QKDDevice{DeviceID: uuid.NewString(), LinkID: uuid.NewString(), Label: string(l.ID),
				State: quicks.StateOnline, Interface: quicks.InterfaceETSI004, Protocol: "BB84", PeerKMS: string(qkd.KMEOf(l.Other(n.ID)))})
			neighbours[l.Other(n.ID)] = authority(l.Other(n.ID))
		}
		kms[n.ID] = k
		kmsSrv := kmsapi.New(kmsapi.Options{Backend: k, Authorize: func(cn string, _ *http.Request) bool { return cn == kme }})
		kmsURL := serveTLS(t, kmsSrv.Handler(), e.pki.serverTLS(t, kme)).URL
		nodeTLS := e.pki.clientTLS(t, kme)
		kc, err := kmsapi.NewClient(kmsapi.ClientOptions{BaseURL: kmsURL, TLSConfig: nodeTLS})
		if err != nil {
			t.Fatal(err)
		}
		cc, err := controller.NewClient(e.srv.URL, nodeTLS)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		ag, err := agent.New(agent.Options{Node: n.ID, KMS: kc, Controller: cc, URL: "https://" + srv.Listener.Addr().String(),
			Neighbours: neighbours, KMSCN: kme, ControllerCN: controllerCN, Interval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		srv.Config.Handler = ag.Handler()
		srv.TLS = e.pki.serverTLS(t, kme)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		t.Cleanup(kc.CloseIdleConnections)
		t.Cleanup(cc.CloseIdleConnections)
		running.Go(func() { ag.Run(runCtx) })
		if n.ID == "A" {
			if quicksA, err = agentapi.NewClient(agentapi.ClientOptions{BaseURL: srv.URL, TLSConfig: nodeTLS}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(quicksA.CloseIdleConnections)
		}
	}
	waitFor(t, "every node online", func() bool {
		for _, n := range e.topo.Nodes {
			if !e.ctrl.Online(n.ID) {
				return false
			}
		}
		return true
	})
	res, err := quicksA.Register(ctx(t), quicks.LinkRegistration{Source: "SAE_A1", Destination: []string{"SAE_C1"},
		QoSRequest:  quicks.QoSData{Type: quicks.QoSETSI014, ETSI014: &quicks.ETSI014QoS{Number: 1, Size: 256}},
		Performance: []quicks.LinkKPI{{LinkID: uuid.NewString()}}})
	if err != nil {
		t.Fatalf("QUICKS Register at A = %v", err)
	}
	if !cmp.Equal(res.NextNodeInfo, []string{authority("B")}) {
		t.Errorf("next_node_info = %v, want [%s]", res.NextNodeInfo, authority("B"))
	}
	entry := func(hops ...qkd.NodeID) quicks.RelayConfig {
		rc := quicks.RelayConfig{Source: "SAE_A1", Destination: []string{"SAE_C1"}, NextNodeInfo: []string{},
			Route: []string{"A", "B", "C"}} // the configured route, for signed paths
		for _, h := range hops {
			rc.NextNodeInfo = append(rc.NextNodeInfo, authority(h))
		}
		return rc
	}
	want := map[qkd.NodeID]quicks.RelayConfig{"A": entry("B"), "B": entry("A", "C"), "C": entry("B")}
	for _, n := range e.topo.Nodes {
		got, ok := kms[n.ID].relay(res.KeyStreamID)
		w, on := want[n.ID]
		if ok != on {
			t.Errorf("KMS %s has a relay entry: %v, want %v", n.ID, ok, on)
			continue
		}
		if diff := cmp.Diff(w, got, equateEmpty); on && diff != "" {
			t.Errorf("KMS %s relay entry (-want +got):\n%s", n.ID, diff)
		}
	}
	// Closing at the source removes the entries.
	if err := quicksA.DeleteStream(ctx(t), res.KeyStreamID); err != nil {
		t.Fatalf("DeleteStream = %v", err)
	}
	waitFor(t, "the relay entries to be removed", func() bool {
		for _, k := range kms {
			if _, ok := k.relay(res.KeyStreamID); ok {
				return false
			}
		}
		return true
	})
}
