package etsi014_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/etsi014"
	"github.com/qkms/qkms/internal/etsi014/etsi014test"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/qkd"
)

const (
	statusPath = "/api/v1/keys/" + saeB + "/status"
	encPath    = "/api/v1/keys/" + saeB + "/enc_keys"
	decPath    = "/api/v1/keys/" + saeA + "/dec_keys"
)

func TestStatus(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
	r := e.do(t, saeA, "GET", statusPath, "")
	if r.code != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET status = %d %q %s, want 200 application/json", r.code, r.header.Get("Content-Type"), r.body)
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber() // integers must be written as integers
	var got map[string]any
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"source_KME_ID":       "KME_A",
		"target_KME_ID":       "KME_B",
		"master_SAE_ID":       saeA,
		"slave_SAE_ID":        saeB,
		"key_size":            json.Number("256"),
		"stored_key_count":    json.Number("25000"),
		"max_key_count":       json.Number("100000"),
		"max_key_per_request": json.Number("128"),
		"max_key_size":        json.Number("1024"),
		"min_key_size":        json.Number("64"),
		"max_SAE_ID_count":    json.Number("0"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET status body (-want +got):\n%s", diff)
	}
	wantCalls := []etsi014test.Call{{Method: "Status", Caller: saeA, SAE: saeB}}
	if diff := cmp.Diff(wantCalls, e.fake.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestEncKeys(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, func(o *etsi014.Options) {
		o.SupportedExtensions = map[string]bool{"abc_route_type": true, etsi014.ExtHybrid: true}
	})
	ctJSON := []string{"Content-Type", "application/json"}
	tests := []struct {
		name, method, target, body string
		header                     []string
		want                       kms.KeyRequest
		keys, keyBytes             int
	}{
		{"GET defaults", "GET", encPath, "", nil, kms.KeyRequest{}, 1, 32},
		{"GET query", "GET", encPath + "?number=3&size=1024", "", nil, kms.KeyRequest{Number: 3, Size: 1024}, 3, 128},
		{"POST equals GET query", "POST", encPath, `{"number":3,"size":1024}`, ctJSON, kms.KeyRequest{Number: 3, Size: 1024}, 3, 128},
		{"POST empty body", "POST", encPath, "", nil, kms.KeyRequest{}, 1, 32},
		{"POST {}", "POST", encPath, "{}", ctJSON, kms.KeyRequest{}, 1, 32},
		{"POST blank body", "POST", encPath, " \r\n\t", ctJSON, kms.KeyRequest{}, 1, 32},
		{"POST with BOM", "POST", encPath, "\ufeff{\"number\":2}", ctJSON, kms.KeyRequest{Number: 2}, 2, 32},
		{"POST null body", "POST", encPath, "null", ctJSON, kms.KeyRequest{}, 1, 32},
		{"GET JSON content type no body", "GET", encPath, "", ctJSON, kms.KeyRequest{}, 1, 32},
		{"GET JSON body", "GET", encPath, `{"number":2}`, ctJSON, kms.KeyRequest{Number: 2}, 2, 32},
		{"number without size", "POST", encPath, `{"number":2}`, ctJSON, kms.KeyRequest{Number: 2}, 2, 32},
		{"size without number", "POST", encPath, `{"size":512}`, ctJSON, kms.KeyRequest{Size: 512}, 1, 64},
		{"query number only", "GET", encPath + "?number=2", "", nil, kms.KeyRequest{Number: 2}, 2, 32},
		{"query size only", "GET", encPath + "?size=64", "", nil, kms.KeyRequest{Size: 64}, 1, 8},
		{"query leading zero", "GET", encPath + "?number=02", "", nil, kms.KeyRequest{Number: 2}, 2, 32},
		{"unknown query parameter", "GET", encPath + "?number=1&vendor=x", "", nil, kms.KeyRequest{Number: 1}, 1, 32},
		{"query on POST", "POST", encPath + "?size=512", `{"number":2}`, ctJSON, kms.KeyRequest{Number: 2, Size: 512}, 2, 64},
		{"query and body agree", "POST", encPath + "?number=2", `{"number":2}`, ctJSON, kms.KeyRequest{Number: 2}, 2, 32},
		{"content type ignored", "POST", encPath, `{"number":1}`, []string{"Content-Type", "text/plain"}, kms.KeyRequest{Number: 1}, 1, 32},
		{"unknown members", "POST", encPath, `{"number":1,"vendor_x":{"a":[1,{"b":null}]},"status_extension":7}`, ctJSON, kms.KeyRequest{Number: 1}, 1, 32},
		{"extension_optional ignored", "POST", encPath, `{"extension_optional":[{"abc_unknown":"x"},{"abc_other":[1]}]}`, ctJSON, kms.KeyRequest{}, 1, 32},
		{"extension_optional any shape", "POST", encPath, `{"extension_optional":{"abc_unknown":"x"}}`, ctJSON, kms.KeyRequest{}, 1, 32},
		{"supported extension_mandatory", "POST", encPath, `{"extension_mandatory":[{"abc_route_type":"direct"}]}`, ctJSON, kms.KeyRequest{}, 1, 32},
		{"empty extension_mandatory", "POST", encPath, `{"extension_mandatory":[]}`, ctJSON, kms.KeyRequest{}, 1, 32},
		{"qkms_hybrid true", "POST", encPath, `{"extension_mandatory":[{"qkms_hybrid":true}]}`, ctJSON, kms.KeyRequest{Hybrid: true}, 1, 32},
		{"qkms_hybrid false", "POST", encPath, `{"extension_mandatory":[{"qkms_hybrid":false},{"abc_route_type":"direct"}]}`, ctJSON, kms.KeyRequest{}, 1, 32},
		{"qkms_hybrid as object", "POST", encPath, `{"extension_mandatory":{"qkms_hybrid":true}}`, ctJSON, kms.KeyRequest{Hybrid: true}, 1, 32},
		{"null members", "POST", encPath, `{"number":null,"size":null,"additional_slave_SAE_IDs":null,"extension_mandatory":null}`, ctJSON, kms.KeyRequest{}, 1, 32},
		{"additional slaves", "POST", encPath, `{"number":1,"additional_slave_SAE_IDs":["SAE_C","SAE D"]}`, ctJSON,
			kms.KeyRequest{Number: 1, AdditionalSlaves: []qkd.SAEID{"SAE_C", "SAE D"}}, 1, 32},
		{"empty additional slaves", "POST", encPath, `{"additional_slave_SAE_IDs":[]}`, ctJSON, kms.KeyRequest{}, 1, 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.fake.Reset()
			r := e.do(t, saeA, tt.method, tt.target, tt.body, tt.header...)
			if r.code != 200 {
				t.Fatalf("%s %s %s = %d %s, want 200", tt.method, tt.target, tt.body, r.code, r.body)
			}
			checkKeyHeaders(t, r)
			keys := r.keys(t)
			if len(keys) != tt.keys {
				t.Fatalf("got %d keys, want %d", len(keys), tt.keys)
			}
			for _, k := range keys {
				if len(k.Bytes) != tt.keyBytes {
					t.Errorf("key %s has %d bytes, want %d", k.ID, len(k.Bytes), tt.keyBytes)
				}
			}
			want := []etsi014test.Call{{Method: "EncKeys", Caller: saeA, SAE: saeB, Request: tt.want}}
			if diff := cmp.Diff(want, e.fake.Calls()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if err := e.fake.CheckWiped(); err != nil {
				t.Error(err)
			}
		})
	}
}

func checkKeyHeaders(t *testing.T, r response) {
	t.Helper()
	for name, want := range map[string]string{
		"Content-Type":  "application/json",
		"Cache-Control": "no-store",
		"Pragma":        "no-cache",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
}

func TestDecKeys(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
	enc := e.do(t, saeA, "POST", encPath, `{"number":4}`)
	if enc.code != 200 {
		t.Fatalf("enc_keys = %d %s", enc.code, enc.body)
	}
	keys := enc.keys(t)
	id := func(i int) string { return keys[i].ID.String() }

	// Two keys by POST; unknown members and master_SAE_ID in items ignored.
	body := `{"key_IDs":[{"key_ID":"` + id(0) + `","master_SAE_ID":"SAE_A","key_ID_extension":{}},` +
		`{"key_ID":"` + strings.ToUpper(id(1)) + `"}],"key_IDs_extension":{"x":1}}`
	r := e.do(t, saeB, "POST", decPath, body, "Content-Type", "application/json")
	if r.code != 200 {
		t.Fatalf("POST dec_keys = %d %s", r.code, r.body)
	}
	checkKeyHeaders(t, r)
	if diff := cmp.Diff(keys[:2], r.keys(t)); diff != "" {
		t.Errorf("POST dec_keys keys differ from enc_keys (-enc +dec):\n%s", diff)
	}

	// One key by GET query; one by GET with a JSON body.
	r = e.do(t, saeB, "GET", decPath+"?key_ID="+id(2), "")
	if r.code != 200 {
		t.Fatalf("GET dec_keys?key_ID = %d %s", r.code, r.body)
	}
	if diff := cmp.Diff(keys[2:3], r.keys(t)); diff != "" {
		t.Errorf("GET dec_keys keys differ (-enc +dec):\n%s", diff)
	}
	r = e.do(t, saeB, "GET", decPath, `{"key_IDs":[{"key_ID":"`+id(3)+`"}]}`)
	if r.code != 200 {
		t.Fatalf("GET dec_keys with body = %d %s", r.code, r.body)
	}
	if diff := cmp.Diff(keys[3:4], r.keys(t)); diff != "" {
		t.Errorf("GET dec_keys with body keys differ (-enc +dec):\n%s", diff)
	}

	wantIDs := [][]qkd.KeyID{{keys[0].ID, keys[1].ID}, {keys[2].ID}, {keys[3].ID}}
	var gotIDs [][]qkd.KeyID
	for _, c := range e.fake.Calls()[1:] {
		if c.Method != "DecKeys" || c.Caller != saeB || c.SAE != saeA {
			t.Errorf("call = %+v, want DecKeys by %s under %s", c, saeB, saeA)
		}
		gotIDs = append(gotIDs, c.IDs)
	}
	if diff := cmp.Diff(wantIDs, gotIDs); diff != "" {
		t.Errorf("key IDs passed to kms (-want +got):\n%s", diff)
	}
	if err := e.fake.CheckWiped(); err != nil {
		t.Error(err)
	}
	if got := e.delivered.Load(); got != 8 {
		t.Errorf("OnDelivered total = %d, want 8", got)
	}

	// Each key once: the second time it is not found.
	r = e.do(t, saeB, "GET", decPath+"?key_ID="+id(0), "")
	if r.code != 400 || r.error(t).Message != "one or more keys specified are not found on KME" {
		t.Errorf("second dec_keys = %d %s, want 400 not found", r.code, r.body)
	}
}

func TestDecKeysAuthorisation(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, nil)
	keys := e.do(t, saeA, "GET", encPath, "").keys(t)
	q := "?key_ID=" + keys[0].ID.String()
	tests := []struct {
		name, caller, path string
		code               int
		msg                string
	}{
		{"not a slave", saeC, decPath, 401, "unauthorized"},
		{"wrong master", saeB, "/api/v1/keys/" + saeC + "/dec_keys", 400, "one or more keys specified are not found on KME"},
		{"slave", saeB, decPath, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.caller, "GET", tt.path+q, "")
			if r.code != tt.code {
				t.Fatalf("dec_keys by %s = %d %s, want %d", tt.caller, r.code, r.body, tt.code)
			}
			if tt.msg != "" && r.error(t).Message != tt.msg {
				t.Errorf("message = %q, want %q", r.error(t).Message, tt.msg)
			}
		})
	}
}

