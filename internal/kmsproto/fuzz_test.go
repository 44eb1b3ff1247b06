package kmsproto

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/qkms/qkms/internal/qkd"
)

// Fuzz targets for every decoder. Each checks that decoding never panics
// and that whatever decodes re-encodes and decodes to the same value.
// Values, not bytes: the decoder accepts some non-canonical encodings.

// cmpOpts compare decoded values: `_ struct{}` toarray markers are
// unexported, and an empty list whose field is omitempty comes back nil.
var cmpOpts = cmp.Options{
	cmpopts.IgnoreUnexported(Sealed{}, Piece{}),
	cmpopts.EquateEmpty(),
}

// seedBodies are valid bodies of every type, one per message kind.
func seedBodies(t testing.TB) map[string][]byte {
	t.Helper()
	id1 := qkd.KeyID{0: 0x01, 6: 0x40, 8: 0x80, 15: 0xff}
	id2 := qkd.KeyID{0: 0x02, 6: 0x40, 8: 0x80}
	bodies := map[string]any{
		"new_key_batch": NewKeyBatchReq{BatchID: "b-17", Indices: []uint64{3, 4, 5, 1 << 40},
			Check: bytes.Repeat([]byte{0xa5}, 16)},
		"new_key_batch_resp": NewKeyBatchResp{Result: BatchMissing, Missing: []uint64{4}},
		"make_keys_internal": MakeKeysInternalReq{Sender: "A", First: 1 << 33, Count: 64,
			Pieces: []Piece{{Index: 3, Off: 0, Len: 1024}, {Index: 4, Off: 512, Len: 32}}},
		"make_keys_external": MakeKeysExternalReq{AllocID: "alloc-1", Master: "SAE_A1",
			Slaves: []qkd.SAEID{"SAE_B1", "SAE_C1"}, SizeBits: 256, IDs: []qkd.KeyID{id1, id2},
			Pieces: []Piece{{Index: 9, Off: 64, Len: 64}}, Created: 1700000000000, Expires: 1700000060000},
		"make_keys_external_stream": MakeKeysExternalReq{AllocID: "alloc-2", Master: "SAE_A1",
			Slaves: []qkd.SAEID{"SAE_B1"}, SizeBits: 256, IDs: []qkd.KeyID{id1},
			Pieces: []Piece{{Index: 9, Off: 128, Len: 32}}, Created: 1700000000000, Expires: 1700000060000,
			Stream: "928f29b5-6856-461c-9db1-a73bb21a9992"},
		"delete_keys":      DeleteKeysReq{IDs: []qkd.KeyID{id1}, Reason: "ttl"},
		"delete_keys_resp": DeleteKeysResp{Deleted: 1},
		"status": Status{Node: "B", State: StateActive, Time: -1, ConfirmedBytes: 1 << 50,
			ReadyKeys: 12, Slots: 3},
		"split_key": SplitKeyReq{OpID: "op-1", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}, ID: id1,
			NewIDs: []qkd.KeyID{id2, {0: 3}}},
		"merge_keys": MergeKeysReq{OpID: "op-2", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"},
			IDs: []qkd.KeyID{id1, id2}, NewID: qkd.KeyID{0: 4}},
		"new_app": NewAppReq{App: "SAE_A1>SAE_B1", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1", "SAE_B2"},
			SizeBits: 256, Stream: "928f29b5-6856-461c-9db1-a73bb21a9992", QoS: &QoS{KeyChunkSize: 32, MaxBps: 8192, TTL: 60}},
		"key_stream_closed":      KeyStreamClosedReq{App: "SAE_A1>SAE_B1", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}, Reason: "closed"},
		"key_stream_closed_resp": KeyStreamClosedResp{Deleted: 7},
	}
	out := map[string][]byte{}
	for name, v := range bodies {
		out[name] = marshalTB(t, v)
	}
	return out
}

// seedWire returns valid headers, replies and sealed messages.
func seedWire(t testing.TB) (headers, replies, sealed [][]byte) {
	t.Helper()
	tag := bytes.Repeat([]byte{0x5a}, 16)
	seq := uint64(1)
	for name, body := range seedBodies(t) {
		typ := Type(name)
		if !typ.Known() {
			typ = GetStatus
		}
		h := marshalTB(t, Header{V: Version, Type: typ, Link: "A-B", From: "A", To: "B", Seq: seq, Body: body})
		r := marshalTB(t, Reply{Seq: seq, Type: typ, Code: OK, Body: body})
		headers = append(headers, h)
		replies = append(replies, r)
		sealed = append(sealed, marshalTB(t, Sealed{Data: h, Tag: tag}), marshalTB(t, Sealed{Data: r, Tag: tag}))
		seq++
	}
	headers = append(headers, marshalTB(t, Header{V: Version, Type: GetStatus, Link: "L", From: "A", To: "B"}))
	replies = append(replies, marshalTB(t, Reply{Seq: 9, Type: DeleteKeys, Code: Retry, Err: "not yet"}))
	return headers, replies, sealed
}

// junk seeds: empty, truncated, garbage, indefinite length, a tag.
var junk = [][]byte{{}, {0xff}, {0xa1}, {0x82, 0x40}, {0xbf, 0x01, 0x01, 0xff}, {0xc1, 0x00}, {0x9f, 0xff}}

func addSeeds(f *testing.F, seeds [][]byte) {
	for _, s := range seeds {
		f.Add(s)
		if len(s) > 1 {
			f.Add(s[:len(s)/2]) // truncated
		}
	}
	for _, j := range junk {
		f.Add(j)
	}
}

