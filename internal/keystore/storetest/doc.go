// Package storetest is the one conformance suite of keystore.Store (the
// key life cycle, MAC slots): every implementation runs Run from its
// own tests, so memstore and sqlite are held to the same contract, the doc
// comments of keystore.Store's roles.
//
// The suite checks outcomes, not calls: the bytes that come out are the
// bytes that went in, cut in the documented order; all-or-none operations
// leave the store exactly as it was when they fail; idempotent operations
// change nothing the second time; concurrent takers get every key exactly
// once (run it under -race).
//
// BenchTakeForPair and BenchAddBlock are shared benchmarks.
package storetest
