package kms

import (
	"context"
	"errors"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// Relay-ahead pools (docs/relay-design.md "Relaying ahead").
//
// A pair whose slave is on a node that is not a neighbour gets its keys
// relayed hop by hop along its key stream. Relayed on demand, every
// enc_keys waits for the whole route (one round trip per hop) and the
// route carries one request's keys at a time. Instead, the source keeps a
// pool of keys already relayed for each remote pair that asked for keys,
// sized by the pair's measured demand: the keys it took in the last
// Limits.RelayAhead (an exponentially weighted rate × that horizon), at
// least one request's worth, at most Limits.RelayAheadMax. Up to
// maxAheadInFlight relay batches per pair are on the route at once, so a
// pair that drains its pool keeps the route busy. A pair idle for
// aheadIdle is forgotten: its pool is no longer topped up and its keys
// expire with their TTL at both ends, as any unused reserved key.
//
// Keys relayed ahead are ordinary keys of the pair (Ready at both ends
// once the destination acknowledged), so a request is served from the
// pool exactly like a neighbour pair's, by TakeForPair.
//
// Both ends relay ahead. The slave's node, seeing its slave fetch keys of
// a remote master (dec_keys), relays keys of that pair back along the
// stream's route (backRelayer) from its own halves of the links, sized by
// the slave's fetch rate and counting the keys its slave has not fetched
// yet: the master's node's pool then fills from both halves of every
// link of the route, and a pair used in one direction draws on all of
// them (as both ends of a link stock a neighbour pair, background.go).

const (
	maxAheadInFlight = 4                // relay batches per pair on the route at once
	maxAheadBatch    = 1024             // keys per relay batch, at most
	minAheadBatch    = 16               // and at least
	aheadIdle        = 60 * time.Second // a pair unused this long is no longer stocked
	aheadTimeout     = 30 * time.Second // one relay batch
)

type aheadKey struct {
	master, slave qkd.SAEID
	size          int
	// back: this node is the slave's, and relays the pair's keys back
	// along the route to the master's node (backRelayer); the pool counted
	// is the slave's keys not fetched yet.
	back bool
}

// backRelayer is what relaying ahead from the slave's end needs of the
// relay engine (relay.Engine is one; a Relayer without it relays ahead from
// the master's end only).
type backRelayer interface {
	// BackStream returns the key stream of (master, slaves) that ends at
	// this node, if any.
	BackStream(master qkd.SAEID, slaves []qkd.SAEID) (string, bool)
	// RelayBack relays n keys of the stream's pair from this node back to
	// the stream's source node.
	RelayBack(ctx context.Context, stream string, sizeBits, n int, ttl time.Duration) ([]qkd.KeyID, error)
}

// aheadPair is the demand of one remote pair and size.
type aheadPair struct {
	taken    int       // keys requested since the last tick
	biggest  int       // the largest request seen
	rate     float64   // keys/s, exponentially weighted
	lastUse  time.Time // the last request
	lastTick time.Time
	inFlight int // keys on the route now
	batches  int // relay batches on the route now
	batch    int // keys per batch: halved when the route lacks key material, doubled back on success
}

// aheadTable holds the remote pairs' demand.
type aheadTable struct {
	mu    sync.Mutex
	pairs map[aheadKey]*aheadPair // guarded by mu
	wg    sync.WaitGroup
}

// note records a request of n keys of pair k (enc_keys of its master
// here; with k.back, dec_keys of its slave here).
func (t *aheadTable) note(k aheadKey, n int, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pairs[k]
	if p == nil {
		p = &aheadPair{lastTick: now, batch: maxAheadBatch}
		t.pairs[k] = p
	}
	p.taken += n
	p.biggest = max(p.biggest, n)
	p.lastUse = now
}

// aheadJob is one relay batch to start.
type aheadJob struct {
	key    aheadKey
	stream string
	n      int
}

// target is how many keys the pool of p should hold: the demand of the
// horizon, at least two of the largest requests, at most limit.
func (p *aheadPair) target(horizon time.Duration, limit int) int {
	want := int(math.Ceil(p.rate * horizon.Seconds()))
	return min(max(want, 2*p.biggest), limit)
}

// tick updates the demand of every pair at now and forgets idle ones.
func (t *aheadTable) tick(now time.Time) []aheadKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	var live []aheadKey
	for k, p := range t.pairs {
		if now.Sub(p.lastUse) > aheadIdle && p.batches == 0 {
			delete(t.pairs, k)
			continue
		}
		if dt := now.Sub(p.lastTick).Seconds(); dt > 0 {
			const alpha = 0.3
			p.rate = alpha*float64(p.taken)/dt + (1-alpha)*p.rate
			p.taken, p.lastTick = 0, now
		}
		if now.Sub(p.lastUse) <= aheadIdle {
			live = append(live, k)
		}
	}
	sort.Slice(live, func(i, j int) bool {
		a, b := live[i], live[j]
		if a.master != b.master {
			return a.master < b.master
		}
		if a.slave != b.slave {
			return a.slave < b.slave
		}
		if a.size != b.size {
			return a.size < b.size
		}
		return !a.back && b.back
	})
	return live
}

