// Package sdn is the brain of the qkms SDN controller (docs/sdn.md): it keeps
// the network state — the topology, the performance each SDN agent reports
// per QKD link (QUICKS SKR/IKR/EXKR/KAV), node and link status, and the key
// rates promised to key streams — and from it selects relay routes, books and
// releases promised rates, reroutes streams when a link goes down or a node
// leaves service, and derives the forwarding entries every KMS on a route
// needs for hop-by-hop key forwarding (docs/relay-design.md, ITU-T Y.3803
// hop-by-hop relay).
//
// It has no transport: the HTTP controller and the agents call it and turn
// its results into QUICKS `link/relay` requests and notifications. Time comes
// from Options.Now. A Controller is safe for concurrent use.
//
// # Routing
//
// The available rate of a link is its reported ESKR (or, until a fresh report
// arrives, its nominal SKR × Options.NominalFactor) minus the rates already
// promised on it. Parallel links between the same two nodes form one hop
// whose capacity is their sum; a route names, per hop, the link(s) it uses
// and how its rate is spread over them. Nodes that are not online and links
// that are down are never used.
//
// Route picks, by default, the widest route (largest bottleneck available
// rate), then the one with the fewest hops, then the lexicographically
// smallest sequence of node IDs, so equal inputs give equal routes. Widest
// then shortest is not isotone, so it is computed exactly in two steps: a
// max-bottleneck Dijkstra finds the best bottleneck B, then a breadth-first
// search over the hops of capacity ≥ B finds the fewest-hop route. Group keys
// (several destinations) get a tree: the breadth-first tree over the hops of
// capacity ≥ min(B per destination), so branches share their common prefix
// and the tree's bottleneck is the best any tree can have. With
// RequestOptions.Multipath the rate is split over several paths up to the
// max-flow (Edmonds–Karp on available rates, then flow decomposition).
// When the requested rate cannot be met the route carries the best rate on
// offer and CounterProposal is set (the ETSI GS QKD 004 QoS counter-proposal
// of QUICKS `link/registration`).
//
// # ETSI GS QKD 015
//
// Agents and the controller exchange JSON shaped after the ETSI GS QKD 015
// V2.1.1 YANG model `etsi-qkd-sdn-node`: QKDNode renders a
// node's `qkd_node` container with PHYS links (one per QKD link, with
// qkdl_performance) and VIRT links (one per key stream relayed through the
// node, with virt_prev_hop / virt_next_hop / virt_bandwidth), and
// ApplyQKDNode takes an agent's report in the same shape. Identityrefs carry
// the module prefix (`etsi-qkd-node-types:VIRT`), as RESTCONF JSON does.
// Identifiers are qkms's own (node and link IDs from the topology, key
// stream UUIDs), not the UUIDs the YANG model types them as.
package sdn
