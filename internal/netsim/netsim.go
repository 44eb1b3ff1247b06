package netsim

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/httpsx"
	"github.com/qkms/qkms/internal/node"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/qkdsim"
	"github.com/qkms/qkms/internal/topology"
)

// Options configure a network.
type Options struct {
	Topology *topology.Topology
	Dir      string
	Logger   *slog.Logger
	// Scale multiplies every link rate (simulations may run faster; default 1).
	Scale float64
	// PeerTransport is "tcp" (default) or "udp" for KMS↔KMS CoAP.
	PeerTransport string
	// ReadyTimeout bounds the wait for every node to be ready (default 2 min).
	ReadyTimeout time.Duration
	// Tune, if set, may change each node's config before it starts.
	Tune func(*config.Config)
	// Hybrid sets every node's hybrid.mode to on: every relayed key is a
	// post-quantum hybrid key (docs/hybrid.md). Every node gets its ML-DSA
	// identity either way, so that it can forward and receive them.
	Hybrid bool
}

// Network is a running network.
type Network struct {
	o     Options
	Info  Info
	Nodes map[qkd.NodeID]*node.Node
	Sims  map[qkd.LinkID]*qkdsim.Link

	ctrl    *controller.Controller
	stops   map[qkd.NodeID]context.CancelFunc // per-node stop (StopNode)
	done    map[qkd.NodeID]chan struct{}
	ctrlSrv *httpsx.Runner
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errMu   sync.Mutex
	err     error
}

// Info is DIR/network.json (docs/operations.md).
type Info struct {
	CA         string         `json:"ca"`
	Controller ControllerInfo `json:"controller"`
	Nodes      []NodeInfo     `json:"nodes"`
	SAEs       []SAEInfo      `json:"saes"`
	Operator   CertPair       `json:"operator"`
}

// ControllerInfo is the controller's entry in network.json.
type ControllerInfo struct {
	URL string `json:"url"` // https://127.0.0.1:PORT; its API is under /sdn/v1
}

// NodeInfo is one node's entry in network.json.
type NodeInfo struct {
	ID         qkd.NodeID `json:"id"`
	KMEID      qkd.KMEID  `json:"kme_id"`
	ETSI014URL string     `json:"etsi014_url"`
	// ETSI004Addr is the CoAP binding of ETSI 004 (coaps+tcp, client
	// certificates), ETSI004DTLSAddr the same binding over DTLS (coaps;
	// the same port, UDP), ETSI004TCPAddr the reference TCP/TLS framing.
	ETSI004Addr     string `json:"etsi004_addr"`
	ETSI004DTLSAddr string `json:"etsi004_dtls_addr,omitempty"`
	ETSI004TCPAddr  string `json:"etsi004_tcp_addr"`
	PeerAddr        string `json:"peer_addr"`
	PeerUDP         string `json:"peer_udp_addr,omitempty"`
	// KMSSDNURL is the node's QUICKS server, for its SDN agent
	// and the operator: https://127.0.0.1:PORT/api/v2/sdn.
	KMSSDNURL  string `json:"kms_sdn_url"`
	MetricsURL string `json:"metrics_url"`
	Config     string `json:"config"`
	DataDir    string `json:"data_dir"`
}

// SAEInfo is one SAE's entry in network.json.
type SAEInfo struct {
	ID   qkd.SAEID  `json:"id"`
	Node qkd.NodeID `json:"node"`
	Cert string     `json:"cert"`
	Key  string     `json:"key"`
}

// CertPair names a certificate and its key.
type CertPair struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// bound are one node's pre-bound listeners.
type bound struct {
	etsi014, peerTCP, metrics, quicks, agent, etsi004, etsi004TCP net.Listener
	peerUDP                                                       *net.UDPConn
	etsi004UDP                                                    *net.UDPConn // DTLS, the port of etsi004
}

