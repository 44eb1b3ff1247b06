package streams

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

// metaMax is the longest metadata GET_KEY returns: the size asked of a
// buffer, whatever the chunk's age (and with a hybrid suite name of up to
// maxSuite bytes).
var metaMax = uint32(len(metadata(math.MaxUint32, math.MaxUint8, strings.Repeat("x", maxSuite))))

const maxSuite = 96

// metadata is GET_KEY's JSON metadata: the chunk's age in ms, the hops
// it was relayed over, and for post-quantum hybrid chunks their suite
// (KEM+signature+combiner).
func metadata(ageMS uint32, hops uint8, suite string) []byte {
	if suite == "" || len(suite) > maxSuite {
		return fmt.Appendf(nil, `{"age":%d,"hops":%d}`, ageMS, hops)
	}
	return fmt.Appendf(nil, `{"age":%d,"hops":%d,"hybrid":%q}`, ageMS, hops, suite)
}

// GetKey implements etsi004.Service (GET_KEY): chunk req.Index of the
// stream, the same bytes at both ends, each end at most once.
func (s *Service) GetKey(ctx context.Context, caller qkd.SAEID, req etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error) {
	res := etsi004.GetKeyResponse{Index: req.Index}
	s.mu.Lock()
	st := s.streams[req.KeyStreamID]
	var r record
	if st != nil {
		r = st.rec
	}
	s.mu.Unlock()
	switch {
	case st == nil || !s.local(caller) || r.localApp(s.local) != caller || r.localState(s.local) != kmsproto.StreamOpen:
		s.log.Debug("GET_KEY of an unknown stream, or not the caller's, or closed here", "ksid", req.KeyStreamID.String(), "known", st != nil)
		res.Status = etsi004.StatusPeerNotConnectedGK // unknown stream, as the reference does
		return res, nil
	case r.peerState(s.local) == "" && r.Remote && r.localIsSource(s.local):
		s.pollNow(ctx, st) // the pump may learn it meanwhile: read it again in any case
		s.mu.Lock()
		r = st.rec
		s.mu.Unlock()
	}
	switch {
	case r.peerState(s.local) == "": // a peer that closed leaves its chunks to this end
		s.log.Debug("GET_KEY before the peer application opened the key stream", "ksid", r.KSID.String(), "remote", r.Remote)
		res.Status = etsi004.StatusPeerNotConnectedGK
		return res, nil
	}
	wantMeta := r.QoS.MetadataMimetype != "" && req.MetadataSize > 0
	if wantMeta && req.MetadataSize < metaMax {
		res.Status, res.MetadataSize = etsi004.StatusMetadataTooSmall, metaMax
		return res, nil
	}
	timeout := ms(r.QoS.Timeout)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case st.getSem <- struct{}{}:
	default:
		if !acquire(ctx, st.getSem, s.o.After(timeout)) {
			res.Status = etsi004.StatusTimeout
			return res, ctx.Err()
		}
	}
	defer func() { <-st.getSem }()
	start := s.o.Now()
	if wait := st.pace.wait(start); wait > 0 {
		if wait > timeout {
			res.Status = etsi004.StatusTimeout
			return res, nil
		}
		select {
		case <-s.o.After(wait):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	key, status, err := s.take(tctx, st, &r, caller, req.Index)
	if err != nil || status != etsi004.StatusSuccessful {
		res.Status = status
		return res, err
	}
	now := s.o.Now()
	st.pace.delivered(now, r.QoS)
	res.Key = key.Data.Expose()
	if wantMeta {
		age := max(now.Sub(key.Created).Milliseconds(), 0)
		suite, hops := "", 0 // a neighbour's chunk crossed no trusted node
		if r.Remote && s.o.Hybrid != nil {
			suite = s.o.Hybrid(r.Source, r.Dest)
		}
		if r.Remote && s.o.Hops != nil {
			hops = min(s.o.Hops(r.Route), math.MaxUint8)
		}
		res.Metadata = metadata(uint32(min(age, math.MaxUint32)), uint8(hops), suite)
		res.MetadataSize = uint32(len(res.Metadata))
	}
	s.o.OnDelivered("etsi004", 1)
	if r.localIsSource(s.local) {
		s.prefetch(st, req.Index+uint32(s.window(r.QoS)/2))
	}
	return res, nil
}

// take delivers chunk i to caller, producing it first (source) or asking
// the source for it (destination) if it is not here.
func (s *Service) take(ctx context.Context, st *stream, r *record, caller qkd.SAEID, i uint32) (keystore.Key, etsi004.Status, error) {
	for attempt := 0; ; attempt++ {
		keys, err := s.o.Store.TakeByID(ctx, keystore.TakeRequest{IDs: []qkd.KeyID{chunkID(r.KSID, i)},
			Master: r.Source, Caller: caller, Now: s.o.Now()})
		switch {
		case err == nil:
			return keys[0], etsi004.StatusSuccessful, nil
		case ctx.Err() != nil:
			return keystore.Key{}, etsi004.StatusTimeout, nil // no answer within the stream's Timeout
		case !errors.Is(err, qkd.ErrNotFound):
			return keystore.Key{}, 0, fmt.Errorf("streams: take chunk: %w", err)
		case attempt > 0:
			return keystore.Key{}, etsi004.StatusInsufficientKey, nil
		}
		switch {
		case r.localIsSource(s.local):
			err = s.ensure(ctx, st, i)
		case r.Remote:
			return s.awaitChunk(ctx, st, r, caller, i)
		default:
			_, err = s.announce(ctx, st, i+1)
		}
		switch {
		case errors.Is(err, qkd.ErrInsufficientKey), errors.Is(err, qkd.ErrNoRoute), errors.Is(err, relay.ErrUnknownStream):
			return keystore.Key{}, etsi004.StatusInsufficientKey, nil
		case err != nil && ctx.Err() != nil, errors.Is(err, qkd.ErrPeerUnavailable):
			return keystore.Key{}, etsi004.StatusTimeout, nil
		case err != nil:
			return keystore.Key{}, 0, err
		}
	}
}

// window is the number of chunks produced at once for q.
func (s *Service) window(q etsi004.QoS) int {
	w := s.o.Window
	if q.MaxBps > 0 {
		w = min(w, max(4, int(uint64(q.MaxBps)*4/(8*uint64(q.KeyChunkSize)))))
	}
	return w
}

// prefetch produces the chunks from i on in the background, if needed.
func (s *Service) prefetch(st *stream, i uint32) {
	s.mu.Lock()
	have := st.rec.Made.has(i)
	s.mu.Unlock()
	if have {
		return
	}
	s.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.ensure(ctx, st, i); err != nil {
			s.log.Debug("chunks not produced ahead", "ksid", st.rec.KSID.String(), "err", err)
		}
	})
}

