package node

import (
	"sync/atomic"

	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/telemetry"
)

// observer feeds link events into the node's metrics.
type observer struct {
	m        *telemetry.Metrics
	internal *atomic.Int64 // the link's internal key bytes, for QUICKS IKR
}

func (o observer) MACFailure(l qkd.LinkID, _ string) { o.m.IncMACFailures(l) }

func (o observer) Message(l qkd.LinkID, t kmsproto.Type, result string) {
	r := telemetry.PeerRejected
	switch result {
	case kmsproto.OK.String():
		r = telemetry.PeerOK
	case "transport_error":
		r = telemetry.PeerError
	case "bad_mac":
		r = telemetry.PeerBadMAC
	}
	o.m.IncPeerMessages(l, string(t), r)
}

func (o observer) Batch(l qkd.LinkID, result string, blocks int) {
	switch result {
	case kmsproto.BatchConfirmed:
		o.m.IncBatches(l, telemetry.BatchConfirmed)
		o.m.AddBlocks(l, telemetry.BlocksConfirmed, blocks)
	case kmsproto.BatchMismatch:
		o.m.IncBatches(l, telemetry.BatchMismatch)
		o.m.AddBlocks(l, telemetry.BlocksDiscarded, blocks)
	case kmsproto.BatchMissing:
		o.m.IncBatches(l, telemetry.BatchMissing)
		o.m.AddBlocks(l, telemetry.BlocksDiscarded, blocks)
	}
}

func (o observer) InternalBytes(l qkd.LinkID, n int) {
	o.m.AddInternalKeyBytes(l, n)
	if o.internal != nil {
		o.internal.Add(int64(n))
	}
}
func (o observer) PSKTag(l qkd.LinkID) { o.m.IncPSKTags(l) }
