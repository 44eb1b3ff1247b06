package node

import (
	"context"
	"github.com/qkms/qkms/internal/keystore"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
)

// perfHistory is how many one-second performance entries are kept per link
// (ten minutes).
const perfHistory = 600

// perfSampler keeps the QUICKS link/performance history of every link:
// one entry a second (QUICKS kms-performance-entry). Per link and period:
//
//   - SKR: bytes the link's QKD module delivered and the node stored
//     (blocks dropped because the link holds max_link_material are not
//     counted), divided by the period;
//   - IKR: bytes this node turned into MAC keys or spent on batch checks
//     (qkms_internal_key_bytes_total), per second;
//   - EXKR: key material that left the link's free pool for any other use
//     (keys for SAEs, relay pads), per second. qkms counts it by
//     conservation, without a counter in the key path: ingested − growth of
//     the pool (unconfirmed + free confirmed) − IKR, floored at 0. It
//     therefore also holds the peer's internal use of the shared pool and
//     batches discarded after a mismatch (both small);
//   - KAV: free confirmed bytes of the link at the end of the period.
type perfSampler struct {
	n *Node

	mu    sync.Mutex
	links map[qkd.LinkID]*perfLink // guarded by mu
}

type perfLink struct {
	ring  []quicks.PerformanceEntry // oldest first, at most perfHistory
	base  perfCounters
	has   bool      // base is set
	fedAt time.Time // last period with ingested bytes
}

// perfCounters are the cumulative values one entry is the difference of.
type perfCounters struct {
	at       time.Time
	ingested int64
	internal float64
	pool     int64 // unconfirmed + free confirmed bytes
	kav      int64 // free confirmed bytes
}

func newPerfSampler(n *Node) *perfSampler {
	p := &perfSampler{n: n, links: map[qkd.LinkID]*perfLink{}}
	for _, l := range n.links {
		p.links[l.ID()] = &perfLink{}
	}
	return p
}

// observe records one sample of a link from the stats housekeeping read
// (once a second): the sampler does no store or metrics reads of its own.
func (p *perfSampler) observe(l *nodeLink, st keystore.LinkStats, now time.Time) {
	kav := st.ConfirmedBytes[0] + st.ConfirmedBytes[1]
	c := perfCounters{at: now, ingested: l.rate.totalBytes(), internal: float64(l.internal.Load()),
		pool: kav + st.UnconfirmedBytes, kav: kav}
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.links[l.ID()]
	if pl == nil {
		return
	}
	if pl.has {
		if e, ok := entryBetween(pl.base, c); ok {
			if len(pl.ring) == perfHistory {
				copy(pl.ring, pl.ring[1:])
				pl.ring = pl.ring[:perfHistory-1]
			}
			pl.ring = append(pl.ring, e)
		}
		if c.ingested > pl.base.ingested {
			pl.fedAt = now
		}
	}
	pl.base, pl.has = c, true
}

// entryBetween is the performance entry of the period from a to b.
func entryBetween(a, b perfCounters) (quicks.PerformanceEntry, bool) {
	dt := b.at.Sub(a.at)
	if dt <= 0 {
		return quicks.PerformanceEntry{}, false
	}
	sec := dt.Seconds()
	ingested := float64(b.ingested - a.ingested)
	internal := b.internal - a.internal
	external := ingested - float64(b.pool-a.pool) - internal
	rate := func(v float64) int32 { return quicks.Int32(int64(max(v, 0) / sec)) }
	return quicks.PerformanceEntry{Timestamp: b.at.UTC().Truncate(time.Millisecond), DeltaT: quicks.Int32(dt.Milliseconds()),
		SKR: rate(ingested), IKR: rate(internal), EXKR: rate(external), KAV: quicks.Int32(b.kav)}, true
}

// performance returns the newest entry of link and at most entries older
// ones, newest first (kmsapi.AllHistory: all). ok is false for a link
// that is not this node's. Before the first period ends, current has
// delta_t 0, zero rates and the KAV of now.
func (p *perfSampler) performance(ctx context.Context, id qkd.LinkID, entries int) (quicks.Performance, bool) {
	var l *nodeLink
	for _, nl := range p.n.links {
		if nl.ID() == id {
			l = nl
		}
	}
	if l == nil {
		return quicks.Performance{}, false
	}
	p.mu.Lock()
	pl := p.links[id]
	ring := append([]quicks.PerformanceEntry(nil), pl.ring...)
	p.mu.Unlock()
	if len(ring) == 0 {
		cur := quicks.PerformanceEntry{Timestamp: time.Now().UTC().Truncate(time.Millisecond)}
		if st, err := p.n.store.Stats(ctx, l.ID()); err == nil {
			cur.KAV = quicks.Int32(st.ConfirmedBytes[0] + st.ConfirmedBytes[1])
		}
		return quicks.Performance{Current: cur}, true
	}
	out := quicks.Performance{Current: ring[len(ring)-1]}
	older := ring[:len(ring)-1]
	if entries >= 0 && entries < len(older) {
		older = older[len(older)-entries:]
	}
	for i := len(older) - 1; i >= 0; i-- {
		out.History = append(out.History, older[i])
	}
	return out, true
}

// fedSince reports whether the link's QKD module delivered key material
// within d before now.
func (p *perfSampler) fedSince(id qkd.LinkID, now time.Time, d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.links[id]
	return pl != nil && !pl.fedAt.IsZero() && now.Sub(pl.fedAt) <= d
}

// totalBytes returns the bytes counted by add so far.
func (r *rateMeter) totalBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}
