package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/etsi014"
	"github.com/qkms/qkms/internal/keystore/sqlite"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
	"github.com/qkms/qkms/internal/relay"
	"github.com/qkms/qkms/internal/telemetry"
)

// Listeners are optional pre-bound listeners (qkms net up binds them all
// before any node starts so that configs can name real ports). A nil field
// makes the node listen on its configured address.
type Listeners struct {
	ETSI014 net.Listener
	PeerUDP *net.UDPConn
	PeerTCP net.Listener
	Metrics net.Listener
	QUICKS  net.Listener
	Agent   net.Listener // the SDN agent (with sdn.controller_url)
	// ETSI004 (CoAP over TLS) and ETSI004TCP (reference framing over TLS)
	// serve ETSI 004 to applications.
	ETSI004, ETSI004TCP net.Listener
	// ETSI004UDP, if set, is the UDP socket of CoAP over DTLS, bound
	// beforehand (listen.etsi004_dtls unset: the port of ETSI004; or its
	// address). The node owns it from New on.
	ETSI004UDP *net.UDPConn
}

// Options configure a node.
type Options struct {
	Config    *config.Config
	Logger    *slog.Logger
	Listeners Listeners
	// Router sets up key streams to non-neighbour nodes (the SDN
	// controller); nil: only neighbours are served.
	Router kms.Router
	// Version is the binary's version, shown by QUICKS monitor/device-info
	// (DefaultVersion if it is not a semantic version).
	Version string
}

// Addrs are the node's bound addresses (written to DATA_DIR/listen.json).
type Addrs struct {
	ETSI014     string `json:"etsi014,omitempty"`
	PeerUDP     string `json:"peer_udp,omitempty"`
	PeerTCP     string `json:"peer_tcp,omitempty"`
	Metrics     string `json:"metrics,omitempty"`
	QUICKS      string `json:"quicks,omitempty"`
	ETSI004     string `json:"etsi004,omitempty"`
	ETSI004DTLS string `json:"etsi004_dtls,omitempty"`
	ETSI004TCP  string `json:"etsi004_tcp,omitempty"`
}

// Node is one running trusted node.
type Node struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *telemetry.Metrics
	store   *sqlite.Store
	links   []*nodeLink
	relay   *relay.Engine
	pq      *pki.PQIdentity // the node's post-quantum identity (nil: none)
	hybPol  hybridPolicy
	router  kms.Router
	svc     *kms.Service
	etsi    *etsi014.Server
	coap    *coapx.Server
	ln      Listeners
	addrs   Addrs
	quicks  *kmsapi.Server // nil: listen.quicks is off
	sdn     *sdnParts      // nil: no SDN controller configured
	app004  *app004        // the ETSI 004 key stream service and its bindings
	tlsCfg  *tls.Config    // the node's server TLS configuration
	perf    *perfSampler
	logs    *logRing
	state   nodeState
	version string

	zeroOnce sync.Once
	zeroErr  error
}

