package link_test

import (
	"context"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

func TestReserveIDs(t *testing.T) {
	p := readyPair(t)
	ctx := context.Background()
	ids := []qkd.KeyID{{1}, {2}, {3}}
	if err := p.A.ReserveIDs(ctx, masterA, slavesB, 128, ids, time.Hour); err != nil {
		t.Fatal(err)
	}
	ka, err := p.SA.TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: masterA, Caller: masterA})
	if err != nil {
		t.Fatalf("TakeByID at the master's node: %v", err)
	}
	kb, err := p.SB.TakeByID(ctx, keystore.TakeRequest{IDs: ids, Master: masterA, Caller: slavesB[0]})
	if err != nil {
		t.Fatalf("TakeByID at the slave's node: %v", err)
	}
	for i := range ids {
		if ka[i].ID != ids[i] || !ka[i].Data.Equal(kb[i].Data) || ka[i].Data.Len() != 16 {
			t.Errorf("key %d: IDs %v/%v, bytes differ or not 16 bytes", i, ka[i].ID, kb[i].ID)
		}
	}
	for _, bad := range [][]qkd.KeyID{nil, {{9}, {9}}} {
		if err := p.A.ReserveIDs(ctx, masterA, slavesB, 128, bad, time.Hour); err == nil {
			t.Errorf("ReserveIDs(%v) succeeded", bad)
		}
	}
}

type fakeStreams struct{ got []kmsproto.NewAppReq }

func (f *fakeStreams) PeerStream(_ context.Context, _ qkd.LinkID, req kmsproto.NewAppReq) (kmsproto.NewAppResp, error) {
	f.got = append(f.got, req)
	return kmsproto.NewAppResp{State: kmsproto.StreamOpen, Master: req.Master}, nil
}

func TestAnnounceStream(t *testing.T) {
	p := msgPair(t)
	ctx := context.Background()
	ks := "6b1f2e8a-470c-4f3d-9a52-11e07c3b905d"
	good := kmsproto.NewAppReq{App: ks, Stream: ks, Master: masterA, Slaves: slavesB, SizeBits: 256,
		QoS: &kmsproto.QoS{}, Etsi004: &kmsproto.StreamInfo{State: kmsproto.StreamOpen}}
	if _, err := p.A.AnnounceStream(ctx, good); refusal(err) != kmsproto.Retry {
		t.Errorf("AnnounceStream without a handler = %v, want Retry", err)
	}
	f := &fakeStreams{}
	p.B.SetStreamHandler(f)
	reverse := good
	reverse.Master, reverse.Slaves = slavesB[0], []qkd.SAEID{masterA} // the destination's end tells the source's
	bad := good
	bad.Slaves = []qkd.SAEID{"SAE_X"}
	tests := []struct {
		name string
		req  kmsproto.NewAppReq
		want kmsproto.Code
	}{
		{"source to destination", good, kmsproto.OK},
		{"destination to source", reverse, kmsproto.OK},
		{"neither attached to the receiver", bad, kmsproto.BadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := p.A.AnnounceStream(ctx, tt.req)
			if tt.want == kmsproto.OK && (err != nil || resp.State != kmsproto.StreamOpen) || tt.want != kmsproto.OK && refusal(err) != tt.want {
				t.Fatalf("AnnounceStream = %+v, %v; want code %v", resp, err, tt.want)
			}
		})
	}
	if len(f.got) != 2 {
		t.Errorf("handler got %d announcements, want 2", len(f.got))
	}
}
