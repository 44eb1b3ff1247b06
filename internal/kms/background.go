package kms

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// pairKey names a pair on a neighbour link kept stocked by this node:
// local master and neighbour slave (caller is the master), or — the pair
// used in one direction — neighbour master and local slave (caller is the
// slave).
type pairKey struct {
	master, slave qkd.SAEID
	caller        qkd.SAEID // the pair's SAE on this node: whose keys are counted
	link          Link
}

// announcedLink is what stocking needs to learn the pairs a neighbour
// serves towards this node (link.Link: the pairs it announced by new_app).
type announcedLink interface {
	Apps() []kmsproto.NewAppReq
}

// pairs lists the pairs whose keys this node allocates: each local SAE as
// master with every SAE on a neighbour node as slave; and each pair a
// neighbour announced (new_app) with its master there and one slave here.
//
// Both ends of a link stock a pair they share, each from its own block
// parity, so that a pair used in one direction draws on the whole link,
// not half of it. The slave's node counts the keys its slave has not
// fetched yet: they are the master's node's ready keys plus those the
// slave lags behind, so it restocks only while keys flow (the slave
// fetches them) and the two ends together keep about Prereserve keys.
func (s *Service) pairs() []pairKey {
	var out []pairKey
	for sae, node := range s.o.SAEs {
		if node != s.o.Node {
			continue
		}
		for slave, sn := range s.o.SAEs {
			if l := s.byPeer[sn]; l != nil && sn != s.o.Node {
				out = append(out, pairKey{master: sae, slave: slave, caller: sae, link: l})
			}
		}
	}
	for _, l := range s.o.Links {
		al, ok := l.(announcedLink)
		if !ok {
			continue
		}
		for _, a := range al.Apps() {
			if a.Stream != "" || a.Etsi004 != nil || len(a.Slaves) != 1 ||
				s.o.SAEs[a.Master] != l.Peer() || s.o.SAEs[a.Slaves[0]] != s.o.Node {
				continue
			}
			out = append(out, pairKey{master: a.Master, slave: a.Slaves[0], caller: a.Slaves[0], link: l})
		}
	}
	sortPairs(out)
	return out
}

// sortPairs orders pairs by master, then slave.
func sortPairs(ps []pairKey) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].master != ps[j].master {
			return ps[i].master < ps[j].master
		}
		return ps[i].slave < ps[j].slave
	})
}

// minRestockBytes is the smallest restock of a non-empty pool: 16 KiB of
// keys per 64-byte MAC slot keeps the cost of restocking under 0.4 %.
const minRestockBytes = 16 << 10

// restockEvery is how often the reserved pools are looked at.
const restockEvery = 200 * time.Millisecond

// restockGap is the least time between two restocking passes a request
// started (drewOn).
const restockGap = 20 * time.Millisecond

// restockDue holds the pairs whose pool a request just drew on: Run
// restocks them at once instead of at its next tick, so that a pool a
// saturating application drains is refilled as fast as the link's
// material allows, not five times a second.
//
// It also keeps an estimate of each pool from its last count: the keys
// drawn since are subtracted, those reserved since added. While the
// estimate is fresh (restockRecount) and above the restocking threshold,
// a pass skips the pool without counting it — counting is a store query
// over the whole pool, and a saturating application pokes a pass every
// restockGap. Keys the estimate does not see (reserved for the pair by the
// peer, expired, split or merged) only make it stale for restockRecount at
// most.
type restockDue struct {
	mu    sync.Mutex
	pairs map[pairKey]bool      // guarded by mu
	est   map[pairKey]poolCount // guarded by mu
	wake  chan struct{}         // capacity 1: Run has pairs to look at
}

// poolCount is a pool's estimated size and when it was last counted.
type poolCount struct {
	have    int
	counted time.Time
}

// restockRecount is how long a pool's estimate may stand in for a count.
const restockRecount = time.Second

// drewOn notes that a request took keys of p's pool (none: it found too
// few); keys of another size than the pool's do not count.
func (s *Service) drewOn(p pairKey, keys []keystore.Key) {
	if s.o.Limits.Prereserve <= 0 {
		return
	}
	n := 0
	for i := range keys {
		if keys[i].SizeBits == s.o.Limits.KeySize {
			n++
		}
	}
	s.due.mu.Lock()
	s.due.pairs[p] = true
	s.due.mu.Unlock()
	s.adjustEstimate(p, -n)
	select {
	case s.due.wake <- struct{}{}:
	default:
	}
}

// takeDue returns the pairs noted since the last call, in a fixed order.
func (s *Service) takeDue() []pairKey {
	s.due.mu.Lock()
	defer s.due.mu.Unlock()
	out := make([]pairKey, 0, len(s.due.pairs))
	for p := range s.due.pairs {
		out = append(out, p)
	}
	clear(s.due.pairs)
	sortPairs(out)
	return out
}

