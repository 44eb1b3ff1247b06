package streams

import (
	"context"
	"errors"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/relay"
)

// Key streams between applications on nodes that are not neighbours
// (ETSI GS QKD 004 clause 6.2, network case). The source node gets a route for the
// pair from Options.Router (the SDN controller configures it on every
// node of the route) and relays the chunks hop by hop with
// Options.Relay.RelayIDs under their derived IDs; each step carries the
// stream (kmsproto.RelayStream), so the destination node learns it on
// delivery (Service.Relayed, the relay engine's OnStream) and answers
// with the state of its end and the chunks its application asked for
// (kmsproto.StreamInfo.Want). The source relays the first chunk at
// OPEN_CONNECT and then learns the destination's state by polling: it
// replays its last step (relay.Engine.Poll: every hop answers a retry from
// its record, nothing is consumed), every pollMin at first, backing off to
// pollMax while nothing changes.

// Router gives the key stream (relay route) of a remote pair (kms.Router).
type Router interface {
	Stream(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID) (string, error)
}

// Relayer relays chunks to a remote node (*relay.Engine).
type Relayer interface {
	RelayIDs(ctx context.Context, stream string, sizeBits int, ids []qkd.KeyID, ttl time.Duration, info *kmsproto.RelayStream) (relay.Receipt, *kmsproto.StreamInfo, error)
	Poll(ctx context.Context, r relay.Receipt) (*kmsproto.StreamInfo, error)
}

// Poll intervals of a source node (see above).
const (
	pollMin = 50 * time.Millisecond
	pollMax = time.Second
	// pollClosed: after the source's application closed.
	pollClosed = 10 * time.Second
)

// remoteOK reports whether dst is attached to a node this node can reach
// by relay (known, not this node, remote pairs configured).
func (s *Service) remoteOK(dst qkd.SAEID) bool {
	node, known := s.o.SAEs[dst]
	return known && node != s.o.Node && s.o.Router != nil && s.o.Relay != nil
}

// isRemote reports whether k is a known remote stream.
func (s *Service) isRemote(k etsi004.KSID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[k]
	return st != nil && st.rec.Remote
}

// openRemote is OPEN_CONNECT for a pair on nodes that are not neighbours.
// A predefined ID not known here: the application with the lower SAE ID
// is the source (its node relays); the other waits, as destination, for
// the stream to arrive, at most Timeout (6).
func (s *Service) openRemote(ctx context.Context, caller, dst qkd.SAEID, req etsi004.OpenRequest) (etsi004.OpenResponse, error) {
	res := etsi004.OpenResponse{QoS: req.QoS, KeyStreamID: req.KeyStreamID}
	if !req.KeyStreamID.IsNull() {
		if r, joined := s.join(ctx, caller, dst, req.KeyStreamID); joined {
			return r, nil
		}
	}
	q, ok := s.checkQoS(req.QoS, nil)
	if !ok {
		res.Status, res.QoS = etsi004.StatusQoSNotMet, q
		return res, nil
	}
	if !req.KeyStreamID.IsNull() && dst < caller {
		return s.awaitRemote(ctx, record{KSID: req.KeyStreamID, Source: dst, Dest: caller, Remote: true, QoS: q,
			DstState: kmsproto.StreamOpen, Changed: s.o.Now(), Synced: true})
	}
	if !req.KeyStreamID.IsNull() {
		// This end would relay (its SAE ID is the lower one), unless the
		// ID came from the peer's NULL OPEN_CONNECT and its first chunk
		// is still on the way: give it joinGrace to arrive.
		if r, joined := s.awaitLearnt(ctx, caller, dst, req.KeyStreamID, min(s.o.JoinGrace, ms(q.Timeout))); joined {
			return r, nil
		}
	}
	route, registered, counter, err := s.routeRemote(ctx, caller, dst, q)
	if err != nil {
		s.log.Info("no route for a key stream to a remote application", "destination", string(dst), "err", err)
		res.Status = etsi004.StatusNoQKDConnection
		return res, nil
	}
	if counter != nil { // the route cannot promise min_bps
		s.releaseRoute(route)
		res.Status, res.QoS = etsi004.StatusQoSNotMet, *counter
		return res, nil
	}
	if req.KeyStreamID.IsNull() {
		if res.KeyStreamID, err = etsi004.NewKSID(); err != nil {
			if registered {
				s.releaseRoute(route)
			}
			return etsi004.OpenResponse{}, err
		}
	}
	return s.create(ctx, record{KSID: res.KeyStreamID, Source: caller, Dest: dst, Remote: true, Route: route, QoS: q,
		SrcState: kmsproto.StreamOpen, Changed: s.o.Now(), Synced: true, Registered: registered}, !req.KeyStreamID.IsNull())
}

