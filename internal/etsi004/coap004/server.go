package coap004

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// The profile's resources.
const (
	PathOpenConnect = "/etsi004/open_connect"
	PathGetKey      = "/etsi004/get_key"
	PathClose       = "/etsi004/close"
)

// Interface is the if= attribute of the three resources at
// /.well-known/core: the application interface of a KMS (pull mode), as
// opposed to a QKD module's push-mode resources of the same names.
const Interface = "qkms.etsi004.app"

// Defaults of Options.
const (
	DefaultSeparateAfter = time.Second
	DefaultMaxCallTime   = 5 * time.Minute
)

// separateWriteTimeout bounds the delivery of a separate response (its
// retransmissions included).
const separateWriteTimeout = time.Minute

// Options configure Register. The zero value serves TLS/DTLS callers only.
type Options struct {
	// Log receives one line per failed request (never payloads).
	Log *slog.Logger
	// InsecureCallerQuery is for loopback tests only. On a connection
	// without a verified TLS/DTLS client certificate the caller is the
	// Uri-Query parameter sae=<SAE ID>, which anyone can set. Off, such a
	// request gets 4.01. A certificate always wins over the query.
	InsecureCallerQuery bool
	// SeparateAfter: over UDP, a call still running after this long is
	// acknowledged with an empty ACK and answered by a separate response
	// (RFC 7252 §5.2.2), so the client stops retransmitting. Default
	// DefaultSeparateAfter.
	SeparateAfter time.Duration
	// MaxCallTime bounds one call, whatever QoS.Timeout says; the service's
	// context is cancelled then. Default DefaultMaxCallTime.
	MaxCallTime time.Duration
}

// server holds what the three resources share.
type server struct {
	svc  etsi004.Service
	opts Options
	log  *slog.Logger
}

// op runs a decoded call and returns the encoded response.
type op func(ctx context.Context) ([]byte, error)

// decoder turns a request body into an op for caller, answering in f.
type decoder func(s *server, caller qkd.SAEID, in, out Format, body []byte) (op, error)

// Register adds the three 004 resources to r, served by svc, each listed
// at /.well-known/core as `rt="etsi.qkd.004.<call>";if="qkms.etsi004.app";ct="60 50"`.
func Register(r *coapx.Router, svc etsi004.Service, opts Options) error {
	if r == nil || svc == nil {
		return errors.New("coap004: Register needs a router and a service")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.SeparateAfter <= 0 {
		opts.SeparateAfter = DefaultSeparateAfter
	}
	if opts.MaxCallTime <= 0 {
		opts.MaxCallTime = DefaultMaxCallTime
	}
	s := &server{svc: svc, opts: opts, log: opts.Log}
	for _, res := range []struct {
		path, call string
		dec        decoder
	}{
		{PathOpenConnect, "open_connect", decodeOpen},
		{PathGetKey, "get_key", decodeGetKey},
		{PathClose, "close", decodeClose},
	} {
		attrs := fmt.Sprintf(`rt="etsi.qkd.004.%s";if=%q;ct="%d %d"`, res.call, Interface, message.AppCBOR, message.AppJSON)
		dec, log := res.dec, s.log.With("call", res.call)
		h := func(w mux.ResponseWriter, req *mux.Message) { s.serve(w, req, dec, log) }
		if err := r.Handle(res.path, attrs, h); err != nil {
			return fmt.Errorf("coap004: %w", err)
		}
	}
	return nil
}

func decodeOpen(s *server, caller qkd.SAEID, in, out Format, body []byte) (op, error) {
	req, err := DecodeOpenRequest(in, body)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) ([]byte, error) {
		resp, err := s.svc.OpenConnect(ctx, caller, req)
		if err != nil {
			return nil, err
		}
		return EncodeOpenResponse(out, resp)
	}, nil
}

func decodeGetKey(s *server, caller qkd.SAEID, in, out Format, body []byte) (op, error) {
	req, err := DecodeGetKeyRequest(in, body)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) ([]byte, error) {
		resp, err := s.svc.GetKey(ctx, caller, req)
		defer secret.Wipe(resp.Key) // the binding owns the key now
		if err != nil {
			return nil, err
		}
		return EncodeGetKeyResponse(out, resp)
	}, nil
}

func decodeClose(s *server, caller qkd.SAEID, in, out Format, body []byte) (op, error) {
	req, err := DecodeCloseRequest(in, body)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) ([]byte, error) {
		resp, err := s.svc.Close(ctx, caller, req)
		if err != nil {
			return nil, err
		}
		return EncodeCloseResponse(out, resp)
	}, nil
}