// Run keeps the reserved pools stocked and deletes expired keys until ctx ends.
func (s *Service) Run(ctx context.Context) {
	tick := time.NewTicker(restockEvery)
	defer tick.Stop()
	defer s.ahead.wg.Wait()
	lastExpire := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.due.wake:
			if s.Active() {
				for _, p := range s.takeDue() {
					s.restock(ctx, p)
				}
			}
			// At most one such pass per restockGap: a pass counts the
			// pool (a store transaction) even when it is full, and a
			// busy pair pokes on every request.
			gap := time.NewTimer(restockGap)
			select {
			case <-ctx.Done():
				gap.Stop()
				return
			case <-gap.C:
			}
			continue
		case <-tick.C:
		}
		if !s.Active() {
			continue
		}
		if now := s.o.Now(); now.Sub(lastExpire) >= time.Second {
			lastExpire = now
			s.expire(ctx)
		}
		for _, p := range s.pairs() {
			if ctx.Err() != nil {
				return
			}
			s.restock(ctx, p)
		}
		s.relayAhead(ctx)
	}
}

// restock tops up a pair's pool of ready default-size keys when it is below
// half of Prereserve, in one reservation (one message to the peer).
func (s *Service) restock(ctx context.Context, p pairKey) {
	want := s.o.Limits.Prereserve
	if want <= 0 {
		return
	}
	size := s.o.Limits.KeySize
	now := s.o.Now()
	s.due.mu.Lock()
	e, ok := s.due.est[p]
	s.due.mu.Unlock()
	if ok && now.Sub(e.counted) < restockRecount && now.Sub(e.counted) >= 0 && e.have > want/2 {
		return
	}
	have, err := s.o.Store.CountKeys(ctx, keystore.TakeRequest{Master: p.master, Slaves: []qkd.SAEID{p.slave},
		Caller: p.caller, SizeBits: size, Now: now})
	if err != nil {
		return
	}
	s.setEstimate(p, have, now)
	if have > want/2 {
		return
	}
	st, err := s.o.Store.Stats(ctx, p.link.ID())
	if err != nil {
		return
	}
	// Leave material for on-demand requests of other sizes and for MAC keys:
	// stock at most half of what is free. Each reservation costs one
	// message (a 64-byte MAC slot): unless the pool is empty, reserve at
	// least minRestockBytes of keys at once.
	n := min(want-have, int(st.ConfirmedBytes[parity(p.link)]*8/int64(size))/2)
	if n < 1 || (have > 0 && n*size/8 < min(minRestockBytes, (want-have)*size/8)) {
		return
	}
	// In reservations of at most maxRestockKeys: a huge one would hold
	// the store for long at both ends (requests wait behind it) and make
	// one huge message.
	for n > 0 && ctx.Err() == nil {
		k := min(n, maxRestockKeys)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := p.link.Reserve(rctx, p.master, []qkd.SAEID{p.slave}, size, k, s.o.Limits.TTL)
		cancel()
		if err == nil {
			s.adjustEstimate(p, k)
		}
		if err != nil {
			if !errors.Is(err, qkd.ErrInsufficientKey) && !errors.Is(err, qkd.ErrPeerUnavailable) {
				s.log.Warn("restocking reserved keys failed", "master", string(p.master), "slave", string(p.slave), "err", err)
			}
			return
		}
		n -= k
	}
}

// adjustEstimate adds delta keys to p's estimated pool, if it has one.
func (s *Service) adjustEstimate(p pairKey, delta int) {
	s.due.mu.Lock()
	if e, ok := s.due.est[p]; ok {
		e.have += delta
		s.due.est[p] = e
	}
	s.due.mu.Unlock()
}

// setEstimate records a count of p's pool.
func (s *Service) setEstimate(p pairKey, have int, at time.Time) {
	s.due.mu.Lock()
	s.due.est[p] = poolCount{have: have, counted: at}
	s.due.mu.Unlock()
}

// maxRestockKeys bounds the keys of one restocking reservation (32 KiB of
// 256-bit keys: one 64-byte MAC slot per 32 KiB is 0.2 %).
const maxRestockKeys = 1024

// expire deletes keys whose TTL ended and tells the peer about the ones
// this node allocated (it deletes them on its own clock too).
func (s *Service) expire(ctx context.Context) {
	gone, err := s.o.Store.ExpireKeys(ctx, s.o.Now())
	if err != nil || len(gone) == 0 {
		return
	}
	byLink := map[qkd.LinkID][]qkd.KeyID{}
	for _, k := range gone {
		if s.local(k.Master) {
			byLink[k.Link] = append(byLink[k.Link], k.ID)
		}
	}
	s.log.Info("expired keys deleted", "keys", len(gone))
	for _, l := range s.o.Links {
		if ids := byLink[l.ID()]; len(ids) > 0 {
			if _, err := l.DeleteAtPeer(ctx, ids, "ttl"); err != nil {
				s.log.Debug("delete_keys after expiry", "link", string(l.ID()), "err", err)
			}
		}
	}
}
