package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Run runs the conformance suite. open returns a new, empty Store for one
// subtest and arranges for it to be closed when the subtest ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) keystore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s keystore.Store)
	}{
		{"AddBlock", testAddBlock},
		{"ListBlocks", testListBlocks},
		{"GetBlocks", testGetBlocks},
		{"ConfirmBlocks", testConfirmBlocks},
		{"DiscardBlocks", testDiscardBlocks},
		{"Material", testMaterial},
		{"Allocate/Cut", testAllocateCut},
		{"Allocate/Idempotent", testAllocateIdempotent},
		{"Allocate/Conflict", testAllocateConflict},
		{"Allocate/Malformed", testAllocateMalformed},
		{"Allocate/OutboxOnly", testAllocateOutboxOnly},
		{"TakeForPair", testTakeForPair},
		{"TakeForPair/LastRecipient", testLastRecipient},
		{"TakeByID", testTakeByID},
		{"TakeByID/AllOrNone", testTakeByIDAllOrNone},
		{"CountKeys", testCountKeys},
		{"DeleteKeys", testDeleteKeys},
		{"ExpireKeys", testExpireKeys},
		{"Outbox", testOutbox},
		{"AbortAllocation", testAbortAllocation},
		{"InitLink", testInitLink},
		{"TakeSlot", testTakeSlot},
		{"UseSlot", testUseSlot},
		{"SlotBounds", testSlotBounds},
		{"Stats", testStats},
		{"Relay/Steps", testRelaySteps},
		{"Relay/Applied", testRelayApplied},
		{"Relay/Shares", testRelayShares},
		{"Relay/Conflict", testRelayConflict},
		{"Relay/Refused", testRelayRefused},
		{"Relay/Record", testRelayRecord},
		{"Relay/Expire", testRelayExpire},
		{"Resize", testResize},
		{"Resize/Applied", testResizeApplied},
		{"Resize/Refused", testResizeRefused},
		{"ListKeys", testListKeys},
		{"StreamKeys", testStreamKeys},
		{"StreamKeys/Interleaved", testStreamKeysInterleaved},
		{"Zeroize", testZeroize},
		{"Concurrent/TakeForPair", testConcurrentTakeForPair},
		{"Concurrent/TakeByID", testConcurrentTakeByID},
		{"Concurrent/Mixed", testConcurrentMixed},
		{"Concurrent/Relay", testConcurrentRelay},
		{"Concurrent/RelaySameID", testConcurrentRelaySameID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// Fixed names and times used throughout the suite.
const (
	linkAB   qkd.LinkID = "A-B"
	linkAC   qkd.LinkID = "A-C"
	nodeA    qkd.NodeID = "A"
	nodeB    qkd.NodeID = "B"
	master   qkd.SAEID  = "SAE_A1"
	slave    qkd.SAEID  = "SAE_B1"
	slave2   qkd.SAEID  = "SAE_B2"
	stranger qkd.SAEID  = "SAE_X"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Pattern returns n bytes that are unique to (link, index): the material of
// block index of link in tests.
func Pattern(link qkd.LinkID, index uint64, n int) []byte {
	var seed [32]byte
	copy(seed[:24], link)
	binary.BigEndian.PutUint64(seed[24:], index)
	r := rand.NewChaCha8(seed)
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

// addBlock adds an unconfirmed block of Pattern bytes and returns them.
func addBlock(t testing.TB, s keystore.Store, l qkd.LinkID, idx uint64, n int) []byte {
	t.Helper()
	data := Pattern(l, idx, n)
	b := keystore.Block{Link: l, Index: idx, Data: secret.From(data), Arrived: t0}
	if err := s.AddBlock(context.Background(), b); err != nil {
		t.Fatalf("AddBlock(%s, %d) = %v", l, idx, err)
	}
	return data
}

// addConfirmed adds and confirms blocks of n bytes with the given indices and
// returns their bytes.
func addConfirmed(t testing.TB, s keystore.Store, l qkd.LinkID, n int, indices ...uint64) map[uint64][]byte {
	t.Helper()
	out := make(map[uint64][]byte)
	for _, i := range indices {
		out[i] = addBlock(t, s, l, i, n)
	}
	if err := s.ConfirmBlocks(context.Background(), l, indices, 0); err != nil {
		t.Fatalf("ConfirmBlocks(%s, %v) = %v", l, indices, err)
	}
	return out
}

func newID(t testing.TB) qkd.KeyID {
	t.Helper()
	id, err := qkd.NewKeyID(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// keySpec describes keys for makeKeys.
type keySpec struct {
	link    qkd.LinkID
	n       int
	bits    int
	slaves  []qkd.SAEID
	pending []qkd.SAEID
	expires time.Time
	ready   bool
	stream  string // Key.Stream
}

func (k keySpec) withDefaults() keySpec {
	if k.link == "" {
		k.link = linkAB
	}
	if k.bits == 0 {
		k.bits = 256
	}
	if k.slaves == nil {
		k.slaves = []qkd.SAEID{slave}
	}
	if k.pending == nil {
		k.pending = []qkd.SAEID{slave}
	}
	return k
}

// freshIndex returns an index above every block ever added to l.
func freshIndex(t testing.TB, s keystore.Store, l qkd.LinkID) uint64 {
	t.Helper()
	st, err := s.Stats(context.Background(), l)
	if err != nil {
		t.Fatalf("Stats(%s) = %v", l, err)
	}
	if !st.HasIndex {
		return 1000
	}
	return st.MaxIndex + 1
}

// makeKeys allocates spec.n keys, each from a fresh confirmed block, and
// returns them with the bytes they must hold.
func makeKeys(t testing.TB, s keystore.Store, spec keySpec) []keystore.Key {
	t.Helper()
	spec = spec.withDefaults()
	ctx := context.Background()
	keys := make([]keystore.Key, spec.n)
	for i := range keys {
		idx := freshIndex(t, s, spec.link)
		data := addConfirmed(t, s, spec.link, spec.bits/8, idx)[idx]
		k := keystore.Key{
			ID: newID(t), Link: spec.link, State: keystore.KeyPending, Master: master,
			Slaves: spec.slaves, Pending: spec.pending, SizeBits: spec.bits,
			Created: t0, Expires: spec.expires, Stream: spec.stream,
		}
		a := keystore.Allocation{Link: spec.link, Pieces: []keystore.Piece{{Index: idx, Len: spec.bits / 8}}, Keys: []keystore.Key{k}}
		if err := s.Allocate(ctx, a); err != nil {
			t.Fatalf("Allocate(key %d) = %v", i, err)
		}
		if spec.ready {
			k.State = keystore.KeyReady
			if err := s.SetKeysReady(ctx, []qkd.KeyID{k.ID}, ""); err != nil {
				t.Fatalf("SetKeysReady = %v", err)
			}
		}
		k.Data = secret.From(data)
		keys[i] = k
	}
	return keys
}

func ids(keys []keystore.Key) []qkd.KeyID {
	out := make([]qkd.KeyID, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

// sameKeyBytes fails unless got holds the IDs and bytes of want, in order.
func sameKeyBytes(t testing.TB, call string, got, want []keystore.Key) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s returned %d keys, want %d", call, len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID {
			t.Errorf("%s key %d = %s, want %s", call, i, got[i].ID, want[i].ID)
		}
		if !bytes.Equal(got[i].Data.Expose(), want[i].Data.Expose()) {
			t.Errorf("%s key %d (%s): bytes differ from the allocated ones", call, i, want[i].ID)
		}
	}
}

func wantErr(t testing.TB, call string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v, want %v", call, err, want)
	}
}