// Up starts the network and returns once every node is ready and
// network.json is written. Stop it with Close.
func Up(ctx context.Context, o Options) (*Network, error) {
	if o.Topology == nil || o.Dir == "" {
		return nil, errors.New("netsim: topology and dir are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.PeerTransport == "" {
		o.PeerTransport = config.TransportTCP
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("netsim: %w", err)
	}
	n := &Network{o: o, Nodes: map[qkd.NodeID]*node.Node{}, Sims: map[qkd.LinkID]*qkdsim.Link{}}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if err := n.start(ctx, runCtx); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.waitReady(ctx); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.writeInfo(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Network) start(ctx, runCtx context.Context) error {
	ca, err := n.issuePKI()
	if err != nil {
		return err
	}
	ls := map[qkd.NodeID]*bound{}
	for _, nd := range n.o.Topology.Nodes {
		b, err := bindAll()
		if err != nil {
			return err
		}
		ls[nd.ID] = b
	}
	devAddrs, err := n.startSims(runCtx)
	if err != nil {
		return err
	}
	ctrlLn, err := n.startController(runCtx, ca)
	if err != nil {
		return err
	}
	for _, nd := range n.o.Topology.Nodes {
		cfg, err := n.nodeConfig(nd.ID, ca, ls, devAddrs, "https://"+ctrlLn)
		if err != nil {
			return err
		}
		b := ls[nd.ID]
		nn, err := node.New(ctx, node.Options{Config: cfg, Logger: n.o.Logger,
			Listeners: node.Listeners{ETSI014: b.etsi014, PeerTCP: b.peerTCP, PeerUDP: b.peerUDP, Metrics: b.metrics, QUICKS: b.quicks, Agent: b.agent,
				ETSI004: b.etsi004, ETSI004TCP: b.etsi004TCP, ETSI004UDP: b.etsi004UDP}})
		if err != nil {
			return fmt.Errorf("netsim: node %s: %w", nd.ID, err)
		}
		n.Nodes[nd.ID] = nn
		n.info(nd.ID, cfg, nn)
	}
	n.stops, n.done = map[qkd.NodeID]context.CancelFunc{}, map[qkd.NodeID]chan struct{}{}
	for id, nn := range n.Nodes {
		nodeCtx, stop := context.WithCancel(runCtx)
		done := make(chan struct{})
		n.stops[id], n.done[id] = stop, done
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer close(done)
			if err := nn.Run(nodeCtx); err != nil {
				n.setErr(fmt.Errorf("node %s: %w", nn.ID(), err))
			}
		}()
	}
	return nil
}

func (n *Network) setErr(err error) {
	n.errMu.Lock()
	if n.err == nil {
		n.err = err
	}
	n.errMu.Unlock()
}

// Err returns the first fatal error of a node, if any.
func (n *Network) Err() error {
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.err
}

func bindAll() (*bound, error) {
	var b bound
	var err error
	for _, p := range []*net.Listener{&b.etsi014, &b.peerTCP, &b.metrics, &b.quicks, &b.agent, &b.etsi004TCP} {
		if *p, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("netsim: listen: %w", err)
		}
	}
	if b.etsi004, b.etsi004UDP, err = listenTCPAndUDP(); err != nil {
		return nil, err
	}
	if b.peerUDP, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		return nil, fmt.Errorf("netsim: listen: %w", err)
	}
	return &b, nil
}

// listenTCPAndUDP binds one loopback port number over both TCP and UDP:
// the node serves ETSI 004 over CoAP on both (TLS and DTLS on one port
// number, as CoAP's 5684). Both stay bound until the node serves them
// (node.Listeners.ETSI004UDP): a port checked free and released would be
// open to any socket bound meanwhile — another node's, hundreds of them in
// a large network — and the node would fail to start.
func listenTCPAndUDP() (net.Listener, *net.UDPConn, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("netsim: listen: %w", err)
		}
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(l.Addr().(*net.TCPAddr).AddrPort()))
		if err == nil {
			return l, u, nil
		}
		_ = l.Close()
	}
	return nil, nil, errors.New("netsim: no loopback port free for both TCP and UDP")
}

