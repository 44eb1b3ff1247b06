package rest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/quicks"
)

// Client defaults.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 4 << 20
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is the https URL of the server's base path; a URL without a
	// path gets DefaultPath.
	BaseURL     string
	DefaultPath string
	// TLSConfig (client certificate, trusted CA) builds the HTTP client;
	// MinVersion is raised to TLS 1.3. Ignored when HTTPClient is set.
	TLSConfig *tls.Config
	// HTTPClient replaces the client built from TLSConfig (its TLS setup is
	// then the caller's business).
	HTTPClient *http.Client
	// MaxResponseBytes bounds answer bodies; 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// ClientOptions configure the client of an API (agentapi.ClientOptions and
// kmsapi.ClientOptions convert to it); see ClientConfig.
type ClientOptions struct {
	BaseURL          string
	TLSConfig        *tls.Config
	HTTPClient       *http.Client
	MaxResponseBytes int64
}

// NewAPIClient returns NewClient of opts, defaultPath for a base URL
// without a path.
func NewAPIClient(defaultPath string, opts ClientOptions) (*Client, error) {
	return NewClient(ClientConfig{
		BaseURL:          opts.BaseURL,
		DefaultPath:      defaultPath,
		TLSConfig:        opts.TLSConfig,
		HTTPClient:       opts.HTTPClient,
		MaxResponseBytes: opts.MaxResponseBytes,
	})
}

// Client sends QUICKS requests.
type Client struct {
	base    *url.URL
	hc      *http.Client
	maxResp int64
}

// NewClient checks cfg and returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("quicks: base URL %q: want https://host[:port][/path]", cfg.BaseURL)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = cfg.DefaultPath
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	c := &Client{base: u, hc: cfg.HTTPClient, maxResp: cfg.MaxResponseBytes}
	if c.maxResp <= 0 {
		c.maxResp = DefaultMaxResponseBytes
	}
	if c.hc == nil {
		if cfg.TLSConfig == nil {
			return nil, errors.New("quicks: client needs TLSConfig or HTTPClient")
		}
		tc := cfg.TLSConfig.Clone()
		tc.MinVersion = tls.VersionTLS13
		tc.MaxVersion = 0
		tc.NextProtos = []string{"http/1.1"}
		c.hc = &http.Client{Timeout: DefaultTimeout, Transport: &http.Transport{
			TLSClientConfig:     tc,
			ForceAttemptHTTP2:   false,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return c, nil
}

// Base returns the base URL.
func (c *Client) Base() string { return c.base.String() }

// CloseIdleConnections closes idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Response is a 2xx answer.
type Response struct {
	Status      int
	ContentType string
	Body        []byte
}

// Do sends method to the base URL + path (unescaped; url.URL escapes it) with the
// query and, unless body is nil, body as JSON. A non-2xx answer is returned
// as a *quicks.Problem error.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body any) (*Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("quicks: encoding %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	u := *c.base
	u.Path = c.base.Path + "/" + path
	u.RawPath = ""
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("quicks: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", quicks.MediaTypeJSON)
	}
	req.Header.Set("Accept", quicks.MediaTypeJSON+", "+quicks.MediaTypeProblem+";q=0.9, */*;q=0.1")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("quicks: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResp+1))
	if err != nil {
		return nil, fmt.Errorf("quicks: %s %s: reading answer: %w", method, path, err)
	}
	if int64(len(b)) > c.maxResp {
		return nil, fmt.Errorf("quicks: %s %s: answer over %d bytes", method, path, c.maxResp)
	}
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, quicks.ProblemFromResponse(resp.StatusCode, ct, b)
	}
	return &Response{Status: resp.StatusCode, ContentType: ct, Body: b}, nil
}

// DecodeAnswer decodes a JSON answer with dec. An answer that breaks the
// schema matches quicks.ErrInvalidAnswer, not quicks.ErrBadRequest (it is
// the server's fault, not the caller's).
func DecodeAnswer[T any](resp *Response, what string, dec func([]byte) (T, error)) (T, error) {
	v, err := dec(resp.Body)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("quicks: %s: %w: %s", what, quicks.ErrInvalidAnswer, err.Error())
	}
	return v, nil
}

// Check validates a request before it is sent; its problems match
// quicks.ErrBadRequest.
func Check(what string, err error) error {
	if err != nil {
		return fmt.Errorf("quicks: %s: %w", what, err)
	}
	return nil
}
