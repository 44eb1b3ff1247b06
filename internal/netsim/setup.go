package netsim

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/node"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/qkdsim"
	"github.com/qkms/qkms/internal/quicks"
)

// pskSize is the size of each link's generated pre-shared key: 64 MAC slots
// per direction.
const pskSize = 2 * 64 * 64

// operatorCN is the CN of the operator's client certificate.
const operatorCN = "operator"

// controllerCN is the CN of the SDN controller's certificate.
const controllerCN = "controller"

func (n *Network) issuePKI() (*pki.CA, error) {
	ca, err := pki.InitCA(filepath.Join(n.o.Dir, "pki"), pki.Options{})
	if err != nil {
		return nil, fmt.Errorf("netsim: CA: %w", err)
	}
	for _, nd := range n.o.Topology.Nodes {
		if _, err := ca.IssueServer(string(qkd.KMEOf(nd.ID)), nil); err != nil {
			return nil, fmt.Errorf("netsim: node certificate: %w", err)
		}
	}
	n.Info.CA = ca.CertFile()
	for _, s := range n.o.Topology.SAEs {
		p, err := ca.IssueClient(string(s.ID))
		if err != nil {
			return nil, fmt.Errorf("netsim: SAE certificate: %w", err)
		}
		n.Info.SAEs = append(n.Info.SAEs, SAEInfo{ID: s.ID, Node: s.Node, Cert: p.CertFile, Key: p.KeyFile})
	}
	op, err := ca.IssueClient(operatorCN)
	if err != nil {
		return nil, err
	}
	n.Info.Operator = CertPair{Cert: op.CertFile, Key: op.KeyFile}
	pq, err := pki.InitPQCA(ca.Dir(), "")
	if err != nil {
		return nil, fmt.Errorf("netsim: post-quantum CA: %w", err)
	}
	defer pq.Wipe()
	for _, nd := range n.o.Topology.Nodes {
		if _, err := pq.IssueNode(string(nd.ID), ""); err != nil {
			return nil, fmt.Errorf("netsim: post-quantum node key: %w", err)
		}
	}
	return ca, nil
}

// BlockSize picks a simulator block size for a rate: about one block a
// second, a multiple of 64 bytes between 256 B and 64 KiB. A node's work
// on an idle link is per block (stored, confirmed with the peer, both in
// store transactions), so the cadence, not the rate, sets what a large
// idle network costs: one block a second is what deployed modules
// deliver, and a quarter of the work of four.
func BlockSize(rateBits float64) int {
	b := rateBits / 8
	b = math.Max(256, math.Min(64<<10, b))
	return int(b) / 64 * 64
}

// startSims starts a simulated link pair per topology link; it returns the
// device address of each (link, node) end.
func (n *Network) startSims(ctx context.Context) (map[qkd.LinkID][2]string, error) {
	addrs := map[qkd.LinkID][2]string{}
	for _, l := range n.o.Topology.Links {
		rate := l.SKRbps * n.o.Scale
		sim, err := qkdsim.NewLink(qkdsim.Options{Rate: rate, BlockSize: BlockSize(rate), Logger: n.o.Logger.With("sim", string(l.ID))})
		if err != nil {
			return nil, fmt.Errorf("netsim: simulator %s: %w", l.ID, err)
		}
		n.Sims[l.ID] = sim
		var pair [2]string
		for i, end := range []string{"a", "b"} {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			pair[i] = ln.Addr().String()
			e := sim.End(end)
			go func() { _ = e.ServeTCP(ln) }()
		}
		addrs[l.ID] = pair
		go func() { _ = sim.Run(ctx) }()
	}
	return addrs, nil
}

// nodeConfig writes DIR/nodes/ID/node.yaml and loads it back (so it goes
// through the same validation as `qkms serve`).
func (n *Network) nodeConfig(id qkd.NodeID, ca *pki.CA, ls map[qkd.NodeID]*bound, dev map[qkd.LinkID][2]string, controllerURL string) (*config.Config, error) {
	dir := filepath.Join(n.o.Dir, "nodes", string(id))
	if err := os.MkdirAll(filepath.Join(dir, "psk"), 0o700); err != nil {
		return nil, err
	}
	b := ls[id]
	c := config.Default()
	c.NodeID, c.DataDir = id, filepath.Join(dir, "data")
	c.Listen = config.Listen{ETSI014: b.etsi014.Addr().String(), PeerTCP: b.peerTCP.Addr().String(),
		PeerUDP: b.peerUDP.LocalAddr().String(), Metrics: b.metrics.Addr().String(), QUICKS: b.quicks.Addr().String(),
		Agent: b.agent.Addr().String(), ETSI004: b.etsi004.Addr().String(), ETSI004TCP: b.etsi004TCP.Addr().String()}
	c.SDN.ControllerURL = controllerURL
	kme := string(qkd.KMEOf(id))
	c.TLS = config.TLS{CAFile: ca.CertFile(), CertFile: filepath.Join(ca.Dir(), kme+".pem"), KeyFile: filepath.Join(ca.Dir(), kme+"-key.pem")}
	c.OperatorCN = operatorCN
	c.Hybrid.CAFile, c.Hybrid.CRLFile, c.Hybrid.CertFile, c.Hybrid.KeyFile = pki.PQNodeFiles(ca.Dir(), string(id))
	if n.o.Hybrid {
		c.Hybrid.Mode = config.HybridOn
	}
	for _, s := range n.o.Topology.SAEs {
		c.SAEs = append(c.SAEs, config.SAE{ID: s.ID, Node: s.Node})
	}
	for _, l := range n.o.Topology.LinksAt(id) {
		peerID := l.Other(id)
		psk := filepath.Join(n.o.Dir, "psk", string(l.ID)+".psk")
		if err := os.MkdirAll(filepath.Dir(psk), 0o700); err != nil {
			return nil, err
		}
		if err := randomFile(psk, pskSize); err != nil {
			return nil, fmt.Errorf("netsim: PSK: %w", err)
		}
		end := 0
		if l.B == id {
			end = 1
		}
		pb := ls[peerID]
		peerAddr := pb.peerTCP.Addr().String()
		if n.o.PeerTransport == config.TransportUDP {
			peerAddr = pb.peerUDP.LocalAddr().String()
		}
		c.Links = append(c.Links, config.Link{ID: l.ID, Peer: peerID, PeerAddr: peerAddr, Transport: n.o.PeerTransport,
			PSKFile: psk, Device: config.Device{Addr: dev[l.ID][end], Transport: config.TransportTCP}})
	}
	if n.o.Tune != nil {
		n.o.Tune(&c)
	}
	raw, err := config.Marshal(&c)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return nil, err
	}
	return config.Load(path)
}

func (n *Network) info(id qkd.NodeID, cfg *config.Config, nn *node.Node) {
	a := nn.Addrs()
	n.Info.Nodes = append(n.Info.Nodes, NodeInfo{ID: id, KMEID: cfg.KMEID, ETSI014URL: "https://" + a.ETSI014,
		ETSI004Addr: a.ETSI004, ETSI004DTLSAddr: a.ETSI004DTLS, ETSI004TCPAddr: a.ETSI004TCP,
		PeerAddr: a.PeerTCP, PeerUDP: a.PeerUDP, MetricsURL: "http://" + a.Metrics + "/metrics",
		KMSSDNURL: "https://" + a.QUICKS + quicks.BasePath,
		Config:    filepath.Join(n.o.Dir, "nodes", string(id), "node.yaml"), DataDir: cfg.DataDir})
}