// waitReady polls every node until all are ready.
func (n *Network) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.o.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := n.Err(); err != nil {
			return err
		}
		all := true
		var waiting qkd.NodeID
		for id, nn := range n.Nodes {
			if !nn.Ready(ctx) || !n.ctrl.Online(id) {
				all, waiting = false, id
				break
			}
		}
		if all && !n.ctrl.LinksUp() {
			all, waiting = false, "(a QKD link not yet reported up at both ends)"
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netsim: node %s not ready: %w", waiting, ctx.Err())
		case <-tick.C:
		}
	}
}

// Wait blocks until ctx ends or a node fails.
func (n *Network) Wait(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := n.Err(); err != nil {
				return err
			}
		}
	}
}

// Route returns the nodes that keys from master to slave take now (after
// their key stream was set up by a first request).
func (n *Network) Route(master, slave qkd.SAEID) ([]qkd.NodeID, bool) {
	return n.ctrl.Route(master, slave)
}

// Paths returns the paths of a pair's key stream and its multipath mode
// (Controller.Paths).
func (n *Network) Paths(master, slave qkd.SAEID) ([][]qkd.NodeID, string, bool) {
	return n.ctrl.Paths(master, slave)
}

// StopNode stops one node (its KMS, servers and agent), as if its process
// died, and returns once it stopped. Its QKD link simulators keep running.
func (n *Network) StopNode(id qkd.NodeID) {
	stop, ok := n.stops[id]
	if !ok {
		return
	}
	stop()
	<-n.done[id]
}

// Controller returns the network's SDN controller.
func (n *Network) Controller() *controller.Controller { return n.ctrl }

// startController starts the SDN controller on a loopback port; it returns
// its address.
func (n *Network) startController(ctx context.Context, ca *pki.CA) (string, error) {
	p, err := ca.IssueServer(controllerCN, nil)
	if err != nil {
		return "", fmt.Errorf("netsim: controller certificate: %w", err)
	}
	clientTLS, err := pki.ClientTLSConfig(ca.CertFile(), p.CertFile, p.KeyFile, "")
	if err != nil {
		return "", err
	}
	serverTLS, err := pki.ServerTLSConfig(ca.CertFile(), p.CertFile, p.KeyFile)
	if err != nil {
		return "", err
	}
	topo := *n.o.Topology
	topo.Links = slices.Clone(topo.Links)
	topo.Scale(n.o.Scale)
	log := n.o.Logger.With("component", "controller")
	n.ctrl, err = controller.New(controller.Options{Topology: &topo, ClientTLS: clientTLS, OperatorCN: operatorCN, Logger: log,
		NodeTimeout: controller.DefaultNodeTimeout})
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	n.ctrlSrv = httpsx.NewRunner("controller", n.ctrl.Handler(), log)
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.ctrlSrv.Serve(ctx, ln, serverTLS); err != nil {
			n.setErr(fmt.Errorf("controller: %w", err))
		}
	}()
	go func() {
		defer n.wg.Done()
		n.ctrl.Run(ctx)
	}()
	n.Info.Controller = ControllerInfo{URL: "https://" + ln.Addr().String()}
	return ln.Addr().String(), nil
}

// Close stops every node and simulator. Idempotent.
func (n *Network) Close() {
	n.cancel()
	n.wg.Wait()
	for _, s := range n.Sims {
		s.Shutdown()
	}
}

func (n *Network) writeInfo() error {
	b, err := json.MarshalIndent(n.Info, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(n.o.Dir, "network.json")
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

func randomFile(path string, size int) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	defer clear(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LinkUUID is the QUICKS link_id of a topology link (the same at both
// ends), for reading its link/performance from outside the node package.
func LinkUUID(id qkd.LinkID) string { return node.LinkUUID(id) }
