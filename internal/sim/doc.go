// Package sim is the scale campaign of `qkms sim`: it generates topology
// families (star, ring, bridge, mesh, random geometric, random) at N
// nodes, runs each as a whole network in this process (internal/netsim),
// loads a set of SAE pairs with a paced load at half of each pair's bound
// and a closed-loop saturating one, fetches every key at both ends and
// compares it, and reports figures that sit beside the published campaign
// of the Rust KMS dkms (docs/performance.md, "Scale campaign"): served /
// offered, p50/p99 latency, fibre utilisation, Jain's fairness index.
// Ratios, not absolute times, are what compare across machines.
package sim
