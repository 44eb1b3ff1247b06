package etsi014

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/qkms/qkms/internal/qkd"
)

// unavailable are the domain errors whose own text is the public message
// of a 503 (clauses 5.2 to 5.4: "error on server side").
var unavailable = []error{
	qkd.ErrInsufficientKey,
	qkd.ErrNoRoute,
	qkd.ErrPeerUnavailable,
	qkd.ErrInactive,
}

// writeError maps an error of the request or of the service to the ETSI
// status code and Error body. It is the only place that does so.
//
//   - *qkd.RequestError: 400 with its message and details;
//   - qkd.ErrNotFound: 400 "one or more keys specified are not found on KME";
//   - qkd.ErrUnauthorized, qkd.ErrUnknownSAE: 401 {"message":"unauthorized"};
//   - the errors in unavailable: 503 with the sentinel's text;
//   - anything else: 503 "internal error", the cause logged.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if re, ok := errors.AsType[*qkd.RequestError](err); ok {
		writeJSON(w, http.StatusBadRequest, errorJSON{Message: re.Msg, Details: re.Details})
		return
	}
	switch {
	case errors.Is(err, qkd.ErrNotFound):
		writeJSON(w, http.StatusBadRequest, errorJSON{Message: qkd.ErrNotFound.Error()})
		return
	case errors.Is(err, qkd.ErrUnauthorized), errors.Is(err, qkd.ErrUnknownSAE):
		s.log.Debug("etsi014: unauthorized", "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusUnauthorized, errorJSON{Message: "unauthorized"})
		return
	}
	for _, u := range unavailable {
		if errors.Is(err, u) {
			writeJSON(w, http.StatusServiceUnavailable, errorJSON{Message: u.Error()})
			return
		}
	}
	level := slog.LevelError
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		level = slog.LevelDebug // the client went away
	}
	s.log.Log(r.Context(), level, "etsi014: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusServiceUnavailable, errorJSON{Message: "internal error"})
}