// awaitLearnt waits up to d (Options.JoinGrace) for the peer's first
// chunk of stream k and joins it then.
func (s *Service) awaitLearnt(ctx context.Context, caller, dst qkd.SAEID, k etsi004.KSID, d time.Duration) (etsi004.OpenResponse, bool) {
	if d < 0 {
		return etsi004.OpenResponse{}, false
	}
	deadline := s.o.After(d)
	for {
		s.mu.Lock()
		learnt := s.learnt // before join: a stream learnt after it wakes us
		s.mu.Unlock()
		if r, joined := s.join(ctx, caller, dst, k); joined {
			return r, true
		}
		select {
		case <-learnt:
		case <-deadline:
			return etsi004.OpenResponse{}, false
		case <-ctx.Done():
			return etsi004.OpenResponse{}, false
		}
	}
}

// awaitRemote waits, as destination, for the source node to relay the
// predefined stream r.
func (s *Service) awaitRemote(ctx context.Context, r record) (etsi004.OpenResponse, error) {
	st := newStream(r)
	s.mu.Lock()
	if old := s.streams[r.KSID]; old != nil {
		s.mu.Unlock()
		return etsi004.OpenResponse{Status: etsi004.StatusKSIDInUse, QoS: s.qosOf(old), KeyStreamID: r.KSID}, nil
	}
	s.streams[r.KSID] = st
	s.mu.Unlock()
	s.persist()
	if !s.waitConnected(ctx, st, ms(r.QoS.Timeout)) {
		s.log.Info("source application did not open the key stream in time", "ksid", r.KSID.String())
		s.closeLocal(st)
		return etsi004.OpenResponse{Status: etsi004.StatusTimeout, QoS: r.QoS, KeyStreamID: r.KSID}, nil
	}
	return etsi004.OpenResponse{Status: etsi004.StatusSuccessful, QoS: s.qosOf(st), KeyStreamID: r.KSID}, nil
}

// stateRank orders the states of an end: they only move forward.
func stateRank(st string) int {
	switch st {
	case kmsproto.StreamOpen:
		return 1
	case kmsproto.StreamClosed:
		return 2
	}
	return 0
}

// Relayed is the relay engine's OnStream at the destination node: a step
// of n chunks of a remote stream was delivered here (or repeated). It
// learns the stream and answers with this end's state.
func (s *Service) Relayed(_ context.Context, route string, info kmsproto.RelayStream, n int) *kmsproto.StreamInfo {
	k, err := etsi004.ParseKSID(info.KSID)
	if err != nil || !s.local(info.Dest) || s.local(info.Source) {
		return &kmsproto.StreamInfo{State: kmsproto.StreamInUse}
	}
	sp := span{info.First, uint32(min(uint64(info.First)+uint64(n), 1<<32-1))}
	s.mu.Lock()
	st := s.streams[k]
	if st == nil {
		r := record{KSID: k, Source: info.Source, Dest: info.Dest, Remote: true, Route: route, QoS: fromWire(info.QoS, info.Mimetype),
			SrcState: info.State, Made: spans{sp}, Changed: s.o.Now(), Synced: true}
		st = newStream(r)
		s.streams[k] = st
		close(s.learnt) // wakes awaitLearnt
		s.learnt = make(chan struct{})
		s.mu.Unlock()
		s.persist()
		s.log.Info("key stream relayed from a remote node", "ksid", k.String(), "source", string(info.Source), "destination", string(info.Dest))
		return &kmsproto.StreamInfo{}
	}
	r := &st.rec
	if s.yields(r, info) {
		return s.yield(st, route, info, sp)
	}
	if r.Remote && r.localIsSource(s.local) && r.Source == info.Dest && r.Dest == info.Source {
		// The peer's node claimed this end's stream (see yields, from
		// the other side): its chunks are not this stream's; drop them.
		s.mu.Unlock()
		s.dropChunks(k, spans{sp}, info.Source, info.Dest)
		return &kmsproto.StreamInfo{State: kmsproto.StreamPeerSource}
	}
	if !r.Remote || r.Source != info.Source || r.Dest != info.Dest || r.localIsSource(s.local) {
		s.mu.Unlock()
		return &kmsproto.StreamInfo{State: kmsproto.StreamInUse}
	}
	changed := false
	if !r.Made.has(sp.From) || !r.Made.has(sp.To-1) {
		r.Made, changed = r.Made.add(sp), true
	}
	if stateRank(info.State) > stateRank(r.SrcState) {
		if r.SrcState == "" && info.QoS != nil { // a predefined ID this end opened first: the source's QoS wins
			r.QoS = fromWire(info.QoS, info.Mimetype)
		}
		r.SrcState, changed = info.State, true
	}
	ans := &kmsproto.StreamInfo{State: r.DstState, Want: r.Want}
	if changed {
		st.notify()
	}
	closed := r.bothClosed()
	s.mu.Unlock()
	if changed {
		s.persist()
		s.after(st, false, closed, false)
	}
	return ans
}

