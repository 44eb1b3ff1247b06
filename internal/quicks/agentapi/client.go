package agentapi

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"

	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/rest"
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// BaseURL is the agent's base, "https://host:port/api/v2/sdn" (a URL
	// without a path gets quicks.BasePath).
	BaseURL string
	// TLSConfig holds the KMS's client certificate and the trusted CA; the
	// client uses TLS 1.3 only. Ignored if HTTPClient is set.
	TLSConfig *tls.Config
	// HTTPClient replaces the client built from TLSConfig.
	HTTPClient *http.Client
	// MaxResponseBytes bounds answers (and a configuration file); 0 means
	// 4 MiB.
	MaxResponseBytes int64
}

// Client is what a KMS uses to call its SDN agent. It implements Backend.
// Errors of the agent are *quicks.Problem values that unwrap to the
// sentinel of their status (errors.Is(err, quicks.ErrNotFound)); answers
// that break the schema match quicks.ErrInvalidAnswer; requests that break
// it are refused before sending and match quicks.ErrBadRequest.
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

// Version calls GET /version.
func (c *Client) Version(ctx context.Context) (quicks.VersionInfo, error) {
	resp, err := c.c.Do(ctx, http.MethodGet, "version", nil, nil)
	if err != nil {
		return quicks.VersionInfo{}, err
	}
	return rest.DecodeAnswer(resp, "GET version", quicks.DecodeVersionInfo)
}

// LinkStatus calls GET /link/status?master_sae_id=&slave_sae_id=.
func (c *Client) LinkStatus(ctx context.Context, masterSAEID, slaveSAEID string) (quicks.LinkStatus, error) {
	switch {
	case masterSAEID == "":
		return quicks.LinkStatus{}, rest.Check("GET link/status", quicks.BadField("master_sae_id", "required"))
	case slaveSAEID == "":
		return quicks.LinkStatus{}, rest.Check("GET link/status", quicks.BadField("slave_sae_id", "required"))
	}
	q := url.Values{"master_sae_id": {masterSAEID}, "slave_sae_id": {slaveSAEID}}
	resp, err := c.c.Do(ctx, http.MethodGet, "link/status", q, nil)
	if err != nil {
		return quicks.LinkStatus{}, err
	}
	return rest.DecodeAnswer(resp, "GET link/status", quicks.DecodeLinkStatus)
}

// Register calls POST /link/registration.
func (c *Client) Register(ctx context.Context, req quicks.LinkRegistration) (quicks.RegistrationResult, error) {
	if err := rest.Check("POST link/registration", req.Validate()); err != nil {
		return quicks.RegistrationResult{}, err
	}
	resp, err := c.c.Do(ctx, http.MethodPost, "link/registration", nil, &req)
	if err != nil {
		return quicks.RegistrationResult{}, err
	}
	return rest.DecodeAnswer(resp, "POST link/registration", quicks.DecodeRegistrationResult)
}

// PatchRegistration calls PATCH /link/registration (sent by the
// destination KMS).
func (c *Client) PatchRegistration(ctx context.Context, req quicks.RegistrationUpdate) error {
	if err := rest.Check("PATCH link/registration", req.Validate()); err != nil {
		return err
	}
	_, err := c.c.Do(ctx, http.MethodPatch, "link/registration", nil, &req)
	return err
}

// DeleteStream calls DELETE /link/{key_stream_id}.
func (c *Client) DeleteStream(ctx context.Context, keyStreamID string) error {
	if !quicks.IsUUID(keyStreamID) {
		return rest.Check("DELETE link", quicks.BadField("key_stream_id", "must be a UUID"))
	}
	_, err := c.c.Do(ctx, http.MethodDelete, "link/"+keyStreamID, nil, nil)
	return err
}

// NotifyRegistration calls POST /notification/registration and returns
// the configuration file the agent may send (nil if none).
func (c *Client) NotifyRegistration(ctx context.Context, req quicks.KMSRegistration) ([]byte, error) {
	if err := rest.Check("POST notification/registration", req.Validate()); err != nil {
		return nil, err
	}
	resp, err := c.c.Do(ctx, http.MethodPost, "notification/registration", nil, &req)
	if err != nil {
		return nil, err
	}
	if len(resp.Body) == 0 {
		return nil, nil
	}
	return resp.Body, nil
}

// NotifyStatus calls PATCH /notification/status.
func (c *Client) NotifyStatus(ctx context.Context, req quicks.StatusNotification) error {
	if err := rest.Check("PATCH notification/status", req.Validate()); err != nil {
		return err
	}
	_, err := c.c.Do(ctx, http.MethodPatch, "notification/status", nil, &req)
	return err
}

// NotifyEvent calls PUT /notification/event.
func (c *Client) NotifyEvent(ctx context.Context, req quicks.Event) error {
	if err := rest.Check("PUT notification/event", req.Validate()); err != nil {
		return err
	}
	_, err := c.c.Do(ctx, http.MethodPut, "notification/event", nil, &req)
	return err
}
