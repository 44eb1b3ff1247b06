package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/agent"
	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/httpsx"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
	"github.com/qkms/qkms/internal/streams"
)

// sdnParts are the node's SDN agent and its KMS-side client, when
// sdn.controller_url is configured.
type sdnParts struct {
	agent    *agent.Agent
	server   *httpsx.Runner
	client   *agentapi.Client // the KMS's client of its agent
	router   *sdnRouter
	agentURL string

	mu          sync.Mutex
	established map[string]bool // guarded by mu: streams told to the agent
}

// streamEstablished tells the agent, once per key stream, that this node
// (the destination) holds its first keys: QUICKS PATCH link/registration.
func (n *Node) streamEstablished(stream string, slaves []qkd.SAEID) {
	if n.sdn == nil || len(slaves) == 0 {
		return
	}
	n.sdn.mu.Lock()
	first := !n.sdn.established[stream]
	n.sdn.established[stream] = true
	n.sdn.mu.Unlock()
	if !first {
		return
	}
	dest := make([]string, len(slaves))
	for i, s := range slaves {
		dest[i] = string(s)
	}
	n.notifyAgent(func(ctx context.Context, c *agentapi.Client) error {
		return c.PatchRegistration(ctx, quicks.RegistrationUpdate{KeyStreamID: stream, Destination: dest})
	})
}

// newSDN binds the QUICKS and agent listeners and builds the agent (which
// talks to this node's KMS only through its QUICKS server) and the key
// stream router that asks the agent for routes.
func (n *Node) newSDN() error {
	c := n.cfg
	if c.SDN.ControllerURL == "" {
		return nil
	}
	var err error
	if n.ln.QUICKS == nil {
		if n.ln.QUICKS, err = net.Listen("tcp", c.Listen.QUICKS); err != nil {
			return fmt.Errorf("node: quicks listener: %w", err)
		}
	}
	if n.ln.Agent == nil {
		if n.ln.Agent, err = net.Listen("tcp", c.Listen.Agent); err != nil {
			return fmt.Errorf("node: agent listener: %w", err)
		}
	}
	clientTLS, err := pki.ClientTLSConfig(c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile, "")
	if err != nil {
		return fmt.Errorf("node: TLS: %w", err)
	}
	kmsClient, err := kmsapi.NewClient(kmsapi.ClientOptions{BaseURL: "https://" + n.ln.QUICKS.Addr().String(), TLSConfig: clientTLS})
	if err != nil {
		return err
	}
	ctl, err := controller.NewClient(c.SDN.ControllerURL, clientTLS)
	if err != nil {
		return err
	}
	agentURL := c.SDN.AgentURL
	if agentURL == "" {
		agentURL = "https://" + n.ln.Agent.Addr().String()
	}
	neighbours := map[qkd.NodeID]string{}
	for _, l := range c.Links {
		if _, ok := neighbours[l.Peer]; !ok {
			neighbours[l.Peer] = l.PeerAddr
		}
	}
	ag, err := agent.New(agent.Options{Node: c.NodeID, KMS: kmsClient, Controller: ctl, URL: agentURL, Neighbours: neighbours,
		KMSCN: string(c.KMEID), ControllerCN: c.SDN.ControllerCN, OperatorCN: c.OperatorCN,
		Interval: c.SDN.ReportInterval.D(), Logger: n.log.With("component", "agent")})
	if err != nil {
		return err
	}
	ac, err := agentapi.NewClient(agentapi.ClientOptions{BaseURL: agentURL, TLSConfig: clientTLS})
	if err != nil {
		return err
	}
	n.sdn = &sdnParts{agent: ag, client: ac, agentURL: agentURL, established: map[string]bool{},
		server: httpsx.NewRunner("agent", ag.Handler(), n.log.With("component", "agent"))}
	n.sdn.router = &sdnRouter{n: n, agent: ac, streams: map[string]string{}}
	if n.router == nil {
		n.router = n.sdn.router
	}
	return nil
}

