package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/qkd"
)

// Leg is one destination node of a multicast relay (kms.Leg: the service
// that plans multicasts declares it, so that it need not import the link
// layer through this package).
type Leg = kms.Leg

// ErrLeg: a leg of a multicast relay failed; the keys were withdrawn here.
var ErrLeg = errors.New("relay: a destination of the multicast did not get the keys")

// RelayGroup relays the same n keys of sizeBits (drawn once from the RNG,
// same IDs) from this node to every leg's destination, in parallel, and
// returns their IDs once every destination holds them; only then are they
// Ready here for (master, allSlaves). If a leg fails, this node deletes
// its copy, so the keys are never served; the copies that reached other
// destinations are never handed out by this node's master and expire
// there with their TTL. The error is the first leg's failure (wrapping
// ErrLeg).
func (e *Engine) RelayGroup(ctx context.Context, legs []Leg, master qkd.SAEID, allSlaves []qkd.SAEID, sizeBits, n int, ttl time.Duration) ([]qkd.KeyID, error) {
	if len(legs) == 0 || n <= 0 || sizeBits <= 0 || sizeBits%8 != 0 {
		return nil, fmt.Errorf("relay: bad multicast request: %d legs, %d×%d bits", len(legs), n, sizeBits)
	}
	plan := make([]leg, len(legs))
	for i, lg := range legs {
		var err error
		if plan[i], err = e.planLeg(lg, master); err != nil {
			return nil, err
		}
	}
	b, err := e.newBatch(master, allSlaves, sizeBits, n, ttl)
	if err != nil {
		return nil, err
	}
	defer b.k.Wipe()
	errs := make([]error, len(plan))
	var wg sync.WaitGroup
	for i, l := range plan {
		wg.Go(func() {
			// The first leg stores the source's copy, Pending; nobody but
			// this call makes it Ready.
			errs[i] = e.sendStep(ctx, b, l, i == 0, nil)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			e.withdraw(context.WithoutCancel(ctx), b.ids, plan, errs)
			return nil, fmt.Errorf("%w: %s: %w", ErrLeg, plan[i].dest, err)
		}
	}
	if err := e.o.Store.SetKeysReady(ctx, b.ids, ""); err != nil {
		e.withdraw(context.WithoutCancel(ctx), b.ids, plan, make([]error, len(plan)))
		return nil, fmt.Errorf("relay: multicast keys ready: %w", err)
	}
	return b.ids, nil
}

// planLeg checks a leg against the forwarding table (or, for a direct leg,
// the neighbours) and returns where its step goes.
func (e *Engine) planLeg(lg Leg, master qkd.SAEID) (leg, error) {
	if lg.Dest == "" || lg.Dest == e.o.Node || len(lg.Slaves) == 0 {
		return leg{}, fmt.Errorf("relay: bad multicast leg to %q", lg.Dest)
	}
	if lg.Stream == "" {
		next := e.byPeer[lg.Dest]
		if next == nil {
			return leg{}, fmt.Errorf("%w: %s is not a neighbour and no key stream leads there", qkd.ErrNoRoute, lg.Dest)
		}
		return leg{dest: lg.Dest, slaves: lg.Slaves, next: next}, nil
	}
	en, err := e.onePath(lg.Stream) // a multicast's keys are never split over paths
	if err != nil {
		return leg{}, err
	}
	if en.Source != e.o.Node || en.Dest != lg.Dest || en.Master != master || !slices.Equal(en.Slaves, lg.Slaves) || e.byPeer[en.Next] == nil {
		return leg{}, fmt.Errorf("%w: %s", ErrUnknownStream, lg.Stream)
	}
	if e.hybridRequired(en) {
		return leg{}, ErrHybridMulticast // fails closed: one R for several destinations is not wired yet
	}
	return leg{stream: en.Stream, dest: lg.Dest, slaves: lg.Slaves, next: e.byPeer[en.Next]}, nil
}

// withdraw deletes this node's copy of keys whose multicast failed, and
// the copies that direct legs (errs[i] == nil) delivered to neighbours: one
// delete_keys each, best effort. Copies further away are never handed out
// with this node's master (it has none) and expire with their TTL.
func (e *Engine) withdraw(ctx context.Context, ids []qkd.KeyID, plan []leg, errs []error) {
	if _, err := e.o.Store.DeleteKeys(ctx, ids); err != nil {
		e.log.Error("cannot delete the keys of a failed multicast relay", "keys", len(ids), "err", err)
	}
	for i, l := range plan {
		if errs[i] != nil || l.stream != "" {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := l.next.DeleteAtPeer(dctx, ids, "multicast aborted"); err != nil {
			e.log.Debug("delete_keys after a failed multicast", "peer", string(l.dest), "err", err)
		}
		cancel()
	}
}
