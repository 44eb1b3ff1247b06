package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/sdn"
)

// Problem is an error answer of the controller or an agent (RFC 9457).
type Problem = quicks.Problem

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	quicks.WriteProblem(w, quicks.NewProblem(status, detail))
}

// writeErr answers err as a problem: its status from statusFor, its text
// as detail unless it is an internal error.
func writeErr(w http.ResponseWriter, err error) {
	st := statusFor(err)
	detail := err.Error()
	if st == http.StatusInternalServerError {
		detail = "internal error"
	}
	writeProblem(w, st, detail)
}

// readBody reads a request body of at most maxMessage bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, bad("Content-Type", "must be application/json")
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMessage))
	if err != nil {
		return nil, bad("body", "unreadable or over 1 MiB")
	}
	return b, nil
}

// httpClient returns a TLS 1.3 client with cfg's certificate and roots.
func httpClient(cfg *tls.Config) *http.Client {
	var tc *tls.Config
	if cfg != nil {
		tc = cfg.Clone()
	} else {
		tc = &tls.Config{}
	}
	tc.MinVersion = tls.VersionTLS13
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second}}
}

// call sends one JSON request and decodes a JSON answer with dec (nil: the
// answer body is ignored). Error answers become *Problem.
func call[T any](ctx context.Context, hc *http.Client, method, url string, body any, dec func([]byte) (T, error)) (T, error) {
	var zero T
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return zero, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return zero, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := hc.Do(req)
	if err != nil {
		return zero, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return zero, err
	}
	if resp.StatusCode/100 != 2 {
		p := &quicks.Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
		_ = json.Unmarshal(b, p)
		p.Status = resp.StatusCode
		return zero, p
	}
	if dec == nil {
		return zero, nil
	}
	return dec(b)
}

// StatusOf returns the HTTP status of an error answer (0 if err is not one).
func StatusOf(err error) int {
	var p *quicks.Problem
	if errors.As(err, &p) {
		return p.Status
	}
	return 0
}

// agentClient is the controller's client of one agent.
type agentClient struct {
	base string
	hc   *http.Client
}

func newAgentClient(base string, cfg *tls.Config) *agentClient {
	return &agentClient{base: strings.TrimSuffix(base, "/"), hc: httpClient(cfg)}
}

// put sends a node's configuration; the agent answers once its KMS holds it.
func (a *agentClient) put(ctx context.Context, d sdn.QKDNodeDocument) error {
	_, err := call[struct{}](ctx, a.hc, http.MethodPut, a.base+AgentBasePath+"/qkd_node", d, nil)
	return err
}

// Client is an agent's (or an operator's) client of the controller.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient returns a client of the controller at base (https://host:port).
func NewClient(base string, cfg *tls.Config) (*Client, error) {
	if !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("controller: URL %q: want https://host:port", base)
	}
	return &Client{base: strings.TrimSuffix(base, "/") + BasePath, hc: httpClient(cfg)}, nil
}

// CloseIdleConnections closes idle connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Report sends a node report and returns the node's configuration.
func (c *Client) Report(ctx context.Context, r NodeReport) (sdn.QKDNodeDocument, error) {
	return call(ctx, c.hc, http.MethodPut, c.base+"/nodes/"+pathEscape(r.Node.ID), r, DecodeNodeDocument)
}

// Register asks for a key stream.
func (c *Client) Register(ctx context.Context, r AppRegistration) (AppRegistered, error) {
	return call(ctx, c.hc, http.MethodPost, c.base+"/applications", r, DecodeAppRegistered)
}

// Established tells that the destination holds a stream's first keys.
func (c *Client) Established(ctx context.Context, id string) error {
	_, err := call[struct{}](ctx, c.hc, http.MethodPatch, c.base+"/applications/"+pathEscape(id), struct{}{}, nil)
	return err
}

// Close closes a key stream.
func (c *Client) Close(ctx context.Context, id string) error {
	_, err := call[struct{}](ctx, c.hc, http.MethodDelete, c.base+"/applications/"+pathEscape(id), nil, nil)
	return err
}

// Notify sends a notification.
func (c *Client) Notify(ctx context.Context, n Notification) error {
	_, err := call[struct{}](ctx, c.hc, http.MethodPost, c.base+"/notifications", n, nil)
	return err
}

// PathStatus asks for the path-wide ETSI 014 status of a pair.
func (c *Client) PathStatus(ctx context.Context, master, slave string) (PathStatus, error) {
	return call(ctx, c.hc, http.MethodGet, c.base+"/path-status?master="+queryEscape(master)+"&slave="+queryEscape(slave), nil, DecodePathStatus)
}
