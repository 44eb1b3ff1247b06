package quicks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Problem is an RFC 9457 problem details object, the error-response schema
// of both OpenAPI files: title, status and detail required, type optional.
// As an error (what a client returns for a non-2xx answer) it unwraps to
// the sentinel of its status, so errors.Is(err, ErrNotFound) works across
// the wire.
type Problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// NewProblem returns a problem of type about:blank whose title is the
// status phrase (RFC 9457 §4.2.1).
func NewProblem(status int, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: statusTitle(status), Status: status, Detail: detail}
}

func statusTitle(status int) string {
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "HTTP " + strconv.Itoa(status)
}

func (p *Problem) Error() string {
	return fmt.Sprintf("quicks: %d %s: %s", p.Status, p.Title, p.Detail)
}

// Unwrap returns the sentinel of p.Status (ErrBadRequest for 400, ...), or
// nil for a status without one.
func (p *Problem) Unwrap() error {
	switch p.Status {
	case http.StatusBadRequest:
		return ErrBadRequest
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusRequestEntityTooLarge:
		return ErrTooLarge
	case http.StatusNotImplemented:
		return ErrNotSupported
	case http.StatusServiceUnavailable:
		return ErrUnavailable
	}
	return nil
}

// statusOf lists the sentinels in the order ProblemFor tries them.
var statusOf = []struct {
	err    error
	status int
}{
	{ErrBadRequest, http.StatusBadRequest},
	{ErrForbidden, http.StatusForbidden},
	{ErrNotFound, http.StatusNotFound},
	{ErrConflict, http.StatusConflict},
	{ErrTooLarge, http.StatusRequestEntityTooLarge},
	{ErrNotSupported, http.StatusNotImplemented},
	{ErrUnavailable, http.StatusServiceUnavailable},
}

// ProblemFor maps an error to the problem a server answers. It is the only
// place that chooses error statuses: an error wrapping one of the sentinels
// of this package gets that status and its own text as detail; anything
// else is 500 with the fixed detail "internal error" and internal = true
// (the caller logs the cause).
func ProblemFor(err error) (p *Problem, internal bool) {
	for _, s := range statusOf {
		if errors.Is(err, s.err) {
			return NewProblem(s.status, err.Error()), false
		}
	}
	return NewProblem(http.StatusInternalServerError, "internal error"), true
}

// WriteProblem writes p as application/problem+json with status p.Status.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	b, err := json.Marshal(p)
	if err != nil { // cannot happen: strings and an int
		b = []byte(`{"title":"Internal Server Error","status":500,"detail":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", MediaTypeProblem)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(b)
}

// DecodeProblem parses an application/problem+json body: a JSON object
// with the required members title, status and detail.
func DecodeProblem(data []byte) (*Problem, error) {
	p, err := decode(data, problemShape, (*Problem).check)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *Problem) check() error {
	var c checker
	if p.Status < 100 || p.Status > 599 {
		c.fail("status", "must be an HTTP status code")
	}
	return c.err()
}

// maxDetail bounds the detail made from a body that is not a problem.
const maxDetail = 512

// ProblemFromResponse returns the problem of a non-2xx answer: the decoded
// body if it is a valid problem (either JSON media type), otherwise a
// problem made from status (the body, trimmed, as detail). Its Status is
// always the HTTP status of the answer.
func ProblemFromResponse(status int, contentType string, body []byte) *Problem {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == MediaTypeProblem || mt == MediaTypeJSON {
		if p, err := DecodeProblem(body); err == nil {
			p.Status = status
			return p
		}
	}
	detail := string(bytes.TrimSpace(body))
	if len(detail) > maxDetail {
		detail = detail[:maxDetail]
	}
	detail = strings.ToValidUTF8(detail, "")
	if detail == "" {
		detail = statusTitle(status)
	}
	return NewProblem(status, detail)
}
