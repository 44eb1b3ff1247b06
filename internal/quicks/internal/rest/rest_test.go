package rest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/qkms/qkms/internal/quicks"
)

func TestMatch(t *testing.T) {
	h := func(http.ResponseWriter, *http.Request, Params) error { return nil }
	rt := NewRouter(Config{Prefixes: []string{"/api/v2/sdn", "/api/v2/kms"}, Routes: []Route{
		{Pattern: "link/status", Methods: map[string]HandlerFunc{"GET": h}},
		{Pattern: "link/{key_stream_id}", Methods: map[string]HandlerFunc{"DELETE": h}},
		{Pattern: "link/relay/{key_stream_id}", Methods: map[string]HandlerFunc{"PUT": h}},
	}})
	tests := []struct {
		path, pattern string
		params        Params
	}{
		{"/api/v2/sdn/link/status", "link/status", Params{}},
		{"/api/v2/kms/link/status", "link/status", Params{}},
		{"/api/v2/sdn/link/abc", "link/{key_stream_id}", Params{"key_stream_id": "abc"}},
		{"/api/v2/sdn/link/a%2Fb", "link/{key_stream_id}", Params{"key_stream_id": "a/b"}},
		{"/api/v2/sdn/link/relay/x", "link/relay/{key_stream_id}", Params{"key_stream_id": "x"}},
		{"/api/v2/sdn/link/", "", nil},
		{"/api/v2/sdn/link", "", nil},
		{"/api/v2/sdnx/link/status", "", nil},
		{"/api/v2/sdn/link/relay/", "", nil},
	}
	for _, tt := range tests {
		r, p, ok := rt.match(tt.path)
		got := ""
		if ok {
			got = joinSegs(r.segs)
		}
		if got != tt.pattern || (ok && !equal(p, tt.params)) {
			t.Errorf("match(%q) = %q %v, want %q %v", tt.path, got, p, tt.pattern, tt.params)
		}
	}
}

func joinSegs(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "/"
		}
		out += x
	}
	return out
}

func equal(a, b Params) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestQuery(t *testing.T) {
	req := func(q string) *http.Request { return httptest.NewRequest("GET", "/x?"+q, nil) }
	if n, err := QueryInt(req(""), "entries", -1); n != -1 || err != nil {
		t.Errorf("QueryInt(absent) = %d, %v", n, err)
	}
	if n, err := QueryInt(req("entries=7"), "entries", -1); n != 7 || err != nil {
		t.Errorf("QueryInt(7) = %d, %v", n, err)
	}
	for _, q := range []string{"entries=-1", "entries=", "entries=1e3", "entries=1&entries=1"} {
		if _, err := QueryInt(req(q), "entries", -1); !errors.Is(err, quicks.ErrBadRequest) {
			t.Errorf("QueryInt(%q) = %v, want ErrBadRequest", q, err)
		}
	}
	for q, want := range map[string]bool{"": false, "r=true": true, "r=false": false} {
		if b, err := QueryBool(req(q), "r"); b != want || err != nil {
			t.Errorf("QueryBool(%q) = %v, %v", q, b, err)
		}
	}
	for _, q := range []string{"r=TRUE", "r=1", "r=", "r=true&r=true"} {
		if _, err := QueryBool(req(q), "r"); !errors.Is(err, quicks.ErrBadRequest) {
			t.Errorf("QueryBool(%q) = %v, want ErrBadRequest", q, err)
		}
	}
}

// An invalid backend answer is a 500, never the 400 of its field errors.
func TestWriteJSONInvalid(t *testing.T) {
	rec := httptest.NewRecorder()
	err := WriteJSON(rec, 200, &quicks.KMSStatus{State: "asleep"})
	if err == nil || errors.Is(err, quicks.ErrBadRequest) {
		t.Fatalf("WriteJSON(invalid) = %v, want a non-client error", err)
	}
	if p, internal := quicks.ProblemFor(err); p.Status != 500 || !internal {
		t.Errorf("ProblemFor(invalid answer) = %+v, want 500", p)
	}
	if rec.Body.Len() != 0 {
		t.Errorf("WriteJSON(invalid) wrote %q", rec.Body)
	}
}
