package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/node"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/topology"
)

// line3: A – B – C, 16 kbit/s (2000 B/s) per link, one SAE per node.
const line3 = `{"name": "line3",
 "nodes": [{"id": "A"}, {"id": "B"}, {"id": "C"}],
 "links": [{"id": "A-B", "a": "A", "b": "B", "skr_bps": 16000}, {"id": "B-C", "a": "B", "b": "C", "skr_bps": 16000}],
 "saes": [{"id": "SAE_A1", "node": "A"}, {"id": "SAE_B1", "node": "B"}, {"id": "SAE_C1", "node": "C"}]}`

const linkRateBytes = 16000 / 8

type env struct {
	t    *testing.T
	net  *netsim.Network
	ca   string
	op   *http.Client // operator
	kme  map[qkd.NodeID]*http.Client
	sae  map[qkd.SAEID]*http.Client
	base map[qkd.NodeID]string // https://host:port/api/v2/sdn
	peer map[qkd.NodeID]string // peer_addr of each node
}

func client(t *testing.T, ca, cert, key string) *http.Client {
	t.Helper()
	cfg, err := pki.ClientTLSConfig(ca, cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

func up(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a three-node network")
	}
	topo, err := topology.Parse([]byte(line3))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := netsim.Up(ctx, netsim.Options{Topology: topo, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	e := &env{t: t, net: n, ca: n.Info.CA, kme: map[qkd.NodeID]*http.Client{}, sae: map[qkd.SAEID]*http.Client{},
		base: map[qkd.NodeID]string{}, peer: map[qkd.NodeID]string{}}
	e.op = client(t, e.ca, n.Info.Operator.Cert, n.Info.Operator.Key)
	for _, s := range n.Info.SAEs {
		e.sae[s.ID] = client(t, e.ca, s.Cert, s.Key)
	}
	for _, ni := range n.Info.Nodes {
		kme := string(ni.KMEID)
		e.kme[ni.ID] = client(t, e.ca, filepath.Join(dir, "pki", kme+".pem"), filepath.Join(dir, "pki", kme+"-key.pem"))
		a := n.Nodes[ni.ID].Addrs().QUICKS
		if a == "" || ni.KMSSDNURL != "https://"+a+quicks.BasePath {
			t.Fatalf("node %s: QUICKS address %q, kms_sdn_url %q", ni.ID, a, ni.KMSSDNURL)
		}
		e.base[ni.ID] = ni.KMSSDNURL
		e.peer[ni.ID] = ni.PeerAddr
	}
	return e
}

type reply struct {
	code int
	body []byte
	ct   string
}

func (e *env) do(c *http.Client, method, url string, body any) reply {
	e.t.Helper()
	var rd io.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, body: b, ct: resp.Header.Get("Content-Type")}
}

func (e *env) get(c *http.Client, url string) reply {
	e.t.Helper()
	return e.do(c, http.MethodGet, url, nil)
}

func (e *env) want(r reply, code int, what string) {
	e.t.Helper()
	if r.code != code {
		e.t.Fatalf("%s: status %d, want %d: %s", what, r.code, code, r.body)
	}
}

// object decodes a JSON object and checks that it has every key.
func (e *env) object(r reply, what string, keys ...string) map[string]any {
	e.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		e.t.Fatalf("%s: %v: %s", what, err, r.body)
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			e.t.Errorf("%s: no %q in %s", what, k, r.body)
		}
	}
	return m
}

// problem checks an RFC 9457 answer.
func (e *env) problem(r reply, code int, what string) map[string]any {
	e.t.Helper()
	e.want(r, code, what)
	if !strings.HasPrefix(r.ct, quicks.MediaTypeProblem) {
		e.t.Errorf("%s: Content-Type %q, want %s", what, r.ct, quicks.MediaTypeProblem)
	}
	return e.object(r, what, "title", "status", "detail")
}