// yields reports whether this end, which claimed the source role of a
// predefined KSID it did not know (its application's SAE ID is the lower
// one), must give it up to the peer whose step just arrived: the peer's
// application opened with a NULL ID and got this KSID (only then does
// the higher SAE ID relay: with a predefined ID it waits as
// destination), and its application passed the ID to ours before its
// first chunk arrived. Only while this end's claim has delivered nothing
// (no step recorded): the peer's node refused its chunks anyway, their IDs
// being the peer's. Called with s.mu held.
func (s *Service) yields(r *record, info kmsproto.RelayStream) bool {
	return r.Remote && r.localIsSource(s.local) && r.Source == info.Dest && r.Dest == info.Source && r.Step == "" &&
		r.Source < r.Dest && r.DstState == ""
}

// yield turns this end's claimed stream into the destination's end of the
// peer's stream (see yields); the pump of the claim stops, the claim's
// route is released, and an OPEN_CONNECT waiting on the claim sees the
// peer connected. Called with s.mu held; unlocks it.
func (s *Service) yield(st *stream, peerRoute string, info kmsproto.RelayStream, sp span) *kmsproto.StreamInfo {
	r := &st.rec
	route, registered, mine := r.Route, r.Registered, r.SrcState
	*r = record{KSID: r.KSID, Source: info.Source, Dest: info.Dest, Remote: true, Route: peerRoute, QoS: fromWire(info.QoS, info.Mimetype),
		SrcState: info.State, DstState: mine, Made: spans{sp}, Changed: s.o.Now(), Synced: true}
	ans := &kmsproto.StreamInfo{State: r.DstState, Want: r.Want}
	st.notify()
	connected, closed := r.connected(), r.bothClosed()
	s.mu.Unlock()
	if registered {
		s.releaseRoute(route)
	}
	s.persist()
	s.log.Info("key stream created by the peer application: this end joins it as destination", "ksid", r.KSID.String(),
		"source", string(info.Source), "destination", string(info.Dest))
	s.after(st, connected, closed, false)
	return ans
}

// abandonClaim gives up this end's claim of the source role (see yields)
// when the peer's node turns out to be the stream's source: it turned
// this end's first chunk away, holding chunks of that ID already
// (relay.ErrKeysExist), or it took the chunk and answered
// StreamPeerSource. The peer's application created the stream; this end
// drops the chunks it made and waits for the peer's as destination. Only
// a claim (this end's application has the lower SAE ID, and the peer's
// end was never seen); never a stream this end's application created.
func (s *Service) abandonClaim(st *stream) {
	s.mu.Lock()
	r := &st.rec
	if !r.Remote || !r.localIsSource(s.local) || !(r.Source < r.Dest) || r.DstState != "" || s.streams[r.KSID] != st {
		s.mu.Unlock()
		return
	}
	k, made, src, dst := r.KSID, r.Made, r.Source, r.Dest
	route, registered, mine := r.Route, r.Registered, r.SrcState
	*r = record{KSID: k, Source: dst, Dest: src, Remote: true, QoS: r.QoS, DstState: mine, Changed: s.o.Now(), Synced: true}
	st.notify()
	s.mu.Unlock()
	if registered {
		s.releaseRoute(route)
	}
	s.dropChunks(k, made, src, src)
	s.persist()
	s.log.Info("key stream claimed by the peer's node as well: this end waits for its chunks as destination", "ksid", k.String())
}

// dropChunks deletes this node's copies of chunks sp of stream k whose
// master is master, taken as caller (so that a chunk of the same ID with
// another master, this end's own, is never touched).
func (s *Service) dropChunks(k etsi004.KSID, sp spans, master, caller qkd.SAEID) {
	for _, id := range sp.ids(k) {
		keys, err := s.o.Store.TakeByID(s.ctx, keystore.TakeRequest{IDs: []qkd.KeyID{id}, Master: master, Caller: caller, Now: s.o.Now()})
		for i := range keys {
			keys[i].Data.Wipe()
		}
		if err != nil && !errors.Is(err, qkd.ErrNotFound) && !errors.Is(err, qkd.ErrUnauthorized) {
			s.log.Warn("chunks of a wrongly claimed key stream not dropped", "ksid", k.String(), "err", err)
		}
	}
}

