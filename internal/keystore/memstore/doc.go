// Package memstore is an in-memory keystore.Store for tests, benchmarks and
// simulations of many nodes in one process (the key life cycle of
// docs/architecture.md, without persistence).
//
// Every record lives in maps under one mutex. Key bytes are copied in and out
// as secret.Bytes, so a caller's buffer and the store's never alias; the
// store wipes its copies when a record is consumed, deleted or zeroised.
// Nothing is written to disk, so nothing survives a restart: use
// keystore/sqlite where that matters.
package memstore
