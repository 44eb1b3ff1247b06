package tcp004

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// conn is one client connection, served by one goroutine, one request at a
// time.
type conn struct {
	srv  *Server
	raw  net.Conn // closed from other goroutines (a tls.Conn's Close may wait for a write)
	tc   *tls.Conn
	busy bool // a request is being handled; guarded by srv.mu
}

// errShutting: the server is shutting down; the connection ends quietly.
var errShutting = errors.New("tcp004: server shutting down")

func (c *conn) serve() {
	defer c.srv.untrack(c)
	defer c.tc.Close()
	log := c.srv.log.With("remote", c.raw.RemoteAddr().String())
	caller, err := c.handshake()
	if err != nil {
		log.Info("etsi004 tcp: handshake failed", "err", err)
		return
	}
	log = log.With("peer", string(caller))
	for {
		h, p, err := c.readRequest()
		if err != nil {
			c.logReadError(log, err)
			return
		}
		if err := c.handle(log, caller, h, p); err != nil {
			if errors.Is(err, ErrMalformed) || errors.Is(err, etsi004.ErrBadRequest) {
				log.Warn("etsi004 tcp: bad request, closing the connection", "type", h.Type, "err", err)
			} else {
				log.Error("etsi004 tcp: closing the connection", "type", h.Type, "err", err)
			}
			return
		}
		if !c.setBusy(false) {
			return
		}
	}
}

// handshake runs the TLS handshake and returns the caller's SAE ID, the CN
// of its verified client certificate.
func (c *conn) handshake() (qkd.SAEID, error) {
	ctx, cancel := context.WithTimeout(c.srv.base, c.srv.opts.HandshakeTimeout)
	defer cancel()
	if err := c.tc.HandshakeContext(ctx); err != nil {
		return "", err
	}
	cs := c.tc.ConnectionState()
	cn, ok := pki.PeerCN(&cs)
	if !ok {
		return "", errors.New("client certificate without a common name")
	}
	return qkd.SAEID(cn), nil
}

// readRequest waits (IdleTimeout) for a header, marks the connection busy
// and reads the payload (ReadTimeout).
func (c *conn) readRequest() (Header, []byte, error) {
	var hb [HeaderLen]byte
	if err := c.raw.SetReadDeadline(time.Now().Add(c.srv.opts.IdleTimeout)); err != nil {
		return Header{}, nil, err
	}
	if _, err := io.ReadFull(c.tc, hb[:]); err != nil {
		return Header{}, nil, err
	}
	if !c.setBusy(true) {
		return Header{}, nil, errShutting
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return h, nil, err
	}
	if err := c.raw.SetReadDeadline(time.Now().Add(c.srv.opts.ReadTimeout)); err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.tc, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, fmt.Errorf("reading a %d-byte %v payload: %w", h.Length, h.Type, err)
	}
	return h, p, nil
}

func (c *conn) logReadError(log *slog.Logger, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, errShutting), errors.Is(err, net.ErrClosed):
		log.Debug("etsi004 tcp: connection closed", "err", err)
	case errors.Is(err, ErrMalformed):
		log.Warn("etsi004 tcp: bad frame, closing the connection", "err", err)
	case errors.As(err, &ne) && ne.Timeout():
		log.Info("etsi004 tcp: timeout, closing the connection", "err", err)
	default:
		log.Info("etsi004 tcp: read failed, closing the connection", "err", err)
	}
}

// setBusy marks the connection busy or idle; false if the server is
// shutting down (the connection must end).
func (c *conn) setBusy(busy bool) bool {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	c.busy = busy
	return !c.srv.shutting
}

// closeIfIdle closes the connection unless a request is in progress. The
// caller holds srv.mu.
func (c *conn) closeIfIdle() {
	if !c.busy {
		_ = c.raw.Close()
	}
}

// handle decodes one request, calls the service and writes the answer.
func (c *conn) handle(log *slog.Logger, caller qkd.SAEID, h Header, p []byte) error {
	switch h.Type {
	case OpenConnectRequest:
		return c.openConnect(log, caller, p)
	case GetKeyRequest:
		return c.getKey(log, caller, p)
	case CloseRequest:
		return c.close(log, caller, p)
	}
	return malformed("%v is not a request", h.Type)
}

func (c *conn) openConnect(log *slog.Logger, caller qkd.SAEID, p []byte) error {
	req, err := DecodeOpenRequest(p)
	if err != nil {
		return err
	}
	resp, err := c.srv.svc.OpenConnect(c.srv.base, caller, req)
	if err != nil {
		return fmt.Errorf("OPEN_CONNECT: %w", err)
	}
	// URIs may carry credentials (ETSI GS QKD 004): log only the
	// applications they name.
	log.Debug("etsi004 tcp: OPEN_CONNECT", "source", appForLog(req.Source), "destination", appForLog(req.Destination),
		"ksid", resp.KeyStreamID.String(), "status", uint32(resp.Status))
	b, err := AppendOpenResponse(beginFrame(OpenConnectResponse), resp)
	if err != nil {
		return err
	}
	return c.write(b)
}

func (c *conn) getKey(log *slog.Logger, caller qkd.SAEID, p []byte) error {
	req, err := DecodeGetKeyRequest(p)
	if err != nil {
		return err
	}
	resp, err := c.srv.svc.GetKey(c.srv.base, caller, req)
	defer secret.Wipe(resp.Key)
	if err != nil {
		return fmt.Errorf("GET_KEY: %w", err)
	}
	log.Debug("etsi004 tcp: GET_KEY", "ksid", req.KeyStreamID.String(), "index", req.Index,
		"status", uint32(resp.Status), "key_bytes", len(resp.Key))
	b, err := AppendGetKeyResponse(beginFrame(GetKeyResponse), resp)
	defer secret.Wipe(b)
	if err != nil {
		return err
	}
	return c.write(b)
}

func (c *conn) close(log *slog.Logger, caller qkd.SAEID, p []byte) error {
	req, err := DecodeCloseRequest(p)
	if err != nil {
		return err
	}
	resp, err := c.srv.svc.Close(c.srv.base, caller, req)
	if err != nil {
		return fmt.Errorf("CLOSE: %w", err)
	}
	log.Debug("etsi004 tcp: CLOSE", "ksid", req.KeyStreamID.String(), "status", uint32(resp.Status))
	return c.write(AppendCloseResponse(beginFrame(CloseResponse), resp))
}

// write sets the frame's payload length and writes it within WriteTimeout.
func (c *conn) write(frame []byte) error {
	if err := finishFrame(frame); err != nil {
		return err
	}
	if err := c.raw.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout)); err != nil {
		return err
	}
	if _, err := c.tc.Write(frame); err != nil {
		return fmt.Errorf("writing the response: %w", err)
	}
	return nil
}

// appForLog returns the application a URI names, without user information
// (etsi004.AppID keeps "user:password@" in the authority), or "" if it
// names none.
func appForLog(uri string) string {
	id, err := etsi004.AppID(uri)
	if err != nil {
		return ""
	}
	s := string(id)
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
