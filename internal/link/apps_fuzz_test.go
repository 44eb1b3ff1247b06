package link

import (
	"context"
	"errors"
	"testing"

	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

type noTransport struct{}

func (noTransport) Call(context.Context, kmsproto.Type, []byte) ([]byte, error) {
	return nil, errors.New("no transport")
}
func (noTransport) Ping(context.Context) error { return errors.New("no transport") }

// FuzzDispatchApps feeds arbitrary bodies, as if authenticated, to the
// split_key, merge_keys, new_app and key_stream_closed handlers of a link
// end: nothing panics, every answer has a known code, and a store without
// keys never gains any.
func FuzzDispatchApps(f *testing.F) {
	id := qkd.KeyID{0: 1, 6: 0x40, 8: 0x80}
	for _, v := range []any{
		kmsproto.SplitKeyReq{OpID: "op", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}, ID: id, NewIDs: []qkd.KeyID{{1: 1}, {1: 2}}},
		kmsproto.MergeKeysReq{OpID: "op", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}, IDs: []qkd.KeyID{id, {1: 3}}, NewID: qkd.KeyID{1: 4}},
		kmsproto.NewAppReq{App: "a", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}, SizeBits: 256, QoS: &kmsproto.QoS{MaxBps: 1}},
		kmsproto.KeyStreamClosedReq{App: "a", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}},
	} {
		b, err := kmsproto.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		for typ := range uint8(4) {
			f.Add(typ, b)
		}
	}
	f.Add(uint8(0), []byte{0xa0})
	st := memstore.New(memstore.Options{})
	l, err := New(Options{ID: "A-B", Self: "B", Peer: "A", Store: st, Transport: noTransport{},
		LocalSAE: func(s qkd.SAEID) bool { return s == "SAE_B1" }})
	if err != nil {
		f.Fatal(err)
	}
	types := []kmsproto.Type{kmsproto.SplitKey, kmsproto.MergeKeys, kmsproto.NewApp, kmsproto.KeyStreamClosed}
	f.Fuzz(func(t *testing.T, typ uint8, body []byte) {
		res := l.dispatchApps(context.Background(), types[int(typ)%len(types)], body)
		if res.code > kmsproto.UnknownSAE {
			t.Fatalf("answer code %d", res.code)
		}
		if s, err := st.Stats(context.Background(), "A-B"); err != nil || s.KeysReady+s.KeysPending != 0 {
			t.Fatalf("store gained keys: %+v, %v", s, err)
		}
	})
}