// New builds a node: opens its store, links and servers. Nothing runs
// until Run; on error everything opened is closed again.
func New(ctx context.Context, o Options) (*Node, error) {
	if o.Config == nil {
		return nil, errors.New("node: no config")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := o.Config
	logs := &logRing{}
	o.Logger = slog.New(newTeeHandler(o.Logger.Handler(), logs))
	n := &Node{cfg: cfg, log: o.Logger.With("node", string(cfg.NodeID)), metrics: telemetry.NewMetrics(string(cfg.NodeID)),
		ln: o.Listeners, router: o.Router, logs: logs, version: o.Version}
	if err := n.build(ctx); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// build opens the store and builds links, service and servers.
func (n *Node) build(ctx context.Context) error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	if err := createPrivate(cfg.Store.Path); err != nil {
		return fmt.Errorf("node: key store: %w", err)
	}
	var err error
	if n.store, err = sqlite.Open(ctx, sqlite.Options{Path: cfg.Store.Path, KEKFile: cfg.Store.KEKFile,
		Synchronous: cfg.Store.Synchronous, Logger: n.log}); err != nil {
		return fmt.Errorf("node: open key store: %w", err)
	}
	fwd := &lateForwarder{}
	if err := n.newLinks(ctx, fwd); err != nil {
		return err
	}
	if err := n.newRelay(fwd); err != nil {
		return err
	}
	n.perf = newPerfSampler(n)
	if err := n.newSDN(); err != nil {
		return err
	}
	if err := n.newService(); err != nil {
		return err
	}
	if err := n.newStreams(); err != nil {
		return err
	}
	return n.newServers()
}

// createPrivate creates an empty 0600 file if path does not exist, so that
// SQLite's database (and its -wal and -shm files, which copy the database
// file's mode) are readable by the owner only.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// localSAEs and directory come from the config.
func (n *Node) directory() map[qkd.SAEID]qkd.NodeID {
	m := make(map[qkd.SAEID]qkd.NodeID, len(n.cfg.SAEs))
	for _, s := range n.cfg.SAEs {
		m[s.ID] = s.Node
	}
	return m
}

func (n *Node) newService() error {
	k := n.cfg.Keys
	links := make([]kms.Link, len(n.links))
	for i, l := range n.links {
		links[i] = l.Link
	}
	var relayer kms.Relayer
	if n.router != nil {
		relayer = n.relay
	}
	svc, err := kms.New(kms.Options{Node: n.cfg.NodeID, KME: n.cfg.KMEID, Store: n.store, Links: links,
		SAEs: n.directory(), Logger: n.log, Router: n.router, Relayer: relayer,
		Limits: kms.Limits{KeySize: k.DefaultSize, MinKeySize: k.MinSize, MaxKeySize: k.MaxSize,
			MaxKeyPerRequest: k.MaxPerRequest, MaxKeyCount: k.MaxKeyCount, TTL: k.TTL.D(), Prereserve: k.Prereserve,
			RelayAhead: k.RelayAhead.D(), RelayAheadMax: k.RelayAheadMax,
			MaxSAEIDCount: kms.DefaultMaxSAEIDCount},
		OnDelivered:  func(api string, c int) { n.metrics.AddKeysDelivered(telemetry.API(api), c) },
		HybridPolicy: func(m qkd.SAEID, sl []qkd.SAEID) bool { return n.pq != nil && n.hybPol.wants(m, sl) }})
	if err != nil {
		return err
	}
	n.svc = svc
	return nil
}

// newRelay builds the relay engine over the node's links.
func (n *Node) newRelay(fwd *lateForwarder) error {
	links := make([]*link.Link, len(n.links))
	for i, l := range n.links {
		links[i] = l.Link
	}
	hyb, err := n.hybridOptions()
	if err != nil {
		return err
	}
	dir := n.directory()
	n.relay = relay.New(relay.Options{Node: n.cfg.NodeID, Store: n.store, Links: links, Logger: n.log,
		LocalSAE: func(s qkd.SAEID) bool { return dir[s] == n.cfg.NodeID }, OnDelivered: n.streamEstablished,
		Hybrid: hyb})
	fwd.set(n.relay)
	return nil
}

// LinkRates returns every link's measured key rate from its QKD module,
// bit/s (updated every second; cheap: no metrics gathering).
func (n *Node) LinkRates() map[qkd.LinkID]float64 {
	out := make(map[qkd.LinkID]float64, len(n.links))
	for _, l := range n.links {
		out[l.ID()] = l.rate.rate()
	}
	return out
}

// Relay returns the node's relay engine (its forwarding table is
// configured by the SDN controller).
func (n *Node) Relay() *relay.Engine { return n.relay }

// Service returns the key service (for in-process tools and tests).
func (n *Node) Service() *kms.Service { return n.svc }

// Metrics returns the node's metrics.
func (n *Node) Metrics() *telemetry.Metrics { return n.metrics }

// Addrs returns the bound addresses (valid after New).
func (n *Node) Addrs() Addrs { return n.addrs }

// ID returns the node ID.
func (n *Node) ID() qkd.NodeID { return n.cfg.NodeID }

// Run serves until ctx ends, then shuts everything down.
func (n *Node) Run(ctx context.Context) error {
	defer n.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := n.writeAddrs(); err != nil {
		return err
	}
	n.metrics.SetNodeActive(true)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	goRun := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
	}
	n.startServers(goRun)
	n.startApp004(goRun, n.tlsCfg)
	n.runSDN(goRun)
	for _, l := range n.links {
		lwg := l.Start(ctx)
		goRun(func(ctx context.Context) error { <-ctx.Done(); lwg.Wait(); return nil })
		goRun(l.runDevice)
	}
	goRun(func(ctx context.Context) error { n.svc.Run(ctx); return nil })
	goRun(n.housekeeping)
	n.log.Info("node running", "etsi014", n.addrs.ETSI014, "peer_tcp", n.addrs.PeerTCP,
		"peer_udp", n.addrs.PeerUDP, "metrics", n.addrs.Metrics, "quicks", n.addrs.QUICKS, "links", len(n.links))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		n.log.Error("node stopping after a fatal error", "err", err)
	}
	cancel()
	n.shutdownServers()
	wg.Wait()
	n.log.Info("node stopped")
	return err
}