// plan returns the batches to start for pair k, whose pool holds have
// keys, and counts them as in flight.
func (t *aheadTable) plan(k aheadKey, stream string, have int, horizon time.Duration, limit int) []aheadJob {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pairs[k]
	if p == nil {
		return nil
	}
	need := p.target(horizon, limit) - have - p.inFlight
	var jobs []aheadJob
	for need > 0 && p.batches < maxAheadInFlight {
		n := min(need, p.batch)
		jobs = append(jobs, aheadJob{key: k, stream: stream, n: n})
		p.inFlight += n
		p.batches++
		need -= n
	}
	return jobs
}

// done returns a batch's keys from in flight and adapts the batch size:
// a route short of key material gets smaller batches.
func (t *aheadTable) done(j aheadJob, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pairs[j.key]
	if p == nil {
		return
	}
	p.inFlight -= j.n
	p.batches--
	switch {
	case err == nil:
		p.batch = min(2*p.batch, maxAheadBatch)
	case errors.Is(err, qkd.ErrInsufficientKey):
		p.batch = max(min(p.batch, j.n)/2, minAheadBatch)
	}
}

// relayAhead tops up the pools of the remote pairs that asked for keys.
func (s *Service) relayAhead(ctx context.Context) {
	horizon, limit := s.o.Limits.RelayAhead, s.o.Limits.RelayAheadMax
	if horizon <= 0 || limit <= 0 || s.o.Router == nil || s.o.Relayer == nil {
		return
	}
	for _, k := range s.ahead.tick(s.o.Now()) {
		var stream string
		var ok bool
		caller := k.master
		switch {
		case !k.back:
			stream, ok = s.o.Router.Known(k.master, []qkd.SAEID{k.slave})
		case s.back != nil:
			stream, ok = s.back.BackStream(k.master, []qkd.SAEID{k.slave})
			caller = k.slave
		}
		if !ok {
			continue
		}
		have, err := s.o.Store.CountKeys(ctx, keystore.TakeRequest{Master: k.master, Slaves: []qkd.SAEID{k.slave},
			Caller: caller, SizeBits: k.size, Now: s.o.Now()})
		if err != nil {
			continue
		}
		for _, j := range s.ahead.plan(k, stream, have, horizon, limit) {
			s.ahead.wg.Add(1)
			go s.relayBatch(ctx, j)
		}
	}
}

// relayBatch relays one batch ahead of the pair's requests.
func (s *Service) relayBatch(ctx context.Context, j aheadJob) {
	defer s.ahead.wg.Done()
	rctx, cancel := context.WithTimeout(ctx, aheadTimeout)
	defer cancel()
	var err error
	if j.key.back && s.back != nil {
		_, err = s.back.RelayBack(rctx, j.stream, j.key.size, j.n, s.o.Limits.TTL)
	} else {
		_, err = s.o.Relayer.Relay(rctx, j.stream, j.key.size, j.n, s.o.Limits.TTL)
	}
	s.ahead.done(j, err)
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.Is(err, qkd.ErrInsufficientKey), errors.Is(err, qkd.ErrPeerUnavailable), errors.Is(err, qkd.ErrNoRoute):
		s.log.Debug("relaying ahead: not now", "stream", j.stream, "keys", j.n, "err", err)
	default:
		s.log.Warn("relaying ahead failed", "stream", j.stream, "keys", j.n, "err", err)
	}
}
