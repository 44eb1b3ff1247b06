// Package sae is an ETSI GS QKD 014 client, as a Secure Application Entity
// uses it: mutual TLS with the SAE's certificate, keep-alive connections,
// status, enc_keys and dec_keys. The demo, the benchmarks and the
// end-to-end tests use it; any other client (curl) works the same way.
package sae

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/secret"
)

// Client talks to one KME as one SAE.
type Client struct {
	base string
	http *http.Client
}

// New returns a client for the KME at baseURL (https://host:port).
func New(baseURL, caFile, certFile, keyFile string) (*Client, error) {
	tlsCfg, err := pki.ClientTLSConfig(caFile, certFile, keyFile, "")
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, ForceAttemptHTTP2: false}
	return &Client{base: strings.TrimRight(baseURL, "/"), http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Status is the ETSI 014 Status object.
type Status struct {
	SourceKMEID      string `json:"source_KME_ID"`
	TargetKMEID      string `json:"target_KME_ID"`
	MasterSAEID      string `json:"master_SAE_ID"`
	SlaveSAEID       string `json:"slave_SAE_ID"`
	KeySize          int    `json:"key_size"`
	StoredKeyCount   int    `json:"stored_key_count"`
	MaxKeyCount      int    `json:"max_key_count"`
	MaxKeyPerRequest int    `json:"max_key_per_request"`
	MaxKeySize       int    `json:"max_key_size"`
	MinKeySize       int    `json:"min_key_size"`
	MaxSAEIDCount    int    `json:"max_SAE_ID_count"`
}

// Key is one delivered key; the caller wipes Key.
type Key struct {
	ID  string
	Key secret.Bytes
}

// Error is a non-200 answer.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Message) }

// Status calls GET /api/v1/keys/{slave}/status.
func (c *Client) Status(ctx context.Context, slave string) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/api/v1/keys/"+url.PathEscape(slave)+"/status", nil, &st)
	return st, err
}

// EncKeys calls POST /api/v1/keys/{slave}/enc_keys.
func (c *Client) EncKeys(ctx context.Context, slave string, number, size int) ([]Key, error) {
	body := map[string]int{}
	if number > 0 {
		body["number"] = number
	}
	if size > 0 {
		body["size"] = size
	}
	return c.keys(ctx, "/api/v1/keys/"+url.PathEscape(slave)+"/enc_keys", body)
}

// EncKeysHybrid is EncKeys with extension_mandatory
// [{"qkms_hybrid": true}]: post-quantum hybrid keys or an error.
func (c *Client) EncKeysHybrid(ctx context.Context, slave string, number, size int) ([]Key, error) {
	body := map[string]any{"extension_mandatory": []map[string]bool{{"qkms_hybrid": true}}}
	if number > 0 {
		body["number"] = number
	}
	if size > 0 {
		body["size"] = size
	}
	return c.keys(ctx, "/api/v1/keys/"+url.PathEscape(slave)+"/enc_keys", body)
}

// DecKeys calls POST /api/v1/keys/{master}/dec_keys.
func (c *Client) DecKeys(ctx context.Context, master string, ids []string) ([]Key, error) {
	type kid struct {
		KeyID string `json:"key_ID"`
	}
	body := struct {
		KeyIDs []kid `json:"key_IDs"`
	}{}
	for _, id := range ids {
		body.KeyIDs = append(body.KeyIDs, kid{id})
	}
	return c.keys(ctx, "/api/v1/keys/"+url.PathEscape(master)+"/dec_keys", body)
}

func (c *Client) keys(ctx context.Context, path string, body any) ([]Key, error) {
	var kc struct {
		Keys []struct {
			KeyID string `json:"key_ID"`
			Key   string `json:"key"`
		} `json:"keys"`
	}
	if err := c.do(ctx, http.MethodPost, path, body, &kc); err != nil {
		return nil, err
	}
	out := make([]Key, len(kc.Keys))
	for i, k := range kc.Keys {
		raw, err := base64.StdEncoding.DecodeString(k.Key)
		if err != nil {
			return nil, fmt.Errorf("sae: key %s is not base64", k.KeyID)
		}
		out[i] = Key{ID: k.KeyID, Key: secret.Adopt(raw)}
	}
	return out, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	defer secret.Wipe(raw)
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(raw, &e)
		return &Error{Code: resp.StatusCode, Message: e.Message}
	}
	return json.Unmarshal(raw, out)
}
