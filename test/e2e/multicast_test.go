package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRing5Multicast: on ring5, SAE_A1 at A asks for keys for SAE_B1 (on
// neighbour B) and, as an additional slave, SAE_C1 (on C, two hops away)
// with a raw HTTPS client; both slaves fetch the same keys at their own
// nodes, each only once.
func TestRing5Multicast(t *testing.T) {
	n := startNet(t, "ring5.json", nil, nil)
	info := n.Info
	a, b, c := nodeOf(info, "A").ETSI014URL, nodeOf(info, "B").ETSI014URL, nodeOf(info, "C").ETSI014URL
	sa, sb, sc := saeOf(info, "SAE_A1"), saeOf(info, "SAE_B1"), saeOf(info, "SAE_C1")
	ca := httpsClient(t, info.CA, sa.Cert, sa.Key)
	cb := httpsClient(t, info.CA, sb.Cert, sb.Key)
	cc := httpsClient(t, info.CA, sc.Cert, sc.Key)

	r := do(t, ca, "GET", a+"/api/v1/keys/SAE_B1/status", "")
	var st struct {
		MaxSAEIDCount int `json:"max_SAE_ID_count"`
	}
	if r.code != 200 || json.Unmarshal(r.body, &st) != nil || st.MaxSAEIDCount < 2 {
		t.Fatalf("status = %d %s, want max_SAE_ID_count ≥ 2", r.code, r.body)
	}

	var enc keyContainer
	waitFor(t, 2*time.Minute, "multicast enc_keys A→{B1, C1}", func() bool {
		r = do(t, ca, "POST", a+"/api/v1/keys/SAE_B1/enc_keys", `{"number":2,"size":256,"additional_slave_SAE_IDs":["SAE_C1"]}`)
		return r.code == 200 && json.Unmarshal(r.body, &enc) == nil
	})
	if len(enc.Keys) != 2 {
		t.Fatalf("enc_keys gave %d keys, want 2: %s", len(enc.Keys), r.body)
	}
	ids := make([]string, len(enc.Keys))
	for i, k := range enc.Keys {
		ids[i] = `{"key_ID":"` + k.KeyID + `"}`
	}
	body := `{"key_IDs":[` + strings.Join(ids, ",") + `]}`
	for _, s := range []struct {
		node string
		url  string
		cl   *http.Client
	}{{"B", b, cb}, {"C", c, cc}} {
		r := do(t, s.cl, "POST", s.url+"/api/v1/keys/SAE_A1/dec_keys", body)
		var got keyContainer
		if r.code != 200 || json.Unmarshal(r.body, &got) != nil || len(got.Keys) != len(enc.Keys) {
			t.Fatalf("dec_keys at %s = %d %s", s.node, r.code, r.body)
		}
		for i := range enc.Keys {
			if got.Keys[i] != enc.Keys[i] {
				t.Fatalf("dec_keys at %s: key %s differs from the master's", s.node, enc.Keys[i].KeyID)
			}
		}
		r = do(t, s.cl, "POST", s.url+"/api/v1/keys/SAE_A1/dec_keys", body)
		wantError(t, "second dec_keys at "+s.node, r, 400, "one or more keys specified are not found on KME")
	}
}
