package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/qkms/qkms/internal/quicks"
)

// DefaultMaxBodyBytes limits request bodies when no other limit is set.
const DefaultMaxBodyBytes = 1 << 20

// ReadBody reads the whole request body, at most limit bytes (413 beyond).
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, fmt.Errorf("%w: limit %d bytes", quicks.ErrTooLarge, limit)
		}
		return nil, quicks.BadField("body", "cannot be read")
	}
	return b, nil
}

// Validator is a message that can check itself.
type Validator interface{ Validate() error }

// answerError is an invalid answer of a backend: a 500, never the 400 its
// validation errors would map to.
type answerError struct{ err error }

func (e *answerError) Error() string {
	return "backend answer does not match the QUICKS schema: " + e.err.Error()
}

// WriteJSON checks v (if it is a Validator), encodes it and writes it with
// status. A backend answer that breaks the schema is an internal error.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	if vv, ok := v.(Validator); ok {
		if err := vv.Validate(); err != nil {
			return &answerError{err}
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	WriteBytes(w, status, quicks.MediaTypeJSON, b)
	return nil
}

// WriteBytes writes b with status and content type ("" with an empty b:
// no body at all).
func WriteBytes(w http.ResponseWriter, status int, contentType string, b []byte) {
	h := w.Header()
	if contentType != "" {
		h.Set("Content-Type", contentType)
		h.Set("X-Content-Type-Options", "nosniff")
	}
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	if len(b) > 0 {
		_, _ = w.Write(b)
	}
}

// WriteEmpty answers status without a body.
func WriteEmpty(w http.ResponseWriter, status int) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	WriteBytes(w, status, "", nil)
}

// query returns the only value of a query parameter. Repeating it is a
// client error.
func query(r *http.Request, name string) (string, bool, error) {
	vs, ok := r.URL.Query()[name]
	switch {
	case !ok:
		return "", false, nil
	case len(vs) > 1:
		return "", true, quicks.BadField(name, "query parameter given more than once")
	}
	return vs[0], true, nil
}

// QueryString returns a required, non-empty query parameter.
func QueryString(r *http.Request, name string) (string, error) {
	v, ok, err := query(r, name)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", quicks.BadField(name, "required query parameter")
	case v == "":
		return "", quicks.BadField(name, "query parameter must not be empty")
	}
	return v, nil
}

// QueryBool returns an optional boolean query parameter ("true" or "false").
func QueryBool(r *http.Request, name string) (bool, error) {
	v, ok, err := query(r, name)
	if err != nil || !ok {
		return false, err
	}
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, quicks.BadField(name, fmt.Sprintf("must be true or false, not %q", clip(v)))
}

// QueryInt returns an optional non-negative integer query parameter, or def.
func QueryInt(r *http.Request, name string, def int) (int, error) {
	v, ok, err := query(r, name)
	if err != nil || !ok {
		return def, err
	}
	n, perr := strconv.Atoi(v)
	if perr != nil || n < 0 {
		return 0, quicks.BadField(name, fmt.Sprintf("must be a non-negative integer, not %q", clip(v)))
	}
	return n, nil
}

// UUIDParam returns a path parameter that must be a UUID.
func UUIDParam(p Params, name string) (string, error) {
	v := p[name]
	if !quicks.IsUUID(v) {
		return "", quicks.BadField(name, fmt.Sprintf("path parameter must be a UUID, not %q", clip(v)))
	}
	return v, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// DecodeBody reads the request body and decodes it with dec (a
// quicks.Decode* function); a UTF-8 byte order mark is skipped.
func DecodeBody[T any](w http.ResponseWriter, r *http.Request, limit int64, dec func([]byte) (T, error)) (T, error) {
	b, err := ReadBody(w, r, limit)
	if err != nil {
		var zero T
		return zero, err
	}
	return dec(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")))
}
