// Package topology reads and checks the network topology file (format: README.md):
// trusted nodes, the QKD links between them (with their long-run secret key
// rates, several links per pair allowed) and the SAEs attached to each node.
//
// It is the input of `qkms net up`, `qkms sim` and the controller. Fields the
// package does not use (coordinates, sources, reference_results, ...) are
// ignored; everything it does use is validated, and Parse reports every
// problem at once (errors.Join of sentinel-wrapped errors, see ErrBadID and
// friends). Node and SAE IDs are restricted to characters that are safe in
// URL path segments and certificate CNs (ValidID).
//
// A Topology is read-only once built (New, Parse, Load), except for Scale;
// its lookup methods are then safe for concurrent use.
package topology