func (n *Node) writeAddrs() error {
	b, err := json.MarshalIndent(n.addrs, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(n.cfg.DataDir, "listen.json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("node: write listen.json: %w", err)
	}
	return os.Rename(tmp, p)
}

// Zeroize destroys all key material and the store's KEKs, and leaves the
// node inactive (docs/operations.md, Zeroisation). Idempotent.
func (n *Node) Zeroize(ctx context.Context) error {
	n.zeroOnce.Do(func() {
		n.zeroErr = n.svc.Zeroize(ctx)
		n.relay.WipeHybrid() // the KEM decapsulation keys of its streams
		n.metrics.SetNodeActive(false)
		n.notifyAgent(func(ctx context.Context, c *agentapi.Client) error {
			code := EventZeroized
			if err := c.NotifyEvent(ctx, quicks.Event{Level: quicks.LevelCritical, Code: &code,
				Reason: "the KMS was zeroised: all key material destroyed"}); err != nil {
				return err
			}
			return c.NotifyStatus(ctx, quicks.StatusNotification{State: string(quicks.StateOffline), Reason: "zeroised"})
		})
	})
	return n.zeroErr
}

// Ready reports whether every link's peer answered and every local SAE has
// keys available towards each neighbour's SAEs.
func (n *Node) Ready(ctx context.Context) bool {
	if !n.svc.Active() {
		return false
	}
	for _, l := range n.links {
		if st := l.PeerStatus(); st.LastSeen.IsZero() || st.Err != "" {
			return false
		}
	}
	dir := n.directory()
	for sae, node := range dir {
		if node != n.cfg.NodeID {
			continue
		}
		for slave, sn := range dir {
			if sn == node || !n.neighbour(sn) {
				continue
			}
			st, err := n.svc.Status(ctx, sae, slave)
			if err != nil || st.StoredKeyCount < 1 {
				return false
			}
		}
	}
	return true
}

func (n *Node) neighbour(id qkd.NodeID) bool {
	for _, l := range n.links {
		if l.Peer() == id {
			return true
		}
	}
	return false
}

func (n *Node) close() {
	for _, l := range n.links {
		l.transport.Close()
	}
	for _, ln := range []interface{ Close() error }{n.ln.ETSI014, n.ln.PeerTCP, n.ln.Metrics, n.ln.QUICKS, n.ln.Agent, n.ln.ETSI004, n.ln.ETSI004TCP} {
		if ln != nil && !isNilListener(ln) {
			_ = ln.Close()
		}
	}
	if n.ln.PeerUDP != nil {
		_ = n.ln.PeerUDP.Close()
	}
	if n.app004 != nil && n.app004.dtls != nil {
		_ = n.app004.dtls.Close()
	}
	if n.ln.ETSI004UDP != nil { // bound for DTLS but not used
		_ = n.ln.ETSI004UDP.Close()
	}
	if n.pq != nil {
		n.pq.Wipe()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
}

// housekeeping updates gauges and rotates the KEK.
func (n *Node) housekeeping(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	rotate := n.cfg.Store.KEKRotation.D()
	lastRotate := time.Now()
	var crl crlWatch
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		n.reloadCRL(&crl)
		if !n.svc.Active() {
			continue
		}
		n.updateGauges(ctx)
		if rotate > 0 && time.Since(lastRotate) >= rotate {
			lastRotate = time.Now()
			if err := n.store.RotateKEK(ctx); err != nil {
				n.log.Error("KEK rotation failed", "err", err)
			}
		}
	}
}

func (n *Node) updateGauges(ctx context.Context) {
	for _, l := range n.links {
		st, err := n.store.Stats(ctx, l.ID())
		if err != nil {
			continue
		}
		id := l.ID()
		n.metrics.SetMaterialBytes(id, telemetry.MaterialUnconfirmed, st.UnconfirmedBytes)
		n.metrics.SetMaterialBytes(id, telemetry.MaterialConfirmed, st.ConfirmedBytes[0]+st.ConfirmedBytes[1])
		n.metrics.SetKeys(id, telemetry.KeysPending, st.KeysPending)
		n.metrics.SetKeys(id, telemetry.KeysReady, st.KeysReady)
		for sender, c := range st.Slots {
			n.metrics.SetMACSlots(id, sender, c)
		}
		n.metrics.SetLinkSKR(id, l.rate.bitsPerSecond())
		n.perf.observe(l, st, time.Now())
		l.full.Store(st.UnconfirmedBytes+st.ConfirmedBytes[0]+st.ConfirmedBytes[1] > int64(n.cfg.Keys.MaxLinkMaterial))
	}
}

// isNilListener reports a nil net.Listener stored in an interface.
func isNilListener(c interface{ Close() error }) bool {
	l, ok := c.(net.Listener)
	return ok && l == nil
}

func (n *Node) linkMux() *link.Mux {
	ls := make([]*link.Link, len(n.links))
	for i, l := range n.links {
		ls[i] = l.Link
	}
	return link.NewMux(ls)
}
