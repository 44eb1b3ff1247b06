package quicks_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/quickstest"
)

func TestProblemFor(t *testing.T) {
	tests := []struct {
		err          error
		wantStatus   int
		wantDetail   string
		wantInternal bool
	}{
		{quicks.BadField("state", "required"), 400, "state: required", false},
		{quicks.FieldErrors{{Field: "a", Reason: "x"}, {Field: "b", Reason: "y"}}, 400, "a: x; b: y", false},
		{fmt.Errorf("%w: remote state change disabled", quicks.ErrForbidden), 403, "forbidden: remote state change disabled", false},
		{fmt.Errorf("link 1: %w", quicks.ErrNotFound), 404, "link 1: not found", false},
		{quicks.ErrConflict, 409, "conflict", false},
		{quicks.ErrTooLarge, 413, "request body too large", false},
		{fmt.Errorf("%w: multipath", quicks.ErrNotSupported), 501, "not supported by this implementation: multipath", false},
		{errors.New("disk on fire at /var/lib/qkms"), 500, "internal error", true},
	}
	for _, tt := range tests {
		p, internal := quicks.ProblemFor(tt.err)
		want := &quicks.Problem{Type: "about:blank", Title: http.StatusText(tt.wantStatus), Status: tt.wantStatus, Detail: tt.wantDetail}
		if diff := cmp.Diff(want, p); diff != "" || internal != tt.wantInternal {
			t.Errorf("ProblemFor(%v) internal=%v mismatch (-want +got):\n%s", tt.err, internal, diff)
		}
		// Across the wire the client sees the same sentinel.
		if s := p.Unwrap(); s != nil && !errors.Is(tt.err, s) {
			t.Errorf("ProblemFor(%v).Unwrap() = %v, not matched by the error", tt.err, s)
		}
	}
}

func TestWriteProblem(t *testing.T) {
	rec := httptest.NewRecorder()
	quicks.WriteProblem(rec, quicks.NewProblem(http.StatusNotFound, "no such link"))
	if rec.Code != 404 || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("WriteProblem: %d %q, want 404 application/problem+json", rec.Code, rec.Header().Get("Content-Type"))
	}
	want := map[string]any{"type": "string", "title": "string", "status": "number", "detail": "string"}
	if diff := cmp.Diff(want, quickstest.TypeTree(t, rec.Body.Bytes())); diff != "" {
		t.Errorf("problem body mismatch (-want +got):\n%s", diff)
	}
	p, err := quicks.DecodeProblem(rec.Body.Bytes())
	if err != nil || p.Detail != "no such link" || !errors.Is(p, quicks.ErrNotFound) {
		t.Errorf("DecodeProblem = %+v, %v", p, err)
	}
}

func TestProblemFromResponse(t *testing.T) {
	tests := []struct {
		status int
		ct     string
		body   string
		want   quicks.Problem
	}{
		{409, "application/problem+json", `{"title":"Conflict","status":409,"detail":"exists"}`, quicks.Problem{Title: "Conflict", Status: 409, Detail: "exists"}},
		// The HTTP status wins over the body's.
		{400, "application/problem+json; charset=utf-8", `{"title":"t","status":500,"detail":"d"}`, quicks.Problem{Title: "t", Status: 400, Detail: "d"}},
		// A 404 from a web server, no problem body (QUICKS readme §3.6).
		{404, "text/plain", "404 page not found\n", quicks.Problem{Type: "about:blank", Title: "Not Found", Status: 404, Detail: "404 page not found"}},
		{501, "", "", quicks.Problem{Type: "about:blank", Title: "Not Implemented", Status: 501, Detail: "Not Implemented"}},
		// Not a valid problem: missing detail.
		{400, "application/problem+json", `{"title":"x","status":400}`, quicks.Problem{Type: "about:blank", Title: "Bad Request", Status: 400, Detail: `{"title":"x","status":400}`}},
	}
	for _, tt := range tests {
		got := quicks.ProblemFromResponse(tt.status, tt.ct, []byte(tt.body))
		if diff := cmp.Diff(&tt.want, got); diff != "" {
			t.Errorf("ProblemFromResponse(%d, %q, %q) mismatch (-want +got):\n%s", tt.status, tt.ct, tt.body, diff)
		}
	}
}

func TestProblemUnwrap(t *testing.T) {
	for status, want := range map[int]error{
		400: quicks.ErrBadRequest, 403: quicks.ErrForbidden, 404: quicks.ErrNotFound,
		409: quicks.ErrConflict, 413: quicks.ErrTooLarge, 501: quicks.ErrNotSupported, 503: quicks.ErrUnavailable, 500: nil, 502: nil,
	} {
		var err error = quicks.NewProblem(status, "d")
		if got := errors.Unwrap(err); got != want {
			t.Errorf("NewProblem(%d).Unwrap() = %v, want %v", status, got, want)
		}
	}
}
