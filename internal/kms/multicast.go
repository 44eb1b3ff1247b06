package kms

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

// destination is a node holding some of a multicast's slaves.
type destination struct {
	node   qkd.NodeID
	link   Link // nil: not a neighbour (or not served directly)
	slaves []qkd.SAEID
}

// encMulticast answers enc_keys with additional_slave_SAE_IDs (ETSI GS QKD
// 014 §5.3): keys that the slave and every additional slave can
// fetch with dec_keys at its own node (same bytes, same IDs, each slave
// once). The keys are kept for (caller, all slaves in sorted order), so the
// order of the request does not matter. All slaves on one neighbour: one
// reservation with that neighbour. Otherwise the keys are drawn here once
// and relayed to every slave's node (Relayer.RelayGroup).
func (s *Service) encMulticast(ctx context.Context, caller, slave qkd.SAEID, req KeyRequest) ([]Key, error) {
	all, dests, err := s.multicastPlan(caller, slave, req.AdditionalSlaves)
	if err != nil {
		return nil, err
	}
	take := keystore.TakeRequest{Master: caller, Slaves: all, Caller: caller, SizeBits: req.Size, Number: req.Number, Now: s.o.Now()}
	keys, err := s.o.Store.TakeForPair(ctx, take)
	if !errors.Is(err, qkd.ErrInsufficientKey) {
		return s.delivered(keys, err)
	}
	produce := func() error { return s.relayGroup(ctx, caller, all, dests, req) }
	if len(dests) == 1 && dests[0].link != nil {
		produce = func() error { return s.reserve(ctx, dests[0].link, caller, all, req) }
	}
	return s.delivered(s.makeAndTake(ctx, produce, caller, all, req))
}

// multicastPlan checks the slaves of a multicast request and groups them
// by node. all is the sorted list of every slave.
func (s *Service) multicastPlan(caller, slave qkd.SAEID, more []qkd.SAEID) (all []qkd.SAEID, dests []destination, err error) {
	all = append([]qkd.SAEID{slave}, more...)
	slices.Sort(all)
	if len(slices.Compact(slices.Clone(all))) != len(all) {
		return nil, nil, &qkd.RequestError{Msg: "additional_slave_SAE_IDs shall name distinct SAEs other than the slave SAE"}
	}
	byNode := map[qkd.NodeID]int{}
	for _, sl := range all {
		l, node, err := s.route(caller, sl)
		if err != nil && !errors.Is(err, errRemote) {
			return nil, nil, err
		}
		i, ok := byNode[node]
		if !ok {
			i = len(dests)
			byNode[node] = i
			dests = append(dests, destination{node: node, link: l})
		}
		dests[i].slaves = append(dests[i].slaves, sl)
	}
	if (len(dests) > 1 || dests[0].link == nil) && (s.o.Relayer == nil || s.o.Router == nil) {
		return nil, nil, qkd.ErrNoRoute
	}
	slices.SortFunc(dests, func(a, b destination) int { return cmpNode(a.node, b.node) })
	return all, dests, nil
}

func cmpNode(a, b qkd.NodeID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// relayGroup relays one batch of keys to every destination node: directly
// to neighbours, along the key stream of (master, its slaves) to the
// others (set up through the router on first use).
func (s *Service) relayGroup(ctx context.Context, master qkd.SAEID, all []qkd.SAEID, dests []destination, req KeyRequest) error {
	legs := make([]Leg, len(dests))
	for i, d := range dests {
		legs[i] = Leg{Dest: d.node, Slaves: d.slaves}
		if d.link != nil {
			continue
		}
		stream, err := s.o.Router.Stream(ctx, master, d.slaves)
		if err != nil {
			s.log.Warn("no key stream for a multicast destination", "master", string(master), "node", string(d.node), "err", err)
			return fmt.Errorf("%w: %w", qkd.ErrNoRoute, err)
		}
		legs[i].Stream = stream
	}
	if _, err := s.o.Relayer.RelayGroup(ctx, legs, master, all, req.Size, req.Number, s.o.Limits.TTL); err != nil {
		if errors.Is(err, qkd.ErrInsufficientKey) || errors.Is(err, qkd.ErrPeerUnavailable) || errors.Is(err, qkd.ErrNoRoute) {
			return err
		}
		s.log.Warn("multicast key relay failed", "master", string(master), "destinations", len(legs), "err", err)
		return fmt.Errorf("%w: %w", qkd.ErrPeerUnavailable, err)
	}
	return nil
}
