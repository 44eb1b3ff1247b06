// Package keystore keeps a node's key material: raw link blocks from the QKD
// modules, keys reserved for application pairs, and one-time MAC key slots
// for the KMS↔KMS protocol (docs/architecture.md, Key life cycle).
//
// Store is the interface every implementation provides; every operation
// that changes more than one record is atomic. It is the union of small
// role interfaces, one per concept (Blocks, Allocator, Delivery, Keys,
// Slots, RelaySteps, Syncer, StatsReader, Zeroizer): each package of the
// core declares, as its own Store, the roles it uses. Implementations:
// sqlite/ (the production store: modernc.org/sqlite, WAL, secure_delete,
// every key-bearing row sealed with an AEAD under an epoch key-encryption
// key kept in a separate 0600 file) and memstore/ (tests, benchmarks).
// storetest/ is the one conformance suite both pass.
package keystore