func TestQUICKSMonitor(t *testing.T) {
	e := up(t)
	a := e.base["A"]

	v := e.object(func() reply { r := e.get(e.op, a+"/version"); e.want(r, 200, "version"); return r }(), "version", "version")
	if v["version"] != quicks.Version {
		t.Errorf("version = %v", v["version"])
	}

	r := e.get(e.op, a+"/monitor/capabilities")
	e.want(r, 200, "capabilities")
	caps := e.object(r, "capabilities", "key_relay_support", "app_api_support", "etsi_014_info", "capabilities_extension")
	if caps["key_relay_support"] != true || !slices.Equal(toStrings(caps["app_api_support"]), []string{"etsi_014"}) {
		t.Errorf("capabilities = %s", r.body)
	}
	if ext := toStrings(caps["capabilities_extension"]); !slices.Equal(ext, []string{"its_mac:poly1305", "relay:otp_hop_by_hop", "relay:multicast", "relay:multipath", "hybrid_pqc:ML-KEM-768,ML-DSA-65,xor-shake256"}) {
		t.Errorf("capabilities_extension = %v", ext)
	}
	info, _ := caps["etsi_014_info"].(map[string]any)
	for _, k := range []string{"kms_id", "key_size", "stored_key_count", "max_key_count", "max_key_per_request", "max_key_size", "min_key_size", "max_sae_id_count"} {
		if _, ok := info[k]; !ok {
			t.Errorf("etsi_014_info: no %q", k)
		}
	}
	if info["kms_id"] != "KME_A" || info["key_size"] != float64(256) || info["stored_key_count"].(float64) <= 0 {
		t.Errorf("etsi_014_info = %v", info)
	}

	r = e.get(e.op, a+"/monitor/device-info")
	e.want(r, 200, "device-info")
	di := e.object(r, "device-info", "vendor", "model", "version")
	if di["vendor"] != "qkms" || di["model"] != "qkms" || di["version"] != node.DefaultVersion {
		t.Errorf("device-info = %s", r.body)
	}

	r = e.get(e.op, a+"/monitor/status")
	e.want(r, 200, "status")
	st := e.object(r, "status", "state", "operation")
	if st["state"] != "online" || st["operation"] != "normal operation" {
		t.Errorf("status = %s", r.body)
	}

	r = e.get(e.op, a+"/monitor/log")
	e.want(r, 200, "log")
	var lines []map[string]any
	if err := json.Unmarshal(r.body, &lines); err != nil || len(lines) == 0 || !strings.HasPrefix(r.ct, "application/json") {
		t.Fatalf("log (%s): %v: %.300s", r.ct, err, r.body)
	}
	if !slices.ContainsFunc(lines, func(m map[string]any) bool { return m["msg"] == "node running" && m["node"] == "A" }) {
		t.Errorf("log lacks the node's start record: %.500s", r.body)
	}

	// A module is online once the node saw it deliver key (sampled every
	// second): wait for that, with a deadline.
	var devs struct {
		QKDDevices []map[string]any `json:"qkd_devices"`
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		r = e.get(e.op, e.base["B"]+"/monitor/qkd-device")
		e.want(r, 200, "qkd-device")
		devs.QKDDevices = nil
		if err := json.Unmarshal(r.body, &devs); err != nil || len(devs.QKDDevices) != 2 {
			t.Fatalf("qkd-device: %v: %s", err, r.body)
		}
		if (devs.QKDDevices[0]["state"] == "online" && devs.QKDDevices[1]["state"] == "online") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
	for i, d := range devs.QKDDevices {
		for _, k := range []string{"device_id", "link_id", "label", "state", "interface", "protocol", "peer_kms"} {
			if _, ok := d[k]; !ok {
				t.Errorf("qkd_devices[%d]: no %q", i, k)
			}
		}
		lid := qkd.LinkID(d["label"].(string))
		if d["link_id"] != node.LinkUUID(lid) || d["device_id"] != node.DeviceUUID("B", lid) ||
			d["interface"] != "etsi_004" || d["protocol"] != "coap+tcp" || d["state"] != "online" {
			t.Errorf("qkd_devices[%d] = %v", i, d)
		}
	}
	if p := []any{devs.QKDDevices[0]["peer_kms"], devs.QKDDevices[1]["peer_kms"]}; p[0] != "KME_A" || p[1] != "KME_C" {
		t.Errorf("peer_kms = %v", p)
	}
	// Both ends name a link alike.
	if node.LinkUUID("A-B") == node.LinkUUID("B-C") || node.DeviceUUID("A", "A-B") == node.DeviceUUID("B", "A-B") {
		t.Error("UUIDs collide")
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestQUICKSAuthAndErrors(t *testing.T) {
	e := up(t)
	a := e.base["A"]
	// The node's own KME certificate (its SDN agent) is allowed; an SAE is not.
	e.want(e.get(e.kme["A"], a+"/monitor/status"), 200, "own KME cert")
	e.problem(e.get(e.sae["SAE_A1"], a+"/monitor/status"), 403, "SAE cert")
	e.problem(e.get(e.kme["B"], a+"/monitor/status"), 403, "another KME's cert")
	// Bad input.
	e.problem(e.do(e.op, http.MethodPut, a+"/control/status", `{"state":"sleeping"}`), 400, "bad state")
	e.problem(e.do(e.op, http.MethodPut, a+"/control/status", `{`), 400, "malformed JSON")
	e.problem(e.get(e.op, a+"/link/performance/not-a-uuid"), 400, "non-UUID link_id")
	e.problem(e.get(e.op, a+"/link/performance/"+node.LinkUUID("A-B")+"?entries=x"), 400, "bad entries")
	e.problem(e.get(e.op, a+"/link/performance/"+node.LinkUUID("B-C")), 404, "link of another node")
	stream := "6f1b7c8e-8a55-4d0e-9a51-3c2f0f6d2a10"
	e.problem(e.do(e.op, http.MethodPost, a+"/link/relay/"+stream,
		map[string]any{"source": "SAE_X", "destination": []string{"SAE_C1"}, "next_node_info": []string{e.peer["B"]}}), 400, "unknown SAE")
	e.problem(e.do(e.op, http.MethodPost, a+"/link/relay/"+stream,
		map[string]any{"source": "SAE_A1", "destination": []string{"SAE_C1"}, "next_node_info": []string{"10.9.9.9:1"}}), 400, "unknown neighbour")
	// Unsupported.
	dev := node.DeviceUUID("A", "A-B")
	e.problem(e.do(e.op, http.MethodPost, a+"/control/qkd-device/"+dev, map[string]any{"link_id": node.LinkUUID("A-B"),
		"state": "online", "label": "x", "interface": "etsi_004", "protocol": "coap+tcp", "peer_kms": "KME_B", "server_address": "127.0.0.1:1"}), 501, "register device")
	e.problem(e.do(e.op, http.MethodPut, a+"/control/qkd-device/"+dev, map[string]any{"label": "y"}), 501, "update device")
	e.problem(e.do(e.op, http.MethodDelete, a+"/control/qkd-device/"+dev, nil), 501, "remove device")
	e.problem(e.do(e.op, http.MethodPost, e.base["B"]+"/link/relay/"+stream,
		map[string]any{"source": "SAE_A1", "destination": []string{"SAE_C1"}, "next_node_info": []string{e.peer["A"]}}), 400, "intermediate relay entry with one neighbour")
	if r := e.do(e.op, http.MethodPost, e.base["B"]+"/link/relay/"+stream,
		map[string]any{"source": "SAE_A1", "destination": []string{"SAE_C1"}, "next_node_info": []string{e.peer["A"], e.peer["C"]}}); r.code != 201 {
		t.Errorf("intermediate relay entry: status %d, want 201: %s", r.code, r.body)
	}
	e.problem(e.do(e.op, http.MethodPost, e.base["C"]+"/link/relay/"+stream,
		map[string]any{"source": "SAE_A1", "destination": []string{"SAE_C1"}, "next_node_info": []string{}}), 501, "destination without previous hop")
}

func TestQUICKSControlStatus(t *testing.T) {
	e := up(t)
	a := e.base["A"]
	var keys string
	for _, ni := range e.net.Info.Nodes {
		if ni.ID == "A" {
			keys = ni.ETSI014URL + "/api/v1/keys/SAE_B1/enc_keys"
		}
	}
	e.want(e.get(e.sae["SAE_A1"], keys), 200, "enc_keys online")
	for _, st := range []string{"offline", "stopped"} {
		e.want(e.do(e.op, http.MethodPut, a+"/control/status", map[string]string{"state": st}), 200, "set "+st)
		r := e.get(e.op, a+"/monitor/status")
		if m := e.object(r, "status", "state"); m["state"] != st {
			t.Errorf("status after %s = %s", st, r.body)
		}
		r = e.get(e.sae["SAE_A1"], keys)
		e.want(r, 503, "enc_keys "+st)
		if !strings.Contains(string(r.body), "KME is inactive") {
			t.Errorf("enc_keys %s: %s", st, r.body)
		}
		// qkd-device follows the node's state.
		var devs quicks.QKDDeviceList
		_ = json.Unmarshal(e.get(e.op, a+"/monitor/qkd-device").body, &devs)
		if len(devs.QKDDevices) != 1 || string(devs.QKDDevices[0].State) != st {
			t.Errorf("qkd-device while %s: %+v", st, devs)
		}
	}
	e.want(e.do(e.op, http.MethodPut, a+"/control/status", map[string]string{"state": "online"}), 200, "set online")
	e.want(e.get(e.sae["SAE_A1"], keys), 200, "enc_keys online again")
	// The agent (the node's own certificate) may change the state too.
	e.want(e.do(e.kme["A"], http.MethodPut, a+"/control/status", map[string]string{"state": "online"}), 200, "agent sets online")

	// After zeroisation the node is offline and critical, for good.
	if err := e.net.Nodes["A"].Zeroize(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := e.get(e.op, a+"/monitor/status")
	if m := e.object(r, "status", "state", "operation"); m["state"] != "offline" || m["operation"] != "critical" {
		t.Errorf("status after zeroisation = %s", r.body)
	}
	e.problem(e.do(e.op, http.MethodPut, a+"/control/status", map[string]string{"state": "online"}), 403, "online after zeroisation")
}

func TestQUICKSLinkPerformance(t *testing.T) {
	e := up(t)
	url := e.base["A"] + "/link/performance/" + node.LinkUUID("A-B")
	deadline := time.Now().Add(30 * time.Second)
	var perf quicks.Performance
	var raw reply
	for {
		raw = e.get(e.op, url)
		e.want(raw, 200, "performance")
		perf = quicks.Performance{}
		if err := json.Unmarshal(raw.body, &perf); err != nil {
			t.Fatal(err)
		}
		if len(perf.History) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no history after 30 s: %s", raw.body)
		}
		time.Sleep(200 * time.Millisecond) // polling interval, not synchronisation
	}
	m := e.object(raw, "performance", "current", "history")
	cur, _ := m["current"].(map[string]any)
	for _, k := range []string{"timestamp", "delta_t", "IKR", "EXKR", "SKR", "KAV"} {
		if _, ok := cur[k]; !ok {
			t.Errorf("current: no %q", k)
		}
	}
	all := append([]quicks.PerformanceEntry{perf.Current}, perf.History...)
	var skr, n int64
	for i, en := range all {
		if en.DeltaT < 500 || en.DeltaT > 3000 || en.SKR < 0 || en.IKR < 0 || en.EXKR < 0 || en.KAV <= 0 {
			t.Errorf("entry %d = %+v", i, en)
		}
		if i > 0 && !en.Timestamp.Before(all[i-1].Timestamp) {
			t.Errorf("history not newest first at %d", i)
		}
		skr += int64(en.SKR) * int64(en.DeltaT)
		n += int64(en.DeltaT)
	}
	if avg := skr / n; avg < linkRateBytes/2 || avg > linkRateBytes*2 {
		t.Errorf("mean SKR %d B/s, link rate %d B/s", avg, linkRateBytes)
	}
	// entries limits the history; 0 leaves it out.
	var p2 quicks.Performance
	r := e.get(e.op, url+"?entries=2")
	if err := json.Unmarshal(r.body, &p2); err != nil || len(p2.History) != 2 {
		t.Errorf("entries=2: %v %s", err, r.body)
	}
	r = e.get(e.op, url+"?entries=0")
	if m := e.object(r, "entries=0", "current"); m["history"] != nil {
		t.Errorf("entries=0: %s", r.body)
	}
}

func TestQUICKSRelay(t *testing.T) {
	e := up(t)
	stream := "0b3f8b9e-2d8e-4a44-8f0c-6c8e5b1d3e21"
	cfg := map[string]any{"source": "SAE_A1", "destination": []string{"SAE_C1"}, "next_node_info": []string{e.peer["B"]}}
	for _, tc := range []struct {
		node       qkd.NodeID
		prev, next qkd.NodeID
	}{{"A", "", "B"}, {"C", "B", ""}} {
		url := e.base[tc.node] + "/link/relay/" + stream
		eng := e.net.Nodes[tc.node].Relay()
		e.want(e.do(e.op, http.MethodPost, url, cfg), 201, "POST relay at "+string(tc.node))
		en, ok := eng.Lookup(stream)
		if !ok || en.Source != "A" || en.Dest != "C" || en.Master != "SAE_A1" || !slices.Equal(en.Slaves, []qkd.SAEID{"SAE_C1"}) ||
			en.Prev != tc.prev || en.Next != tc.next {
			t.Errorf("%s: entry %+v, %v", tc.node, en, ok)
		}
		e.problem(e.do(e.op, http.MethodPost, url, cfg), 409, "POST again")
		// A partial PUT keeps what it does not name.
		e.want(e.do(e.op, http.MethodPut, url, map[string]any{"destination": []string{"SAE_C1"}}), 200, "PUT relay")
		if en2, ok := eng.Lookup(stream); !ok || en2.Prev != tc.prev || en2.Next != tc.next || en2.Master != "SAE_A1" {
			t.Errorf("%s: after PUT %+v", tc.node, en2)
		}
		e.want(e.do(e.op, http.MethodDelete, url, nil), 204, "DELETE relay")
		if _, ok := eng.Lookup(stream); ok {
			t.Errorf("%s: entry left after DELETE", tc.node)
		}
		e.problem(e.do(e.op, http.MethodDelete, url, nil), 404, "DELETE again")
		e.problem(e.do(e.op, http.MethodPut, url, map[string]any{"destination": []string{"SAE_C1"}}), 404, "PUT unknown")
	}
}
