package coap004

import (
	"context"
	"errors"
	"log/slog"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/etsi004"
)

// Conditions a request can fail on before or instead of a 004 outcome.
var (
	errUnauthenticated = errors.New("coap004: no caller identity")
	errMethod          = errors.New("coap004: POST only")
	errNotAcceptable   = errors.New("coap004: accept 60 (cbor) or 50 (json)")
	errTooLarge        = errors.New("coap004: request body too large")
	errFormat          = errors.New("coap004: content-format 60 (cbor) or 50 (json)")
)

// codeTable is the only place where errors and CoAP codes meet. text is
// the diagnostic payload; empty means the error's own (safe, short) text.
var codeTable = []struct {
	err  error
	code codes.Code
	text string
}{
	{etsi004.ErrBadRequest, codes.BadRequest, ""},
	{errUnauthenticated, codes.Unauthorized, "client certificate required"},
	{errMethod, codes.MethodNotAllowed, "POST only"},
	{errNotAcceptable, codes.NotAcceptable, "accept 60 (cbor) or 50 (json)"},
	{errTooLarge, codes.RequestEntityTooLarge, "request body over 4096 bytes"},
	{errFormat, codes.UnsupportedMediaType, "content-format 60 (cbor) or 50 (json)"},
	{context.DeadlineExceeded, codes.ServiceUnavailable, "call did not finish in time"},
	{context.Canceled, codes.ServiceUnavailable, "service unavailable"},
}

// maxDiagnostic bounds a diagnostic payload.
const maxDiagnostic = 160

// failure maps err to its code and diagnostic, and logs it.
func (s *server) failure(log *slog.Logger, err error) (codes.Code, []byte) {
	code, text := codes.InternalServerError, "internal error"
	for _, e := range codeTable {
		if errors.Is(err, e.err) {
			code, text = e.code, e.text
			if text == "" {
				text = err.Error()
			}
			break
		}
	}
	if len(text) > maxDiagnostic {
		text = text[:maxDiagnostic]
	}
	if code >= codes.InternalServerError {
		log.Error("coap004: call failed", "code", code, "err", err)
	} else {
		log.Info("coap004: request refused", "code", code, "err", err)
	}
	return code, []byte(text)
}

// fail answers a request with the error's code and diagnostic.
func (s *server) fail(w mux.ResponseWriter, log *slog.Logger, err error) {
	code, text := s.failure(log.With("remote", w.Conn().RemoteAddr()), err)
	coapx.Respond(w, log, code, message.TextPlain, text)
}
