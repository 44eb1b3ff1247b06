package kmsapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/rest"
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// BaseURL is the KMS server's base, "https://host:port/api/v2/sdn"
	// (a URL without a path gets quicks.BasePath).
	BaseURL string
	// TLSConfig holds the client certificate and the trusted CA; the
	// client uses TLS 1.3 only. Ignored if HTTPClient is set.
	TLSConfig *tls.Config
	// HTTPClient replaces the client built from TLSConfig.
	HTTPClient *http.Client
	// MaxResponseBytes bounds answers (and the log); 0 means 4 MiB.
	MaxResponseBytes int64
}

// Client calls a KMS's QUICKS server (what an SDN agent or an operator
// does). It implements Backend, so it can also stand behind a Server.
// Errors of the KMS are *quicks.Problem values that unwrap to the
// sentinel of their status (errors.Is(err, quicks.ErrNotFound)); answers
// that break the schema match quicks.ErrInvalidAnswer; requests that break
// it are refused before sending (quicks.ErrBadRequest).
type Client struct{ c *rest.Client }

var _ Backend = (*Client)(nil)

// NewClient checks opts and returns a client.
func NewClient(opts ClientOptions) (*Client, error) {
	c, err := rest.NewAPIClient(quicks.BasePath, rest.ClientOptions(opts))
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// CloseIdleConnections closes idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.c.CloseIdleConnections() }

func getJSON[T any](ctx context.Context, c *Client, path string, q url.Values, dec func([]byte) (T, error)) (T, error) {
	resp, err := c.c.Do(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		var zero T
		return zero, err
	}
	return rest.DecodeAnswer(resp, "GET "+path, dec)
}

// Version calls GET /version.
func (c *Client) Version(ctx context.Context) (quicks.VersionInfo, error) {
	return getJSON(ctx, c, "version", nil, quicks.DecodeVersionInfo)
}

// Capabilities calls GET /monitor/capabilities.
func (c *Client) Capabilities(ctx context.Context) (quicks.Capabilities, error) {
	return getJSON(ctx, c, "monitor/capabilities", nil, quicks.DecodeCapabilities)
}

// DeviceInfo calls GET /monitor/device-info.
func (c *Client) DeviceInfo(ctx context.Context) (quicks.DeviceInfo, error) {
	return getJSON(ctx, c, "monitor/device-info", nil, quicks.DecodeDeviceInfo)
}

// Status calls GET /monitor/status (?new_operation_state_only=true if reset).
func (c *Client) Status(ctx context.Context, reset bool) (quicks.KMSStatus, error) {
	var q url.Values
	if reset {
		q = url.Values{"new_operation_state_only": {"true"}}
	}
	return getJSON(ctx, c, "monitor/status", q, quicks.DecodeKMSStatus)
}

// Log calls GET /monitor/log and returns the whole log in memory.
func (c *Client) Log(ctx context.Context) (LogFile, error) {
	resp, err := c.c.Do(ctx, http.MethodGet, "monitor/log", nil, nil)
	if err != nil {
		return LogFile{}, err
	}
	return LogFile{ContentType: resp.ContentType, Body: io.NopCloser(bytes.NewReader(resp.Body))}, nil
}

// QKDDevices calls GET /monitor/qkd-device.
func (c *Client) QKDDevices(ctx context.Context) (quicks.QKDDeviceList, error) {
	return getJSON(ctx, c, "monitor/qkd-device", nil, quicks.DecodeQKDDeviceList)
}

// SetStatus calls PUT /control/status.
func (c *Client) SetStatus(ctx context.Context, state quicks.State) error {
	req := quicks.StateChange{State: state}
	if err := rest.Check("PUT control/status", req.Validate()); err != nil {
		return err
	}
	_, err := c.c.Do(ctx, http.MethodPut, "control/status", nil, &req)
	return err
}

func devicePath(id string) (string, error) {
	if !quicks.IsUUID(id) {
		return "", rest.Check("control/qkd-device", quicks.BadField("device_id", "must be a UUID"))
	}
	return "control/qkd-device/" + id, nil
}

// RegisterDevice calls POST /control/qkd-device/{device_id}.
func (c *Client) RegisterDevice(ctx context.Context, deviceID string, dev quicks.DeviceConnection) error {
	path, err := devicePath(deviceID)
	if err != nil {
		return err
	}
	if err := rest.Check("POST "+path, dev.Validate()); err != nil {
		return err
	}
	_, err = c.c.Do(ctx, http.MethodPost, path, nil, &dev)
	return err
}

// UpdateDevice calls PUT /control/qkd-device/{device_id}.
func (c *Client) UpdateDevice(ctx context.Context, deviceID string, dev quicks.DeviceConnection) error {
	path, err := devicePath(deviceID)
	if err != nil {
		return err
	}
	if err := rest.Check("PUT "+path, dev.ValidateUpdate()); err != nil {
		return err
	}
	_, err = c.c.Do(ctx, http.MethodPut, path, nil, &dev)
	return err
}

// RemoveDevice calls DELETE /control/qkd-device/{device_id}.
func (c *Client) RemoveDevice(ctx context.Context, deviceID string) error {
	path, err := devicePath(deviceID)
	if err != nil {
		return err
	}
	_, err = c.c.Do(ctx, http.MethodDelete, path, nil, nil)
	return err
}

// LinkPerformance calls GET /link/performance/{link_id}; entries
// AllHistory sends no entries parameter.
func (c *Client) LinkPerformance(ctx context.Context, linkID string, entries int) (quicks.Performance, error) {
	if !quicks.IsUUID(linkID) {
		return quicks.Performance{}, rest.Check("link/performance", quicks.BadField("link_id", "must be a UUID"))
	}
	var q url.Values
	if entries >= 0 {
		q = url.Values{"entries": {strconv.Itoa(entries)}}
	}
	return getJSON(ctx, c, "link/performance/"+linkID, q, quicks.DecodePerformance)
}

func relayPath(id string) (string, error) {
	if !quicks.IsUUID(id) {
		return "", rest.Check("link/relay", quicks.BadField("key_stream_id", "must be a UUID"))
	}
	return "link/relay/" + id, nil
}

// CreateRelay calls POST /link/relay/{key_stream_id}.
func (c *Client) CreateRelay(ctx context.Context, keyStreamID string, entry quicks.RelayConfig) error {
	path, err := relayPath(keyStreamID)
	if err != nil {
		return err
	}
	if err := rest.Check("POST "+path, entry.Validate()); err != nil {
		return err
	}
	_, err = c.c.Do(ctx, http.MethodPost, path, nil, &entry)
	return err
}

// ReplaceRelay calls PUT /link/relay/{key_stream_id}.
func (c *Client) ReplaceRelay(ctx context.Context, keyStreamID string, entry quicks.RelayConfig) error {
	path, err := relayPath(keyStreamID)
	if err != nil {
		return err
	}
	if err := rest.Check("PUT "+path, entry.ValidateUpdate()); err != nil {
		return err
	}
	_, err = c.c.Do(ctx, http.MethodPut, path, nil, &entry)
	return err
}

// DeleteRelay calls DELETE /link/relay/{key_stream_id}.
func (c *Client) DeleteRelay(ctx context.Context, keyStreamID string) error {
	path, err := relayPath(keyStreamID)
	if err != nil {
		return err
	}
	_, err = c.c.Do(ctx, http.MethodDelete, path, nil, nil)
	return err
}