// awaitChunk is take at the destination node of a remote stream: chunk i
// is not here; if it was never relayed, the source is asked for it (Want,
// read by the source's next poll) and the chunk awaited until ctx ends.
func (s *Service) awaitChunk(ctx context.Context, st *stream, r *record, caller qkd.SAEID, i uint32) (keystore.Key, etsi004.Status, error) {
	for {
		s.mu.Lock()
		made, ch := st.rec.Made.has(i), st.changed
		if !made && st.rec.Want < i+1 {
			st.rec.Want = i + 1
		}
		s.mu.Unlock()
		if made {
			keys, err := s.o.Store.TakeByID(ctx, keystore.TakeRequest{IDs: []qkd.KeyID{chunkID(r.KSID, i)},
				Master: r.Source, Caller: caller, Now: s.o.Now()})
			switch {
			case err == nil:
				return keys[0], etsi004.StatusSuccessful, nil
			case errors.Is(err, qkd.ErrNotFound):
				return keystore.Key{}, etsi004.StatusInsufficientKey, nil
			case ctx.Err() != nil:
				return keystore.Key{}, etsi004.StatusTimeout, nil
			}
			return keystore.Key{}, 0, fmt.Errorf("streams: take chunk: %w", err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return keystore.Key{}, etsi004.StatusTimeout, nil
		}
	}
}

// ensure makes chunk i exist (source node only): it reserves a window of
// chunks from i on with the neighbour, or relays them to a remote
// destination.
func (s *Service) ensure(ctx context.Context, st *stream, i uint32) error {
	s.mu.Lock()
	w := s.window(st.rec.QoS)
	s.mu.Unlock()
	return s.produce(ctx, st, i, w, true)
}

// produce makes at most n chunks from i on that do not exist yet (at
// least chunk i). The chunks are recorded as made before the reservation
// or relay, so a chunk ID is never used twice; one that found no material
// is undone. connected: only once both ends are open.
func (s *Service) produce(ctx context.Context, st *stream, i uint32, n int, connected bool) error {
	st.prodMu.Lock()
	defer st.prodMu.Unlock()
	s.mu.Lock()
	r := &st.rec
	if r.Made.has(i) {
		s.mu.Unlock()
		return nil
	}
	if connected && !r.connected() || !r.localIsSource(s.local) {
		s.mu.Unlock()
		return qkd.ErrInsufficientKey
	}
	sp := r.Made.gap(i, uint32(n))
	r.Made = r.Made.add(sp)
	k, master, slave, q, l, remote := r.KSID, r.Source, r.Dest, r.QoS, s.byID[r.Link], r.Remote
	s.mu.Unlock()
	s.persist()
	var err error
	switch {
	case remote && s.o.Relay != nil:
		err = s.relayChunks(ctx, st, sp)
	case remote, l == nil:
		return qkd.ErrNoRoute
	default:
		ids := spans{sp}.ids(k)
		err = l.ReserveIDs(ctx, k.String(), master, []qkd.SAEID{slave}, int(q.KeyChunkSize)*8, ids, time.Duration(q.TTL)*time.Second)
	}
	// A relay that was refused (no material, no route) left nothing at
	// either end; one without an answer may still be delivered.
	if errors.Is(err, qkd.ErrInsufficientKey) || remote && err != nil && !errors.Is(err, qkd.ErrPeerUnavailable) {
		s.mu.Lock()
		if r.localIsSource(s.local) { // not if this end yielded the source role meanwhile (yield)
			r.Made = r.Made.remove(sp)
		}
		s.mu.Unlock()
		if errors.Is(err, relay.ErrKeysExist) {
			s.abandonClaim(st) // the peer relays this stream's chunks itself
		}
		s.persist()
		s.log.Warn("key stream cannot keep up: no key material", "ksid", k.String())
		s.o.OnUnderrun(k, "no key material")
	}
	return err
}

// acquire takes sem, waiting until deadline or the end of ctx.
func acquire(ctx context.Context, sem chan struct{}, deadline <-chan time.Time) bool {
	select {
	case sem <- struct{}{}:
		return true
	case <-deadline:
	case <-ctx.Done():
	}
	return false
}
