// Package rules holds the semantics of keystore.Store that do not depend on
// how records are kept: validating an allocation, cutting its bytes into keys
// and slots, and deciding who may take a key. memstore and sqlite both use
// it, so the two cannot drift apart; storetest checks that they do not.
//
// Its Seen type is the in-memory form of "every index or slot number ever
// stored" (keystore.Store.AddBlock, SlotBounds).
package rules