func TestBadRequest(t *testing.T) {
	e := newEnv(t, tls.RequireAndVerifyClientCert, func(o *etsi014.Options) {
		o.SupportedExtensions = map[string]bool{"abc_route_type": true, etsi014.ExtHybrid: true}
		o.MaxBodyBytes = 4096
	})
	const uuid = "550e8400-e29b-41d4-a716-446655440000"
	unsupported := func(names ...string) []map[string]any {
		var d []map[string]any
		for _, n := range names {
			d = append(d, map[string]any{"extension_mandatory_unsupported": n})
		}
		return d
	}
	const extMsg = "not all extension_mandatory parameters are supported"
	tests := []struct {
		name, method, target, body string
		msg                        string
		prefix                     bool // msg is a prefix (text of encoding/json)
		details                    []map[string]any
	}{
		{"size not multiple of 8", "POST", encPath, `{"size":12}`, "size shall be a multiple of 8", false, nil},
		{"query size not multiple of 8", "GET", encPath + "?size=12", "", "size shall be a multiple of 8", false, nil},
		{"number string", "POST", encPath, `{"number":"x"}`, "number must be an integer", false, nil},
		{"number numeric string", "POST", encPath, `{"number":"2"}`, "number must be an integer", false, nil},
		{"size bool", "POST", encPath, `{"size":true}`, "size must be an integer", false, nil},
		{"number fraction", "POST", encPath, `{"number":1.5}`, "number must be an integer", false, nil},
		{"number exponent", "POST", encPath, `{"number":1e2}`, "number must be an integer", false, nil},
		{"number negative", "POST", encPath, `{"number":-1}`, "number must be a positive integer", false, nil},
		{"number zero", "POST", encPath, `{"number":0}`, "number must be a positive integer", false, nil},
		{"size zero", "POST", encPath, `{"size":0}`, "size must be a positive integer", false, nil},
		{"number huge", "POST", encPath, `{"number":99999999999999999999}`, "number is out of range", false, nil},
		{"query number not integer", "GET", encPath + "?number=abc", "", "number must be an integer", false, nil},
		{"query number fraction", "GET", encPath + "?number=1.0", "", "number must be an integer", false, nil},
		{"query number empty", "GET", encPath + "?number=", "", "number must be an integer", false, nil},
		{"query number negative", "GET", encPath + "?number=-2", "", "number must be a positive integer", false, nil},
		{"query size negative", "GET", encPath + "?size=-8", "", "size must be a positive integer", false, nil},
		{"query number repeated", "GET", encPath + "?number=1&number=2", "", "number is given more than once in the query", false, nil},
		{"query number huge", "GET", encPath + "?number=99999999999999999999", "", "number is out of range", false, nil},
		{"query malformed", "GET", encPath + "?number=%zz", "", "malformed query string", false, nil},
		{"query and body differ", "POST", encPath + "?number=2", `{"number":3}`, "number differs between the query and the body", false, nil},
		{"malformed JSON", "POST", encPath, `{"number":`, "key request is not valid JSON: ", true, nil},
		{"trailing garbage", "POST", encPath, `{"number":1}x`, "key request is not valid JSON: invalid character 'x' after top-level value", true, nil},
		{"two values", "POST", encPath, `{} {}`, "key request is not valid JSON: ", true, nil},
		{"body array", "POST", encPath, `[{"number":1}]`, "key request must be a JSON object", false, nil},
		{"body string", "POST", encPath, `"number"`, "key request must be a JSON object", false, nil},
		{"slaves not array", "POST", encPath, `{"additional_slave_SAE_IDs":"SAE_C"}`, "additional_slave_SAE_IDs must be an array of strings", false, nil},
		{"slaves numbers", "POST", encPath, `{"additional_slave_SAE_IDs":[1]}`, "additional_slave_SAE_IDs must be an array of strings", false, nil},
		{"slaves empty ID", "POST", encPath, `{"additional_slave_SAE_IDs":["SAE_C",""]}`, "additional_slave_SAE_IDs must not contain empty SAE IDs", false, nil},
		{"unsupported extension", "POST", encPath, `{"extension_mandatory":[{"abc_unknown":1}]}`, extMsg, false, unsupported("abc_unknown")},
		{"unsupported extensions, one entry each", "POST", encPath,
			`{"extension_mandatory":[{"b_x":1,"a_y":2},{"abc_route_type":"direct"},{"b_x":3}]}`, extMsg, false, unsupported("a_y", "b_x")},
		{"unsupported extension as object", "POST", encPath, `{"extension_mandatory":{"abc_unknown":true}}`, extMsg, false, unsupported("abc_unknown")},
		{"qkms_hybrid not a boolean", "POST", encPath, `{"extension_mandatory":[{"qkms_hybrid":"yes"}]}`, "qkms_hybrid must be true or false", false, nil},
		{"extension_mandatory string", "POST", encPath, `{"extension_mandatory":"abc_unknown"}`, "extension_mandatory must be an array of objects", false, nil},
		{"extension_mandatory of strings", "POST", encPath, `{"extension_mandatory":["abc_unknown"]}`, "extension_mandatory must be an array of objects", false, nil},
		{"body too large", "POST", encPath, "{" + strings.Repeat(" ", 5000) + "}", "request body is larger than 4096 bytes", false, nil},

		{"no key IDs, GET", "GET", decPath, "", "at least one key_ID is required", false, nil},
		{"no key IDs, POST", "POST", decPath, "", "at least one key_ID is required", false, nil},
		{"empty key_IDs", "POST", decPath, `{"key_IDs":[]}`, "at least one key_ID is required", false, nil},
		{"key_ID not a UUID", "POST", decPath, `{"key_IDs":[{"key_ID":"` + uuid + `"},{"key_ID":"nope"}]}`, "key_IDs[1].key_ID is not a UUID", false, nil},
		{"key_ID missing", "POST", decPath, `{"key_IDs":[{"master_SAE_ID":"SAE_A"}]}`, "key_IDs[0].key_ID is missing", false, nil},
		{"key_ID number", "POST", decPath, `{"key_IDs":[{"key_ID":5}]}`, "key_IDs[0] must be an object with a string key_ID", false, nil},
		{"key_IDs item string", "POST", decPath, `{"key_IDs":["` + uuid + `"]}`, "key_IDs[0] must be an object with a string key_ID", false, nil},
		{"key_IDs object", "POST", decPath, `{"key_IDs":{"key_ID":"` + uuid + `"}}`, "key_IDs must be an array of objects", false, nil},
		{"key_ID with a fifth dash", "POST", decPath, `{"key_IDs":[{"key_ID":"00000000-0000-0000-0000-0000-0000000"}]}`, "key_IDs[0].key_ID is not a UUID", false, nil},
		{"query key_ID not a UUID", "GET", decPath + "?key_ID=" + uuid + "x", "", "key_ID is not a UUID", false, nil},
		{"key_ID twice", "POST", decPath + "?key_ID=" + uuid, `{"key_IDs":[{"key_ID":"` + uuid + `"}]}`, "key_ID " + uuid + " is given more than once", false, nil},
		{"key ID list malformed", "POST", decPath, `{"key_IDs":[`, "key ID list is not valid JSON: ", true, nil},
		{"key ID list array", "POST", decPath, `[]`, "key ID list must be a JSON object", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.fake.Reset()
			r := e.do(t, saeA, tt.method, tt.target, tt.body)
			if r.code != 400 || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s %s %.40s = %d %q, want 400 application/json", tt.method, tt.target, tt.body, r.code, r.header.Get("Content-Type"))
			}
			got := r.error(t)
			if tt.prefix && strings.HasPrefix(got.Message, tt.msg) {
				got.Message = tt.msg
			}
			want := errorBody{Message: tt.msg, Details: tt.details}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("error body (-want +got):\n%s", diff)
			}
			if calls := e.fake.Calls(); len(calls) != 0 {
				t.Errorf("kms was called: %+v", calls)
			}
		})
	}
}
