package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/qkd"
)

type keyContainer struct {
	Keys []struct {
		KeyID string `json:"key_ID"`
		Key   string `json:"key"`
	} `json:"keys"`
}

type etsiErr struct {
	Message string           `json:"message"`
	Details []map[string]any `json:"details"`
}

func nodeOf(info netsim.Info, id qkd.NodeID) netsim.NodeInfo {
	for _, n := range info.Nodes {
		if n.ID == id {
			return n
		}
	}
	return netsim.NodeInfo{}
}

func saeOf(info netsim.Info, id qkd.SAEID) netsim.SAEInfo {
	for _, s := range info.SAEs {
		if s.ID == id {
			return s
		}
	}
	return netsim.SAEInfo{}
}

// TestETSI014Line2 walks the acceptance list of ETSI 014 on line2.json
// with a raw HTTPS client, using only the paths in network.json.
func TestETSI014Line2(t *testing.T) {
	// A small ready pool (64 keys, restocked below 32) is full long before
	// the test takes its 6 keys, so no restock runs in between.
	n := startNet(t, "line2.json", nil, func(c *config.Config) { c.Keys.Prereserve = 64 })
	info := readInfo(t, n.Info.Nodes[0].DataDir+"/../../..")
	a, b := nodeOf(info, "A").ETSI014URL, nodeOf(info, "B").ETSI014URL
	sa, sb := saeOf(info, "SAE_A1"), saeOf(info, "SAE_B1")
	ca := httpsClient(t, info.CA, sa.Cert, sa.Key)
	cb := httpsClient(t, info.CA, sb.Cert, sb.Key)
	op := httpsClient(t, info.CA, info.Operator.Cert, info.Operator.Key)

	// Status: 200, all 11 fields, integers, sizes in bits.
	r := do(t, ca, "GET", a+"/api/v1/keys/SAE_B1/status", "")
	var st map[string]any
	if r.code != 200 || json.Unmarshal(r.body, &st) != nil {
		t.Fatalf("status = %d %s", r.code, r.body)
	}
	fields := map[string]string{"source_KME_ID": "KME_A", "target_KME_ID": "KME_B", "master_SAE_ID": "SAE_A1", "slave_SAE_ID": "SAE_B1",
		"key_size": "int", "stored_key_count": "int", "max_key_count": "int", "max_key_per_request": "int",
		"max_key_size": "int", "min_key_size": "int", "max_SAE_ID_count": "int"}
	if len(st) != len(fields) {
		t.Errorf("status has %d fields, want %d: %s", len(st), len(fields), r.body)
	}
	for f, want := range fields {
		v, ok := st[f]
		switch {
		case !ok:
			t.Errorf("status lacks %s", f)
		case want == "int":
			if x, isNum := v.(float64); !isNum || x != float64(int64(x)) || x < 0 {
				t.Errorf("status %s = %v, want a non-negative integer", f, v)
			}
		case v != want:
			t.Errorf("status %s = %v, want %s", f, v, want)
		}
	}
	if st["key_size"].(float64) != 256 || st["min_key_size"].(float64) != 64 {
		t.Errorf("sizes are not in bits: %s", r.body)
	}

	// Pause the QKD links and let the nodes settle (the ready pool filled,
	// the last blocks confirmed) so that stored_key_count changes only by
	// what we take: it must read the same four times over 1.5 s (a batch
	// waits at most 1 s).
	for _, s := range n.Sims {
		s.Pause(true)
	}
	ma := n.Nodes["A"].Metrics()
	before, same := -1, 0
	waitFor(t, 60*time.Second, "a steady stored_key_count", func() bool {
		time.Sleep(500 * time.Millisecond) // sampling interval of the steadiness check
		c := storedCount(t, ca, a)
		if c == before && readyKeys(ma) >= 100 {
			same++
		} else {
			same = 0
		}
		before = c
		return same >= 3
	})
	getKeys := do(t, ca, "GET", a+"/api/v1/keys/SAE_B1/enc_keys?number=3&size=256", "")
	postKeys := do(t, ca, "POST", a+"/api/v1/keys/SAE_B1/enc_keys", `{"number":3,"size":256}`)
	var kg, kp keyContainer
	for name, r := range map[string]reply{"GET": getKeys, "POST": postKeys} {
		if r.code != 200 || r.hdr.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s enc_keys = %d (Cache-Control %q) %s", name, r.code, r.hdr.Get("Cache-Control"), r.body)
		}
	}
	_ = json.Unmarshal(getKeys.body, &kg)
	_ = json.Unmarshal(postKeys.body, &kp)
	for _, kc := range []keyContainer{kg, kp} {
		if len(kc.Keys) != 3 {
			t.Fatalf("enc_keys gave %d keys, want 3", len(kc.Keys))
		}
		for _, k := range kc.Keys {
			raw, err := base64.StdEncoding.DecodeString(k.Key)
			if _, perr := qkd.ParseKeyID(k.KeyID); err != nil || len(raw) != 32 || perr != nil {
				t.Fatalf("key %q: %d bytes, %v, %v", k.KeyID, len(raw), err, perr)
			}
		}
	}
	if after := storedCount(t, ca, a); after != before-6 {
		t.Errorf("stored_key_count %d → %d after taking 6 keys", before, after)
	}

	// The slave gets the same bytes at its own node: GET for one, POST for several.
	one := do(t, cb, "GET", b+"/api/v1/keys/SAE_A1/dec_keys?key_ID="+kg.Keys[0].KeyID, "")
	var d1 keyContainer
	if one.code != 200 || json.Unmarshal(one.body, &d1) != nil || len(d1.Keys) != 1 || d1.Keys[0] != kg.Keys[0] {
		t.Fatalf("dec_keys GET = %d %s; want %+v", one.code, one.body, kg.Keys[0])
	}
	if one.hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("dec_keys without Cache-Control: no-store")
	}
	ids := make([]string, 0, 3)
	for _, k := range kp.Keys {
		ids = append(ids, fmt.Sprintf(`{"key_ID":%q}`, k.KeyID))
	}
	body := `{"key_IDs":[` + strings.Join(ids, ",") + `]}`
	// Any other SAE (here the operator, and the master itself at the slave's node): 401.
	for name, c := range map[string]*http.Client{"operator": op, "master": ca} {
		if r := do(t, c, "POST", b+"/api/v1/keys/SAE_A1/dec_keys", body); r.code != 401 {
			t.Errorf("dec_keys by %s = %d %s, want 401", name, r.code, r.body)
		}
	}
	several := do(t, cb, "POST", b+"/api/v1/keys/SAE_A1/dec_keys", body)
	var dp keyContainer
	if several.code != 200 || json.Unmarshal(several.body, &dp) != nil || len(dp.Keys) != 3 {
		t.Fatalf("dec_keys POST = %d %s", several.code, several.body)
	}
	for i := range dp.Keys {
		if dp.Keys[i] != kp.Keys[i] {
			t.Errorf("dec_keys key %d = %+v, want %+v", i, dp.Keys[i], kp.Keys[i])
		}
	}
	// Asking again: 400 with the not-found message.
	for _, r := range []reply{
		do(t, cb, "GET", b+"/api/v1/keys/SAE_A1/dec_keys?key_ID="+kg.Keys[0].KeyID, ""),
		do(t, cb, "POST", b+"/api/v1/keys/SAE_A1/dec_keys", body),
	} {
		wantError(t, "second dec_keys", r, 400, "one or more keys specified are not found on KME")
	}
	// The remaining GET keys are still there for the slave.
	rest := do(t, cb, "POST", b+"/api/v1/keys/SAE_A1/dec_keys",
		fmt.Sprintf(`{"key_IDs":[{"key_ID":%q},{"key_ID":%q,"master_SAE_ID":"SAE_A1"}]}`, kg.Keys[1].KeyID, kg.Keys[2].KeyID))
	if rest.code != 200 {
		t.Errorf("dec_keys of the remaining keys = %d %s", rest.code, rest.body)
	}

	wantError(t, "size=257", do(t, ca, "GET", a+"/api/v1/keys/SAE_B1/enc_keys?number=1&size=257", ""), 400, "size shall be a multiple of 8")
	ext := do(t, ca, "POST", a+"/api/v1/keys/SAE_B1/enc_keys", `{"number":1,"extension_mandatory":[{"abc_route_type":"direct"}]}`)
	wantError(t, "unknown extension_mandatory", ext, 400, "not all extension_mandatory parameters are supported")
	if !strings.Contains(string(ext.body), `"extension_mandatory_unsupported":"abc_route_type"`) {
		t.Errorf("extension error lacks details: %s", ext.body)
	}
	if r := do(t, ca, "DELETE", a+"/api/v1/keys/SAE_B1/enc_keys", ""); r.code != 405 {
		t.Errorf("DELETE enc_keys = %d, want 405", r.code)
	}
	// No client certificate: the TLS handshake is refused.
	anon := httpsClient(t, info.CA, "", "")
	if resp, err := anon.Get(a + "/api/v1/keys/SAE_B1/status"); err == nil {
		resp.Body.Close()
		t.Errorf("request without a client certificate got %d, want refused", resp.StatusCode)
	}
}

func storedCount(t *testing.T, c *http.Client, base string) int {
	t.Helper()
	var st struct {
		Stored int `json:"stored_key_count"`
	}
	r := do(t, c, "GET", base+"/api/v1/keys/SAE_B1/status", "")
	if r.code != 200 || json.Unmarshal(r.body, &st) != nil {
		t.Fatalf("status = %d %s", r.code, r.body)
	}
	return st.Stored
}

func wantError(t *testing.T, what string, r reply, code int, msg string) {
	t.Helper()
	var e etsiErr
	if r.code != code || json.Unmarshal(r.body, &e) != nil || e.Message != msg {
		t.Errorf("%s = %d %s; want %d %q", what, r.code, r.body, code, msg)
	}
}
