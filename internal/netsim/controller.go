package netsim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/qkms/qkms/internal/node"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
	"github.com/qkms/qkms/internal/sdn"
	"github.com/qkms/qkms/internal/topology"
)

// controller is the network's SDN controller in one process: on the first
// request of a pair it asks internal/sdn for a route (widest-shortest path
// on available key rate), registers the stream (its rate promised on every
// link of the route) and configures the forwarding entry of every KMS on
// the route, then answers the source with the stream. Agents and QUICKS
// between the KMSes and the controller replace the in-process calls later
// (issue 3); the routing and forwarding logic is the same.
type controller struct {
	sdn *sdn.Controller

	mu      sync.Mutex
	nodes   map[qkd.NodeID]*node.Node // guarded by mu
	streams map[string]string         // guarded by mu: pair key → stream ID
	topo    *topology.Topology
}

func newController(t *topology.Topology) (*controller, error) {
	c, err := sdn.New(t, sdn.Options{})
	if err != nil {
		return nil, err
	}
	return &controller{sdn: c, topo: t, nodes: map[qkd.NodeID]*node.Node{}, streams: map[string]string{}}, nil
}

func (c *controller) add(n *node.Node) {
	c.mu.Lock()
	c.nodes[n.ID()] = n
	c.mu.Unlock()
}

func pairKey(master qkd.SAEID, slaves []qkd.SAEID) string {
	s := make([]string, len(slaves))
	for i, v := range slaves {
		s[i] = string(v)
	}
	sort.Strings(s)
	return string(master) + ">" + strings.Join(s, ",")
}

// Known implements kms.Router.
func (c *controller) Known(master qkd.SAEID, slaves []qkd.SAEID) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.streams[pairKey(master, slaves)]
	return s, ok
}

// Stream implements kms.Router.
func (c *controller) Stream(_ context.Context, master qkd.SAEID, slaves []qkd.SAEID) (string, error) {
	if len(slaves) != 1 {
		return "", errors.New("netsim: relayed multicast is not supported yet")
	}
	key := pairKey(master, slaves)
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.streams[key]; ok {
		return s, nil
	}
	src, ok1 := c.topo.NodeOf(master)
	dst, ok2 := c.topo.NodeOf(slaves[0])
	if !ok1 || !ok2 {
		return "", errors.New("netsim: unknown SAE")
	}
	route, err := c.sdn.Route(sdn.Request{Source: src, Destinations: []qkd.NodeID{dst}})
	if err != nil {
		return "", err
	}
	id, err := qkd.NewKeyID(nil)
	if err != nil {
		return "", err
	}
	st, err := c.sdn.Register(sdn.Stream{ID: sdn.StreamID(id.String()), SourceSAE: master, Source: src,
		DestinationSAEs: slaves, Destinations: []qkd.NodeID{dst}, Route: route})
	if err != nil {
		return "", err
	}
	for _, fe := range sdn.Forwarding(st) {
		if fe.Path != 0 || len(fe.Next) > 1 {
			continue // one path, no tree: this engine relays single paths
		}
		en := relay.Entry{Stream: string(st.ID), Source: src, Dest: dst, Master: master, Slaves: slices.Clone(slaves)}
		if fe.Prev != nil {
			en.Prev = fe.Prev.Node
		}
		if len(fe.Next) == 1 {
			en.Next = fe.Next[0].Node
		}
		n := c.nodes[fe.Node]
		if n == nil {
			return "", fmt.Errorf("netsim: node %s not running", fe.Node)
		}
		if err := n.Relay().Install(en); err != nil {
			return "", err
		}
	}
	c.streams[key] = string(st.ID)
	return string(st.ID), nil
}
