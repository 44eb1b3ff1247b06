package coap004

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// ClientOptions configure a Client. The zero value sends CBOR.
type ClientOptions struct {
	// Format of requests and answers. Default CBOR.
	Format Format
	// Log receives go-coap's errors.
	Log *slog.Logger
	// InsecureCaller, if set, is sent as sae=<ID> with every request: the
	// caller identity of a server in its test-only InsecureCallerQuery
	// mode. Never needed over TLS, where the certificate names the caller.
	InsecureCaller qkd.SAEID
}

// Client calls the three 004 functions of a KMS over one CoAP connection.
// It is safe for concurrent use (over UDP go-coap sends one request at a
// time, NSTART = 1).
type Client struct {
	conn mux.Conn
	opts ClientOptions
}

// DialUDP connects over CoAP/UDP (coap://). ctx bounds the connection's
// lifetime.
func DialUDP(ctx context.Context, addr string, opts ClientOptions) (*Client, error) {
	c, err := coapx.DialUDP(ctx, addr, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("coap004: dial %s: %w", addr, err)
	}
	return &Client{conn: c, opts: opts}, nil
}

// DialTCP connects over CoAP/TCP (coap+tcp://).
func DialTCP(ctx context.Context, addr string, opts ClientOptions) (*Client, error) {
	c, err := coapx.DialTCP(ctx, addr, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("coap004: dial %s: %w", addr, err)
	}
	return &Client{conn: c, opts: opts}, nil
}

// DialTLS connects over CoAP/TLS (coaps+tcp://); cfg carries the client
// certificate that names the caller (see pki.ClientTLSConfig).
func DialTLS(ctx context.Context, addr string, cfg *tls.Config, opts ClientOptions) (*Client, error) {
	if cfg == nil {
		return nil, errors.New("coap004: DialTLS needs a TLS configuration")
	}
	c, err := coapx.DialTCP(ctx, addr, opts.Log, options.WithTLS(cfg))
	if err != nil {
		return nil, fmt.Errorf("coap004: dial %s: %w", addr, err)
	}
	return &Client{conn: c, opts: opts}, nil
}

// DialDTLS connects over CoAP/DTLS (coaps://); cfg is the client's TLS
// configuration (pki.ClientTLSConfig), used for DTLS 1.2 with the same
// certificates. Long calls are answered by separate responses, which the
// client waits for.
func DialDTLS(ctx context.Context, addr string, cfg *tls.Config, opts ClientOptions) (*Client, error) {
	dc, err := coapx.DTLSClientConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("coap004: %w", err)
	}
	c, err := coapx.DialDTLS(ctx, addr, dc, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("coap004: dial %s: %w", addr, err)
	}
	return &Client{conn: c, opts: opts}, nil
}

// Hangup closes the connection. (Close is the 004 call.)
func (c *Client) Hangup() error { return c.conn.Close() }

// OpenConnect calls OPEN_CONNECT. A 004 refusal is a Status in the
// response with a nil error; an error is a CoAP error (*StatusError) or a
// transport failure.
func (c *Client) OpenConnect(ctx context.Context, req etsi004.OpenRequest) (etsi004.OpenResponse, error) {
	p, err := EncodeOpenRequest(c.opts.Format, req)
	if err != nil {
		return etsi004.OpenResponse{}, err
	}
	body, err := c.post(ctx, PathOpenConnect, p)
	if err != nil {
		return etsi004.OpenResponse{}, err
	}
	return DecodeOpenResponse(c.opts.Format, body)
}

// GetKey calls GET_KEY. The caller owns (and wipes) the returned Key.
func (c *Client) GetKey(ctx context.Context, req etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error) {
	p, err := EncodeGetKeyRequest(c.opts.Format, req)
	if err != nil {
		return etsi004.GetKeyResponse{}, err
	}
	body, err := c.post(ctx, PathGetKey, p)
	if err != nil {
		return etsi004.GetKeyResponse{}, err
	}
	defer secret.Wipe(body)
	return DecodeGetKeyResponse(c.opts.Format, body)
}

// Close calls CLOSE.
func (c *Client) Close(ctx context.Context, req etsi004.CloseRequest) (etsi004.CloseResponse, error) {
	p, err := EncodeCloseRequest(c.opts.Format, req)
	if err != nil {
		return etsi004.CloseResponse{}, err
	}
	body, err := c.post(ctx, PathClose, p)
	if err != nil {
		return etsi004.CloseResponse{}, err
	}
	return DecodeCloseResponse(c.opts.Format, body)
}

// StatusError is a CoAP error answer: the request was not carried out.
// It unwraps to etsi004.ErrBadRequest for 4.00.
type StatusError struct {
	Code       codes.Code
	Diagnostic string // the server's short text
}

func (e *StatusError) Error() string {
	if e.Diagnostic == "" {
		return fmt.Sprintf("coap004: server answered %v", e.Code)
	}
	return fmt.Sprintf("coap004: server answered %v: %s", e.Code, e.Diagnostic)
}

// Unwrap maps 4.00 to etsi004.ErrBadRequest.
func (e *StatusError) Unwrap() error {
	if e.Code == codes.BadRequest {
		return etsi004.ErrBadRequest
	}
	return nil
}

// post sends one request and returns the body of a 2.04 answer in the
// client's format.
func (c *Client) post(ctx context.Context, path string, p []byte) ([]byte, error) {
	mt := c.opts.Format.MediaType()
	opts := []message.Option{{ID: message.Accept, Value: mediaTypeValue(mt)}}
	if c.opts.InsecureCaller != "" {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(CallerQuery + "=" + string(c.opts.InsecureCaller))})
	}
	resp, err := c.conn.Post(ctx, path, mt, bytes.NewReader(p), opts...)
	if err != nil {
		return nil, fmt.Errorf("coap004: %s: %w", path, err)
	}
	defer c.conn.ReleaseMessage(resp)
	body, err := readBody(resp)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedResponse, err)
	}
	if resp.Code() != codes.Changed {
		return nil, &StatusError{Code: resp.Code(), Diagnostic: clipText(body)}
	}
	if cf, err := resp.ContentFormat(); err != nil || cf != mt {
		secret.Wipe(body)
		return nil, fmt.Errorf("%w: content-format is not %v", ErrMalformedResponse, mt)
	}
	return body, nil
}

func mediaTypeValue(mt message.MediaType) []byte {
	if mt < 256 {
		return []byte{byte(mt)}
	}
	return []byte{byte(mt >> 8), byte(mt)}
}

// readBody reads a response body into one buffer of its exact size (no
// regrown copies of key bytes).
func readBody(resp *pool.Message) ([]byte, error) {
	r := resp.Body()
	if r == nil {
		return nil, nil
	}
	size, err := resp.BodySize()
	if err != nil {
		return nil, err
	}
	if size > MaxResponseSize {
		return nil, fmt.Errorf("answer of %d bytes, limit %d", size, MaxResponseSize)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		secret.Wipe(b)
		return nil, err
	}
	return b, nil
}

func clipText(b []byte) string {
	if len(b) > maxDiagnostic {
		b = b[:maxDiagnostic]
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}
