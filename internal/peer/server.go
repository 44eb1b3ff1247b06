package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/kmsproto"
)

// MaxPayload is the largest request or reply payload, in bytes.
const MaxPayload = 4 << 20

// Handler processes one request. payload is the CBOR of kmsproto.Sealed
// exactly as received (the handler owns it); it returns the CBOR of the
// sealed reply, or an error that maps to a CoAP code (see ErrBadRequest and
// its siblings; anything else is 5.00). Error texts are logged, so they must
// not contain key material or payload bytes.
type Handler func(ctx context.Context, t kmsproto.Type, payload []byte) ([]byte, error)

// Path is the CoAP resource of message type t.
func Path(t kmsproto.Type) string { return "/kms/v1/" + string(t) }

// linkAttrs are the RFC 6690 attributes listed at /.well-known/core.
func linkAttrs(t kmsproto.Type) string {
	return fmt.Sprintf(`rt="qkms.kms";if="%s";ct=%d`, t, message.AppCBOR)
}

// Register adds a resource for every kmsproto.Types entry to r, each
// served by h. log receives one line per failed request, never payloads.
func Register(r *coapx.Router, h Handler, log *slog.Logger) error {
	if r == nil || h == nil {
		return errors.New("peer: Register needs a router and a handler")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, t := range kmsproto.Types {
		res := &resource{t: t, h: h, log: log.With("type", string(t))}
		if err := r.Handle(Path(t), linkAttrs(t), res.serve); err != nil {
			return fmt.Errorf("peer: register %s: %w", t, err)
		}
	}
	return nil
}

// resource serves one message type.
type resource struct {
	t   kmsproto.Type
	h   Handler
	log *slog.Logger
}

func (s *resource) serve(w mux.ResponseWriter, req *mux.Message) {
	start := time.Now()
	remote := w.Conn().RemoteAddr()
	reply, err := s.process(withRemoteAddr(req.Context(), remote), req)
	code := codeOf(err)
	if code != codes.Changed {
		reply = nil // errors carry no body: the code is the whole answer
		s.logFailure(code, remote, err)
	}
	coapx.Respond(w, s.log, code, message.AppCBOR, reply)
	s.log.Debug("peer request", "remote", remote, "code", code, "reply_bytes", len(reply), "dur", time.Since(start))
}

// process checks the request and runs the handler.
func (s *resource) process(ctx context.Context, req *mux.Message) ([]byte, error) {
	if req.Code() != codes.POST {
		return nil, errMethod
	}
	if cf, err := req.ContentFormat(); err != nil || cf != message.AppCBOR {
		return nil, ErrUnsupportedFormat
	}
	if acc, err := req.Accept(); err == nil && acc != message.AppCBOR {
		return nil, errNotAcceptable
	}
	payload, err := readBody(req)
	if err != nil {
		return nil, err
	}
	if len(payload) == 0 {
		return nil, fmt.Errorf("%w: empty payload", ErrBadRequest)
	}
	reply, err := s.call(ctx, payload)
	if err == nil && len(reply) > MaxPayload {
		return nil, fmt.Errorf("%w: reply of %d bytes exceeds %d", ErrInternal, len(reply), MaxPayload)
	}
	return reply, err
}

// call runs the handler; a panic becomes a 5.00 instead of a dead process.
func (s *resource) call(ctx context.Context, payload []byte) (reply []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			reply, err = nil, fmt.Errorf("%w: handler panic: %v", ErrInternal, p)
		}
	}()
	return s.h(ctx, s.t, payload)
}

func (s *resource) logFailure(code codes.Code, remote net.Addr, err error) {
	switch {
	case code == codes.Unauthorized:
		s.log.Warn("peer: request rejected", "remote", remote, "code", code, "err", err)
	case code >= codes.InternalServerError && code != codes.ServiceUnavailable:
		s.log.Error("peer: request failed", "remote", remote, "code", code, "err", err)
	default:
		s.log.Info("peer: request refused", "remote", remote, "code", code, "err", err)
	}
}

// readBody reads the request body, at most MaxPayload bytes.
func readBody(req *mux.Message) ([]byte, error) {
	body := req.Body()
	if body == nil {
		return nil, nil
	}
	size, err := req.BodySize()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if size > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, MaxPayload)
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return b, nil
}

type remoteAddrKey struct{}

func withRemoteAddr(ctx context.Context, a net.Addr) context.Context {
	return context.WithValue(ctx, remoteAddrKey{}, a)
}

// RemoteAddr returns the address of the peer whose request a Handler is
// serving.
func RemoteAddr(ctx context.Context) (net.Addr, bool) {
	a, ok := ctx.Value(remoteAddrKey{}).(net.Addr)
	return a, ok && a != nil
}
