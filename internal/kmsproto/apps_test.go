package kmsproto

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
)

func TestStreamAnnouncementRoundTrip(t *testing.T) {
	tests := []any{
		&NewAppReq{App: "k", Stream: "k", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}, SizeBits: 256,
			QoS: &QoS{KeyChunkSize: 32, Timeout: 10000}, Etsi004: &StreamInfo{State: StreamOpen, Mimetype: "application/json", Want: 9}},
		&NewAppResp{State: StreamInUse, Master: "SAE_A1", QoS: &QoS{TTL: 60}, Mimetype: "application/json"},
	}
	for _, in := range tests {
		b, err := Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		switch in.(type) {
		case *NewAppReq:
			out = &NewAppReq{}
		default:
			out = &NewAppResp{}
		}
		if err := Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(in, out); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
	// An announcement without Etsi004 (an older sender) decodes as before.
	b, _ := Marshal(NewAppReq{App: "a", Master: "SAE_A1", Slaves: []qkd.SAEID{"SAE_B1"}})
	var r NewAppReq
	if err := Unmarshal(b, &r); err != nil || r.Etsi004 != nil {
		t.Errorf("Unmarshal(plain new_app) = %+v, %v", r, err)
	}
}