// runSDN serves the agent, runs its reports, and tells the agent that the
// KMS joined (QUICKS notification/registration).
func (n *Node) runSDN(goRun func(func(context.Context) error)) {
	if n.sdn == nil {
		return
	}
	goRun(func(ctx context.Context) error {
		cfg, err := pki.ServerTLSConfig(n.cfg.TLS.CAFile, n.cfg.TLS.CertFile, n.cfg.TLS.KeyFile)
		if err != nil {
			return err
		}
		return n.sdn.server.Serve(ctx, n.ln.Agent, cfg)
	})
	goRun(func(ctx context.Context) error { n.sdn.agent.Run(ctx); return nil })
	goRun(func(ctx context.Context) error {
		reg := quicks.KMSRegistration{KMSID: formatUUID(nameUUID(uuidNamespace, "kms:"+string(n.cfg.NodeID))),
			Model: quicks.KMSModel{DeviceVendor: "qkms", DeviceModel: "qkms", DeviceVersion: n.versionOrDefault()}}
		for _, l := range n.links {
			reg.LinkIDs = append(reg.LinkIDs, LinkUUID(l.ID()))
			reg.DeviceIDs = append(reg.DeviceIDs, DeviceUUID(n.cfg.NodeID, l.ID()))
		}
		for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
			if _, err := n.sdn.client.NotifyRegistration(ctx, reg); err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
		}
	})
}

func (n *Node) versionOrDefault() string {
	if quicks.IsSemver(n.version) {
		return n.version
	}
	return DefaultVersion
}

// notifyAgent sends a QUICKS notification to the node's agent in the
// background (never under a lock, never blocking the caller).
func (n *Node) notifyAgent(f func(ctx context.Context, c *agentapi.Client) error) {
	if n.sdn == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f(ctx, n.sdn.client); err != nil {
			n.log.Debug("notification to the SDN agent failed", "err", err)
		}
	}()
}

// sdnRouter is the kms.Router of a node with an SDN agent: the key stream
// of a remote pair comes from QUICKS link/registration at the agent (the
// controller configures every KMS of the route before it answers); it is
// known while this node's relay entry for it exists.
type sdnRouter struct {
	n     *Node
	agent *agentapi.Client

	mu      sync.Mutex
	streams map[string]string // guarded by mu: pair → key stream
}

// Known implements kms.Router.
func (r *sdnRouter) Known(master qkd.SAEID, slaves []qkd.SAEID) (string, bool) {
	key := qkd.PairName(master, slaves)
	r.mu.Lock()
	s, ok := r.streams[key]
	r.mu.Unlock()
	if !ok {
		return "", false
	}
	if _, ok := r.n.relay.Lookup(s); !ok {
		r.mu.Lock()
		if r.streams[key] == s {
			delete(r.streams, key)
		}
		r.mu.Unlock()
		return "", false
	}
	return s, true
}

// Stream implements kms.Router (ETSI 014 pairs: qos_request etsi_014).
func (r *sdnRouter) Stream(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID) (string, error) {
	if s, ok := r.Known(master, slaves); ok {
		return s, nil
	}
	req := quicks.LinkRegistration{Source: string(master),
		QoSRequest: quicks.QoSData{Type: quicks.QoSETSI014, ETSI014: &quicks.ETSI014QoS{Number: 1, Size: r.n.cfg.Keys.DefaultSize}},
		Options:    r.n.multipathOptions(master)}
	id, _, err := r.register(ctx, req, master, slaves)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.streams[qkd.PairName(master, slaves)] = id
	r.mu.Unlock()
	return id, nil
}

// multipathOptions are the QUICKS registration options of master's
// ETSI 014 key streams: keys.multipath, or the SAE's own setting
// (docs/configuration.md).
func (n *Node) multipathOptions(master qkd.SAEID) quicks.RegistrationOptions {
	mode := n.cfg.Keys.Multipath
	for _, s := range n.cfg.SAEs {
		if s.ID == master && s.Multipath != "" {
			mode = s.Multipath
		}
	}
	switch mode {
	case config.MultipathSpread:
		return quicks.RegistrationOptions{quicks.OptionMultipath: true}
	case config.MultipathSplit:
		return quicks.RegistrationOptions{quicks.OptionMultipath: true, quicks.OptionSplit: true}
	}
	return nil
}

var _ streams.QoSRouter = (*sdnRouter)(nil)

