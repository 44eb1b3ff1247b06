package telemetry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

func TestMetricsHandler(t *testing.T) {
	m := NewMetrics("A")
	m.InitLink("A-B")
	m.SetLinkSKR("A-B", 20000)
	m.SetMaterialBytes("A-B", MaterialConfirmed, 4096)
	m.SetKeys("A-B", KeysReady, 12)
	m.SetMACSlots("A-B", "A", 64)
	m.AddKeysDelivered(APIETSI014, 3)
	m.IncMACFailures("A-B")
	m.IncPSKTags("A-B")
	m.IncBatches("A-B", BatchMismatch)
	m.AddInternalKeyBytes("A-B", 32)
	m.IncPeerMessages("A-B", "new_key_batch", PeerOK)
	m.SetNodeActive(true)
	m.SetOpenStreams(func() int { return 2 })
	out := scrape(t, m)

	want := []string{
		`qkms_link_skr_bits_per_second{link="A-B",node="A"} 20000`,
		`qkms_link_material_bytes{link="A-B",node="A",state="confirmed"} 4096`,
		`qkms_link_material_bytes{link="A-B",node="A",state="unconfirmed"} 0`,
		`qkms_keys{link="A-B",node="A",state="ready"} 12`,
		`qkms_keys{link="A-B",node="A",state="pending"} 0`,
		`qkms_mac_slots{link="A-B",node="A",sender="A"} 64`,
		`qkms_keys_delivered_total{api="etsi014",node="A"} 3`,
		`qkms_keys_delivered_total{api="etsi004",node="A"} 0`,
		`qkms_etsi004_streams_open{node="A"} 2`,
		`qkms_mac_failures_total{link="A-B",node="A"} 1`,
		`qkms_psk_tags_total{link="A-B",node="A"} 1`,
		`qkms_batches_total{link="A-B",node="A",result="mismatch"} 1`,
		`qkms_batches_total{link="A-B",node="A",result="confirmed"} 0`,
		`qkms_internal_key_bytes_total{link="A-B",node="A"} 32`,
		`qkms_peer_messages_total{link="A-B",node="A",result="ok",type="new_key_batch"} 1`,
		`qkms_node_status{node="A"} 1`,
		"go_goroutines", "process_",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", out)
	}
}

func TestMetricsSeparateRegistries(t *testing.T) {
	a, b := NewMetrics("A"), NewMetrics("B") // would panic on a shared registry
	a.AddKeysDelivered(APIETSI014, 5)
	outA, outB := scrape(t, a), scrape(t, b)
	if !strings.Contains(outA, `qkms_keys_delivered_total{api="etsi014",node="A"} 5`) {
		t.Errorf("node A does not count its keys:\n%s", outA)
	}
	if !strings.Contains(outB, `qkms_keys_delivered_total{api="etsi014",node="B"} 0`) || strings.Contains(outB, `node="A"`) {
		t.Errorf("node B sees node A's series:\n%s", outB)
	}
	if !strings.Contains(outA, `qkms_node_status{node="A"} 0`) {
		t.Error("a new node is not reported inactive")
	}
}

func TestMetricsNeverPanic(t *testing.T) {
	var nilM *Metrics
	m := NewMetrics("\xff")
	for _, mm := range []*Metrics{nilM, m} {
		mm.InitLink("\xffbad")
		mm.SetLinkSKR("\xffbad", 1)
		mm.AddKeysDelivered(APIETSI014, -1) // negative: ignored, not a panic
		mm.AddInternalKeyBytes("l", -5)
		mm.IncPeerMessages("l", "\xfe", PeerError)
		mm.SetNodeActive(false)
		mm.ForgetLink("\xffbad")
	}
	if out := scrape(t, m); strings.Contains(out, "bad") {
		t.Errorf("ForgetLink left series:\n%s", out)
	}
}

func TestForgetLink(t *testing.T) {
	m := NewMetrics("A")
	m.InitLink("A-B")
	m.InitLink("A-C")
	m.IncPeerMessages("A-B", "get_status", PeerOK)
	m.ForgetLink("A-B")
	out := scrape(t, m)
	if strings.Contains(out, `link="A-B"`) || !strings.Contains(out, `link="A-C"`) {
		t.Errorf("after ForgetLink(A-B):\n%s", out)
	}
}