func FuzzDecodeSealed(f *testing.F) {
	_, _, sealed := seedWire(f)
	addSeeds(f, sealed)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSealed(b)
		if err != nil {
			return
		}
		again, err := DecodeSealed(marshalTB(t, s))
		if err != nil {
			t.Fatalf("DecodeSealed(Marshal(%+v)) = %v", s, err)
		}
		if diff := cmp.Diff(s, again, cmpOpts); diff != "" {
			t.Fatalf("Sealed round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeHeader(f *testing.F) {
	headers, _, _ := seedWire(f)
	addSeeds(f, headers)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeader(b)
		if err != nil {
			return
		}
		again, err := DecodeHeader(marshalTB(t, h))
		if err != nil {
			t.Fatalf("DecodeHeader(Marshal(%+v)) = %v", h, err)
		}
		if diff := cmp.Diff(h, again, cmpOpts); diff != "" {
			t.Fatalf("Header round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeSeqGone(f *testing.F) {
	_, _, sealed := seedWire(f)
	addSeeds(f, append(sealed,
		marshalTB(f, SeqGone{Seq: 7, Type: NewKeyBatch, Hash: bytes.Repeat([]byte{0x3c}, 32)}),
		marshalTB(f, SeqGone{Seq: 1 << 62, Type: GetStatus, Hash: make([]byte, 31)})))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := DecodeSeqGone(b)
		if err != nil {
			return
		}
		if _, err := DecodeSealed(b); err == nil {
			t.Fatalf("%x decodes both as a seq_gone notice and as a sealed message", b)
		}
		again, err := DecodeSeqGone(marshalTB(t, g))
		if err != nil {
			t.Fatalf("DecodeSeqGone(Marshal(%+v)) = %v", g, err)
		}
		if diff := cmp.Diff(g, again, cmpOpts); diff != "" {
			t.Fatalf("SeqGone round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	_, replies, _ := seedWire(f)
	addSeeds(f, replies)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReply(b)
		if err != nil {
			return
		}
		again, err := DecodeReply(marshalTB(t, r))
		if err != nil {
			t.Fatalf("DecodeReply(Marshal(%+v)) = %v", r, err)
		}
		if diff := cmp.Diff(r, again, cmpOpts); diff != "" {
			t.Fatalf("Reply round trip (-first +second):\n%s", diff)
		}
	})
}

// fuzzBody is the body round-trip property for one body type T.
func fuzzBody[T any](f *testing.F, seeds ...string) {
	bodies := seedBodies(f)
	var s [][]byte
	for _, name := range seeds {
		s = append(s, bodies[name])
	}
	addSeeds(f, s)
	f.Fuzz(func(t *testing.T, b []byte) {
		var v T
		if err := Unmarshal(b, &v); err != nil {
			return
		}
		var again T
		if err := Unmarshal(marshalTB(t, v), &again); err != nil {
			t.Fatalf("Unmarshal(Marshal(%+v)) = %v", v, err)
		}
		if diff := cmp.Diff(v, again, cmpOpts); diff != "" {
			t.Fatalf("%T round trip (-first +second):\n%s", v, diff)
		}
	})
}

func FuzzNewKeyBatchReq(f *testing.F) {
	fuzzBody[NewKeyBatchReq](f, "new_key_batch", "new_key_batch_resp")
}

func FuzzMakeKeysInternalReq(f *testing.F) {
	fuzzBody[MakeKeysInternalReq](f, "make_keys_internal")
}

func FuzzMakeKeysExternalReq(f *testing.F) {
	fuzzBody[MakeKeysExternalReq](f, "make_keys_external", "make_keys_external_stream", "delete_keys")
}

func FuzzDeleteKeysReq(f *testing.F) {
	fuzzBody[DeleteKeysReq](f, "delete_keys", "delete_keys_resp")
}

func FuzzSplitKeyReq(f *testing.F) {
	fuzzBody[SplitKeyReq](f, "split_key", "merge_keys")
}

func FuzzMergeKeysReq(f *testing.F) {
	fuzzBody[MergeKeysReq](f, "merge_keys", "split_key")
}

func FuzzNewAppReq(f *testing.F) {
	fuzzBody[NewAppReq](f, "new_app", "key_stream_closed")
}

func FuzzKeyStreamClosedReq(f *testing.F) {
	fuzzBody[KeyStreamClosedReq](f, "key_stream_closed", "new_app")
}

func FuzzKeyStreamClosedResp(f *testing.F) {
	fuzzBody[KeyStreamClosedResp](f, "key_stream_closed_resp", "delete_keys_resp")
}

func FuzzStatus(f *testing.F) {
	fuzzBody[Status](f, "status")
}

func marshalTB(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := Marshal(v)
	if err != nil {
		tb.Fatalf("Marshal(%+v) = %v", v, err)
	}
	return b
}

func FuzzForwardKeysReq(f *testing.F) {
	id, _ := qkd.NewKeyID(nil)
	seed, _ := Marshal(ForwardKeysReq{Stream: "s", Step: "x", Source: "A", Dest: "C", Master: "SAE_A1",
		Slaves: []qkd.SAEID{"SAE_C1"}, SizeBits: 256, IDs: []qkd.KeyID{id}, Pieces: []Piece{{Index: 2, Off: 0, Len: 32}},
		Cipher: make([]byte, 32), Path: []qkd.NodeID{"A"}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var v ForwardKeysReq
		if Unmarshal(b, &v) != nil {
			return
		}
		again, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var w ForwardKeysReq
		if err := Unmarshal(again, &w); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