// serve is every resource's handler: checks, decoding, the call, and the
// answer (piggy-backed or, over UDP after SeparateAfter, separate).
func (s *server) serve(w mux.ResponseWriter, req *mux.Message, dec decoder, log *slog.Logger) {
	call, out, err := s.prepare(w, req, dec)
	if err != nil {
		s.fail(w, log, err)
		return
	}
	conn := w.Conn()
	ctx, cancel := context.WithTimeout(conn.Context(), s.opts.MaxCallTime)
	if _, udp := conn.(*udpclient.Conn); !udp {
		p, err := s.run(ctx, call)
		cancel()
		s.answer(w, req, log, out, p, err)
		return
	}
	done := make(chan result, 1)
	go func() {
		defer cancel()
		p, err := s.run(ctx, call)
		done <- result{p, err}
	}()
	t := time.NewTimer(s.opts.SeparateAfter)
	defer t.Stop()
	select {
	case r := <-done:
		s.answer(w, req, log, out, r.payload, r.err)
		return
	case <-t.C:
	}
	// Leaving the response unset makes go-coap acknowledge the request
	// with an empty ACK (a confirmable one; nothing for a NON request).
	sep := separate{conn: conn, token: bytes.Clone(req.Token()), typ: req.Type(), out: out}
	go func() {
		r := <-done
		s.sendSeparate(sep, log, r)
	}()
}

type result struct {
	payload []byte
	err     error
}

// run calls the service; a panic becomes an internal error.
func (s *server) run(ctx context.Context, call op) (p []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("coap004: service panic: %v", r)
		}
	}()
	return call(ctx)
}

// prepare checks method and formats, reads the body, names the caller
// and decodes the request.
func (s *server) prepare(w mux.ResponseWriter, req *mux.Message, dec decoder) (op, Format, error) {
	if req.Code() != codes.POST {
		return nil, 0, errMethod
	}
	in, out, err := formats(req)
	if err != nil {
		return nil, 0, err
	}
	body, err := readRequestBody(req)
	if err != nil {
		return nil, 0, err
	}
	caller, err := s.caller(w.Conn(), req)
	if err != nil {
		return nil, 0, err
	}
	call, err := dec(s, caller, in, out, body)
	return call, out, err
}

// formats returns the request's format (Content-Format; absent = CBOR)
// and the answer's (Accept, else the request's).
func formats(req *mux.Message) (in, out Format, err error) {
	in = CBOR
	if cf, e := req.ContentFormat(); e == nil {
		f, ok := formatOf(cf)
		if !ok {
			return 0, 0, errFormat
		}
		in = f
	}
	out = in
	if acc, e := req.Accept(); e == nil {
		f, ok := formatOf(acc)
		if !ok {
			return 0, 0, errNotAcceptable
		}
		out = f
	}
	return in, out, nil
}

func formatOf(m message.MediaType) (Format, bool) {
	switch m {
	case message.AppCBOR:
		return CBOR, true
	case message.AppJSON:
		return JSON, true
	}
	return 0, false
}

// MediaType is f's CoAP Content-Format.
func (f Format) MediaType() message.MediaType {
	if f == JSON {
		return message.AppJSON
	}
	return message.AppCBOR
}

// readRequestBody reads the request body, at most MaxRequestSize bytes.
func readRequestBody(req *mux.Message) ([]byte, error) {
	body := req.Body()
	if body == nil {
		return nil, fmt.Errorf("%w: empty body", etsi004.ErrBadRequest)
	}
	size, err := req.BodySize()
	if err != nil {
		return nil, fmt.Errorf("%w: unreadable body", etsi004.ErrBadRequest)
	}
	if size > MaxRequestSize {
		return nil, errTooLarge
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%w: unreadable body", etsi004.ErrBadRequest)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, fmt.Errorf("%w: unreadable body", etsi004.ErrBadRequest)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty body", etsi004.ErrBadRequest)
	}
	return b, nil
}

// answer sets the piggy-backed (UDP) or only (TCP) response.
func (s *server) answer(w mux.ResponseWriter, req *mux.Message, log *slog.Logger, out Format, p []byte, err error) {
	if err != nil {
		s.fail(w, log, err)
		return
	}
	coapx.Respond(w, log, codes.Changed, out.MediaType(), p)
	// go-coap writes after the handler returns; over UDP it can say when.
	// Over TCP the payload is left to the garbage collector (go-coap's own
	// copy of the marshalled message is never wiped either).
	responsewriter.AfterWrite(req.Context(), func() { secret.Wipe(p) })
}

// separate is what a separate response needs after the handler returned.
type separate struct {
	conn  mux.Conn
	token message.Token
	typ   message.Type
	out   Format
}

// sendSeparate writes the answer of a call whose request was acknowledged
// empty: confirmable for a confirmable request, waiting for its ACK.
func (s *server) sendSeparate(sep separate, log *slog.Logger, r result) {
	defer secret.Wipe(r.payload)
	code, cf, p := codes.Changed, sep.out.MediaType(), r.payload
	if r.err != nil {
		code, p = s.failure(log, r.err)
		cf = message.TextPlain
	}
	ctx, cancel := context.WithTimeout(sep.conn.Context(), separateWriteTimeout)
	defer cancel()
	m := sep.conn.AcquireMessage(ctx)
	defer sep.conn.ReleaseMessage(m)
	m.SetCode(code)
	m.SetToken(sep.token)
	m.SetContentFormat(cf)
	m.SetType(message.Confirmable)
	if sep.typ == message.NonConfirmable {
		m.SetType(message.NonConfirmable)
	}
	m.SetBody(bytes.NewReader(p))
	if err := sep.conn.WriteMessage(m); err != nil {
		log.Info("coap004: separate response not delivered", "remote", sep.conn.RemoteAddr(), "err", err)
	}
}
