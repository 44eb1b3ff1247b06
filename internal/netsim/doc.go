// Package netsim runs a whole QKD network in one process (`qkms
// net up`): a PKI, a pre-shared key per link, a simulated QKD link pair per
// topology link, and one node per topology node, each with its own real
// loopback listeners. It writes DIR/network.json once every node is ready.
package netsim
