package netsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

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
	log *slog.Logger

	mu      sync.Mutex
	nodes   map[qkd.NodeID]*node.Node // guarded by mu
	streams map[string]string         // guarded by mu: pair key → stream ID
	topo    *topology.Topology
}

func newController(t *topology.Topology, log *slog.Logger) (*controller, error) {
	c, err := sdn.New(t, sdn.Options{})
	if err != nil {
		return nil, err
	}
	return &controller{sdn: c, log: log, topo: t, nodes: map[qkd.NodeID]*node.Node{}, streams: map[string]string{}}, nil
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
	if err := c.install(st, nil); err != nil {
		return "", err
	}
	c.streams[key] = string(st.ID)
	return string(st.ID), nil
}

// install configures the forwarding entry of every KMS on a stream's
// route; nodes of an old route that are not on the new one lose theirs.
// Called with mu held.
func (c *controller) install(st sdn.Stream, old *sdn.Route) error {
	on := map[qkd.NodeID]bool{}
	for _, fe := range sdn.Forwarding(st) {
		if fe.Path != 0 || len(fe.Next) > 1 || len(st.DestinationSAEs) == 0 {
			continue // one path, no tree: the relay engine forwards single paths
		}
		en := relay.Entry{Stream: string(st.ID), Source: st.Source, Dest: st.Destinations[0], Master: st.SourceSAE,
			Slaves: slices.Clone(st.DestinationSAEs)}
		if fe.Prev != nil {
			en.Prev = fe.Prev.Node
		}
		if len(fe.Next) == 1 {
			en.Next = fe.Next[0].Node
		}
		n := c.nodes[fe.Node]
		if n == nil {
			return fmt.Errorf("netsim: node %s not running", fe.Node)
		}
		if err := n.Relay().Install(en); err != nil {
			return err
		}
		on[fe.Node] = true
	}
	if old != nil {
		for _, p := range old.Paths {
			for _, id := range p.Nodes {
				if n := c.nodes[id]; n != nil && !on[id] {
					n.Relay().Remove(string(st.ID))
				}
			}
		}
	}
	return nil
}

// Route returns the nodes of the route a pair's keys take now.
func (c *controller) Route(master, slave qkd.SAEID) ([]qkd.NodeID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.streams[pairKey(master, []qkd.SAEID{slave})]
	if !ok {
		return nil, false
	}
	st, ok := c.sdn.Stream(sdn.StreamID(id))
	if !ok || len(st.Route.Paths) == 0 {
		return nil, false
	}
	return slices.Clone(st.Route.Paths[0].Nodes), true
}

// setLink tells the SDN logic that a link went down or came back and
// applies what it rerouted: new forwarding entries, or, where no route is
// left, the stream's removal (new requests then get no route: 503).
func (c *controller) setLink(id qkd.LinkID, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	status := sdn.LinkDown
	if up {
		status = sdn.LinkUp
	}
	rr, err := c.sdn.SetLinkStatus(id, status)
	if err != nil {
		c.log.Error("controller: link status", "link", string(id), "err", err)
		return
	}
	c.log.Warn("controller: QKD link status changed", "link", string(id), "up", up, "streams_rerouted", len(rr))
	for _, r := range rr {
		if r.Err != nil {
			c.log.Warn("controller: no route left for a key stream; it is closed", "stream", string(r.Stream.ID), "err", r.Err)
			for _, p := range r.Old.Paths {
				for _, n := range p.Nodes {
					if nn := c.nodes[n]; nn != nil {
						nn.Relay().Remove(string(r.Stream.ID))
					}
				}
			}
			for k, v := range c.streams {
				if v == string(r.Stream.ID) {
					delete(c.streams, k)
				}
			}
			continue
		}
		old := r.Old
		if err := c.install(r.Stream, &old); err != nil {
			c.log.Error("controller: reconfiguring a rerouted stream", "stream", string(r.Stream.ID), "err", err)
		}
	}
}

// monitor watches every link's measured key rate at its ends: a link that
// was seen producing (at least a third of its nominal rate) and then stays
// below 5 % of it for five seconds in a row is taken out of the routes, and
// put back when it produces again.
func (c *controller) monitor(ctx context.Context, scale float64) {
	low := map[qkd.LinkID]int{}
	down := map[qkd.LinkID]bool{}
	seen := map[qkd.LinkID]bool{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rates := c.rates()
		for _, l := range c.topo.Links {
			rate := c.linkRate(l, rates)
			if rate < 0 {
				continue // an end is not reporting yet
			}
			nominal := l.SKRbps * scale
			if rate >= nominal/3 {
				seen[l.ID] = true
			}
			if !seen[l.ID] {
				continue
			}
			if rate < 0.05*nominal {
				low[l.ID]++
			} else {
				low[l.ID] = 0
			}
			switch {
			case low[l.ID] >= 5 && !down[l.ID]:
				down[l.ID] = true
				c.setLink(l.ID, false)
			case low[l.ID] == 0 && down[l.ID]:
				down[l.ID] = false
				c.setLink(l.ID, true)
			}
		}
	}
}

// linkRate is the lower of the two ends' measured rates (-1: unknown).
func (c *controller) linkRate(l topology.Link, rates map[qkd.NodeID]map[qkd.LinkID]float64) float64 {
	ra, okA := rates[l.A][l.ID]
	rb, okB := rates[l.B][l.ID]
	if !okA || !okB {
		return -1
	}
	return min(ra, rb)
}

// rates reads every running node's link rates once.
func (c *controller) rates() map[qkd.NodeID]map[qkd.LinkID]float64 {
	c.mu.Lock()
	nodes := make([]*node.Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		nodes = append(nodes, n)
	}
	c.mu.Unlock()
	out := make(map[qkd.NodeID]map[qkd.LinkID]float64, len(nodes))
	for _, n := range nodes {
		out[n.ID()] = n.LinkRates()
	}
	return out
}