// Stream004 implements streams.QoSRouter: every remote ETSI 004 stream
// registers with its QoS (qos_request etsi_004), so the controller admits
// its min_bps (or counter-proposes, answer's qos.min_bps); the pair's
// ETSI 014 stream cache is neither read nor filled.
func (r *sdnRouter) Stream004(ctx context.Context, master, slave qkd.SAEID, q etsi004.QoS) (string, float64, error) {
	req := quicks.LinkRegistration{Source: string(master), QoSRequest: quicks.QoSData{Type: quicks.QoSETSI004,
		ETSI004: &quicks.ETSI004QoS{KeyChunkSize: int(q.KeyChunkSize), MaxBPS: int(q.MaxBps), MinBPS: int(q.MinBps),
			Jitter: int(q.Jitter), Priority: int(q.Priority), Timeout: int(q.Timeout), TTL: int(q.TTL),
			MetadataMimetype: q.MetadataMimetype}}}
	id, res, err := r.register(ctx, req, master, []qkd.SAEID{slave})
	if err != nil {
		return "", 0, err
	}
	offered := float64(q.MinBps)
	if res.QoS != nil && res.QoS.MinBPS != nil {
		offered = float64(max(*res.QoS.MinBPS, 0))
	}
	return id, offered, nil
}

// Release004 implements streams.QoSRouter: QUICKS DELETE
// link/{key_stream_id} at the agent, unless an ETSI 014 pair of this node
// uses the same key stream (the controller keys streams by pair).
func (r *sdnRouter) Release004(ctx context.Context, stream string) error {
	r.mu.Lock()
	shared := false
	for _, s := range r.streams {
		shared = shared || s == stream
	}
	r.mu.Unlock()
	if _, live := r.n.relay.Lookup(stream); shared && live {
		r.n.log.Info("key stream kept at the SDN controller: an ETSI 014 pair uses it too", "stream", stream)
		return nil
	}
	if err := r.agent.DeleteStream(ctx, stream); err != nil && !errors.Is(err, quicks.ErrNotFound) {
		return err
	}
	return nil
}

// register sends a QUICKS link/registration for master → slaves and
// checks that this KMS was configured with the key stream it names.
func (r *sdnRouter) register(ctx context.Context, req quicks.LinkRegistration, master qkd.SAEID, slaves []qkd.SAEID) (string, quicks.RegistrationResult, error) {
	for _, s := range slaves {
		req.Destination = append(req.Destination, string(s))
	}
	for _, l := range r.n.links {
		req.Performance = append(req.Performance, quicks.LinkKPI{LinkID: LinkUUID(l.ID())})
	}
	if len(req.Performance) == 0 {
		return "", quicks.RegistrationResult{}, fmt.Errorf("%w: this node has no QKD link", qkd.ErrNoRoute)
	}
	res, err := r.agent.Register(ctx, req)
	if err != nil {
		if errors.Is(err, quicks.ErrUnavailable) || errors.Is(err, quicks.ErrNotSupported) {
			reason := fmt.Sprintf("no key stream for %s → %v: %v", master, slaves, err)
			r.n.notifyAgent(func(ctx context.Context, c *agentapi.Client) error {
				code := EventNoRoute
				return c.NotifyEvent(ctx, quicks.Event{Level: quicks.LevelWarning, Code: &code, Reason: reason})
			})
			return "", res, fmt.Errorf("%w: %v", qkd.ErrNoRoute, err)
		}
		return "", res, err
	}
	id := strings.ToLower(res.KeyStreamID)
	if _, ok := r.n.relay.Lookup(id); !ok {
		return "", res, fmt.Errorf("%w: key stream %s was not configured at this KMS", qkd.ErrNoRoute, id)
	}
	return id, res, nil
}

// StoredKeys is the path-wide stored_key_count of a remote pair (QUICKS
// link/status at the agent).
func (r *sdnRouter) StoredKeys(ctx context.Context, master, slave qkd.SAEID) (int, error) {
	st, err := r.agent.LinkStatus(ctx, string(master), string(slave))
	if err != nil {
		return 0, err
	}
	return st.StoredKeyCount, nil
}

// Event codes qkms sends in QUICKS notification/event (vendor specific).
const (
	EventNoRoute  = 1001 // a key stream could not be set up
	EventZeroized = 1002 // the node destroyed its key material
)
