package etsi014

import (
	"encoding/json"
	"errors"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/qkd"
)

// checkRequestError fails unless err is a *qkd.RequestError with a message.
func checkRequestError(t *testing.T, in string, err error) {
	t.Helper()
	re, ok := errors.AsType[*qkd.RequestError](err)
	if !ok || re.Msg == "" {
		t.Fatalf("decoding %q: error %v (%T), want a *qkd.RequestError with a message", in, err, err)
	}
}

// encodeKeyRequest is the canonical Key request body for req.
func encodeKeyRequest(t *testing.T, req kms.KeyRequest) []byte {
	t.Helper()
	b, err := json.Marshal(struct {
		Number int         `json:"number,omitempty"`
		Size   int         `json:"size,omitempty"`
		Slaves []qkd.SAEID `json:"additional_slave_SAE_IDs,omitempty"`
	}{req.Number, req.Size, req.AdditionalSlaves})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkKeyRequest checks the invariants of a decoded request and that it
// survives a round trip through its canonical body and query forms.
func checkKeyRequest(t *testing.T, in string, req kms.KeyRequest) {
	t.Helper()
	if req.Number < 0 || req.Size < 0 || req.Size%8 != 0 {
		t.Fatalf("decoding %q = %+v: bad number or size", in, req)
	}
	for _, id := range req.AdditionalSlaves {
		if id == "" {
			t.Fatalf("decoding %q = %+v: empty slave ID", in, req)
		}
	}
	body := encodeKeyRequest(t, req)
	back, err := parseKeyRequest(body, "", nil)
	if err != nil {
		t.Fatalf("re-decoding %s: %v", body, err)
	}
	if diff := cmp.Diff(req, back); diff != "" {
		t.Fatalf("round trip of %q through %s (-first +second):\n%s", in, body, diff)
	}
}

func FuzzKeyRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `{"number":3,"size":1024}`, `{"size":12}`, `{"number":"x"}`,
		`{"number":1}x`, `{"additional_slave_SAE_IDs":["SAE_C","SAE_D"]}`,
		`{"extension_mandatory":[{"abc_route_type":"direct"},{"abc_x":1}]}`,
		`{"extension_mandatory":{"abc_x":1}}`, `{"extension_optional":[{"abc_x":1}]}`,
		`{"number":99999999999999999999}`, `{"number":-0}`, `[]`, `{"Number":2,"SIZE":64}`,
	} {
		f.Add([]byte(s))
	}
	supported := map[string]bool{"abc_route_type": true}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseKeyRequest(body, "", supported)
		if err != nil {
			checkRequestError(t, string(body), err)
			return
		}
		checkKeyRequest(t, string(body), req)
	})
}

// checkKeyIDs checks a decoded key ID list and its round trip through the
// canonical body and query forms.
func checkKeyIDs(t *testing.T, in string, ids []qkd.KeyID) {
	t.Helper()
	if err := checkDistinct(ids); len(ids) == 0 || err != nil {
		t.Fatalf("decoding %q = %v: empty or repeating", in, ids)
	}
	type item struct {
		KeyID string `json:"key_ID"`
	}
	var body struct {
		KeyIDs []item `json:"key_IDs"`
	}
	q := url.Values{}
	for _, id := range ids {
		body.KeyIDs = append(body.KeyIDs, item{id.String()})
		q.Add("key_ID", id.String())
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, form := range []struct{ body, query string }{{string(b), ""}, {"", q.Encode()}} {
		back, err := parseKeyIDs([]byte(form.body), form.query)
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", form, err)
		}
		if diff := cmp.Diff(ids, back); diff != "" {
			t.Fatalf("round trip of %q through %+v (-first +second):\n%s", in, form, diff)
		}
	}
}

func FuzzKeyIDs(f *testing.F) {
	const id = "550e8400-e29b-41d4-a716-446655440000"
	for _, s := range []string{
		``, `{}`, `{"key_IDs":[]}`, `{"key_IDs":[{"key_ID":"` + id + `"}]}`,
		`{"key_IDs":[{"key_ID":"` + id + `","master_SAE_ID":"A"},{"key_ID":"bc490419-7d60-487f-adc1-4ddcc177c139"}]}`,
		`{"key_IDs":[{"key_ID":"` + id + `"},{"key_ID":"` + id + `"}]}`,
		`{"key_IDs":[{"key_ID":5}]}`, `{"key_IDs":["x"]}`, `{"key_IDs":[null]}`, `{"key_IDs":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, err := parseKeyIDs(body, "")
		if err != nil {
			checkRequestError(t, string(body), err)
			return
		}
		checkKeyIDs(t, string(body), ids)
	})
}

func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		``, `number=3&size=1024`, `number=1&number=2`, `size=12`, `number=abc`, `number=-1`,
		`number=%zz`, `a=b;c=d`, `key_ID=550e8400-e29b-41d4-a716-446655440000`,
		`key_ID=550e8400-e29b-41d4-a716-446655440000&key_ID=bc490419-7d60-487f-adc1-4ddcc177c139`,
		`key_ID=x`, `number=+5`, `size=08`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		if req, err := parseKeyRequest(nil, query, nil); err != nil {
			checkRequestError(t, query, err)
		} else {
			checkKeyRequest(t, query, req)
			if req.AdditionalSlaves != nil {
				t.Fatalf("query %q gave additional slaves %v", query, req.AdditionalSlaves)
			}
		}
		if ids, err := parseKeyIDs(nil, query); err != nil {
			checkRequestError(t, query, err)
		} else {
			checkKeyIDs(t, query, ids)
		}
	})
}

// TestQueryEqualsBody checks that every query form decodes like its body form.
func TestQueryEqualsBody(t *testing.T) {
	for _, tt := range []struct{ query, body string }{
		{"", "{}"},
		{"number=3", `{"number":3}`},
		{"size=1024", `{"size":1024}`},
		{"number=3&size=1024", `{"size":1024,"number":3}`},
	} {
		fromQuery, err1 := parseKeyRequest(nil, tt.query, nil)
		fromBody, err2 := parseKeyRequest([]byte(tt.body), "", nil)
		if err1 != nil || err2 != nil || !cmp.Equal(fromQuery, fromBody) {
			t.Errorf("parseKeyRequest(query %q) = %+v, %v; body %s = %+v, %v", tt.query, fromQuery, err1, tt.body, fromBody, err2)
		}
	}
}
