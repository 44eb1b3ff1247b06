// Package relay is the hop-by-hop OTP key relay through trusted nodes
// (the paper's Figure 2; docs/relay-design.md): the source draws
// the keys from its RNG and one-time-pads them with material of the link to
// the next hop; every intermediate node removes its incoming pad and adds
// one of its outgoing link, following the forwarding table the SDN
// controller configured; the destination stores the keys for its SAEs and
// the answer travels back. Each step is one store transaction, idempotent
// by the relay batch's step ID, so lost and repeated messages never leave
// the two ends with different keys or deliver a key twice. No lock is held
// across a round trip.
package relay