// relayInfo is the stream information a step of r carries.
func relayInfo(r *record, first uint32) *kmsproto.RelayStream {
	return &kmsproto.RelayStream{KSID: r.KSID.String(), Source: r.Source, Dest: r.Dest, QoS: wireQoS(r.QoS),
		Mimetype: r.QoS.MetadataMimetype, State: r.SrcState, First: first}
}

// relayChunks relays the chunks sp of a remote stream (source node; the
// caller recorded them as made) and applies the destination's answer.
func (s *Service) relayChunks(ctx context.Context, st *stream, sp span) error {
	s.mu.Lock()
	r := &st.rec
	info := relayInfo(r, sp.From)
	k, route, q := r.KSID, r.Route, r.QoS
	s.mu.Unlock()
	rc, peer, err := s.o.Relay.RelayIDs(ctx, route, int(q.KeyChunkSize)*8, spans{sp}.ids(k), time.Duration(q.TTL)*time.Second, info)
	if err != nil {
		return err
	}
	s.mu.Lock()
	r.Step, r.StepLink = rc.Step, rc.Link
	s.mu.Unlock()
	s.applyRemote(st, peer)
	return nil
}

// applyRemote applies the destination's answer at the source node; it
// reports whether anything changed.
func (s *Service) applyRemote(st *stream, peer *kmsproto.StreamInfo) bool {
	if peer == nil {
		return false
	}
	if peer.State == kmsproto.StreamPeerSource {
		s.abandonClaim(st)
		return true
	}
	s.mu.Lock()
	r := &st.rec
	changed := false
	if stateRank(peer.State) > stateRank(r.DstState) {
		r.DstState, changed = peer.State, true
	}
	if peer.Want > r.Want {
		r.Want, changed = peer.Want, true
	}
	if changed {
		st.notify()
	}
	connected, closed := r.connected(), r.bothClosed()
	s.mu.Unlock()
	if changed {
		s.persist()
		s.after(st, connected, closed, true)
	}
	return changed
}

// pump runs at the source node of a remote stream until the stream is
// gone: it relays the first chunk, then polls the destination and relays
// the chunks its application asks for.
func (s *Service) pump(ctx context.Context, st *stream) {
	wait := pollMin
	for {
		s.mu.Lock()
		r := &st.rec
		gone := s.streams[r.KSID] != st || !r.localIsSource(s.local) // gone, or yielded to the peer
		rc := relay.Receipt{Step: r.Step, Link: r.StepLink}
		want, made, localClosed := r.Want, r.Made, r.SrcState == kmsproto.StreamClosed
		connected := r.connected()
		s.mu.Unlock()
		if gone {
			return
		}
		var err error
		changed := false
		switch {
		case rc.Step == "" && !localClosed: // the destination learns the stream with its first chunk
			err = s.produce(ctx, st, 0, 1, false)
			changed = err == nil
		case connected && want > 0 && !made.has(want-1):
			err = s.ensure(ctx, st, want-1)
			changed = err == nil
		default:
			var peer *kmsproto.StreamInfo
			if peer, err = s.o.Relay.Poll(ctx, rc); errors.Is(err, qkd.ErrNotFound) && !localClosed {
				// The step's record expired with its keys: relay the next chunk.
				s.mu.Lock()
				next := uint32(0)
				if n := len(st.rec.Made); n > 0 {
					next = st.rec.Made[n-1].To
				}
				s.mu.Unlock()
				err = s.produce(ctx, st, next, 1, false)
			}
			changed = s.applyRemote(st, peer)
		}
		if err != nil {
			s.log.Debug("remote key stream: relay or poll failed", "ksid", r.KSID.String(), "err", err)
		}
		switch {
		case changed:
			wait = pollMin
		case localClosed:
			wait = pollClosed
		default:
			wait = min(2*wait, pollMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// pollNow asks the destination of a remote stream for its state at once
// (GET_KEY at the source before the destination was seen opening); it
// reports whether this call changed anything.
func (s *Service) pollNow(ctx context.Context, st *stream) bool {
	// A relay in flight (the first one) sets the step to poll: wait for it.
	st.prodMu.Lock()
	s.mu.Lock()
	rc := relay.Receipt{Step: st.rec.Step, Link: st.rec.StepLink}
	s.mu.Unlock()
	st.prodMu.Unlock()
	if rc.Step == "" {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	peer, err := s.o.Relay.Poll(pctx, rc)
	if err != nil {
		s.log.Debug("remote key stream: poll failed", "ksid", st.rec.KSID.String(), "err", err)
		return false
	}
	return s.applyRemote(st, peer)
}
