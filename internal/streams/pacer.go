package streams

import (
	"time"

	"github.com/qkms/qkms/internal/etsi004"
)

// pacer enforces max_bps at one end (ETSI GS QKD 004 GET_KEY: the KM answers
// only as fast as the QoS allows): chunks go out at least
// 8·key_chunk_size/max_bps apart, so that in any window of W seconds at
// most max_bps·W bits plus one chunk leave.
type pacer struct {
	next time.Time // earliest time of the next delivery
}

// wait returns how long the next delivery must wait from now.
func (p *pacer) wait(now time.Time) time.Duration {
	if p.next.IsZero() || !now.Before(p.next) {
		return 0
	}
	return p.next.Sub(now)
}

// delivered records a delivery at now.
func (p *pacer) delivered(now time.Time, q etsi004.QoS) {
	if q.MaxBps == 0 {
		return
	}
	bits := uint64(q.KeyChunkSize) * 8 * uint64(time.Second)
	gap := time.Duration((bits + uint64(q.MaxBps) - 1) / uint64(q.MaxBps))
	p.next = now.Add(gap)
}
