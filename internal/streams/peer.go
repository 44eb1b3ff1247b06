package streams

import (
	"context"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// Synchronisation of the two ends (ETSI GS QKD 004 clause 6.2): each end tells the
// other its state with new_app (kmsproto.StreamInfo) whenever it changes,
// and learns the other's from the reply; Sync repeats what the peer has
// not acknowledged.

// announceTimeout bounds one new_app round trip.
const announceTimeout = 2 * time.Second

// changedLocked marks a change of the local end; call with s.mu held.
func (s *Service) changedLocked(st *stream) {
	st.rec.Synced = false
	st.rec.Changed = s.o.Now()
	st.ver++
	st.notify()
}

// announce tells the peer this end's state (want > 0: asks the source
// for chunks below want) and applies its answer. It returns the peer's
// state ("" if unknown).
func (s *Service) announce(ctx context.Context, st *stream, want uint32) (string, error) {
	s.mu.Lock()
	r := st.rec
	ver := st.ver
	s.mu.Unlock()
	l := s.byID[r.Link]
	if l == nil {
		return "", nil
	}
	q := r.QoS
	req := kmsproto.NewAppReq{App: r.KSID.String(), Stream: r.KSID.String(), Master: r.Source, Slaves: []qkd.SAEID{r.Dest},
		SizeBits: q.KeyChunkSize * 8, QoS: wireQoS(q),
		Etsi004: &kmsproto.StreamInfo{State: r.localState(s.local), Mimetype: q.MetadataMimetype, Want: want}}
	actx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	resp, err := l.AnnounceStream(actx, req)
	if err != nil {
		s.log.Debug("key stream state not delivered to the peer; retrying later", "ksid", r.KSID.String(), "err", err)
		return "", err
	}
	if resp.State == kmsproto.StreamInUse {
		return resp.State, nil
	}
	s.applyPeer(st, resp.Master, resp.QoS, resp.Mimetype, resp.State, ver)
	return resp.State, nil
}

// applyPeer applies the peer's view of st: its source (a crossing open
// of a predefined ID is resolved in favour of the lower SAE ID, at both
// ends), and the state of its end. ver is the local version the peer
// acknowledged (0: none).
func (s *Service) applyPeer(st *stream, master qkd.SAEID, q *kmsproto.QoS, mimetype, peerState string, ver uint64) {
	s.mu.Lock()
	r := &st.rec
	if master != "" && master == r.Dest {
		r.Source, r.Dest = r.Dest, r.Source
		r.SrcState, r.DstState = r.DstState, r.SrcState
		if q != nil {
			r.QoS = fromWire(q, mimetype)
		}
	}
	r.setPeer(s.local, peerState)
	if ver != 0 && ver == st.ver {
		r.Synced = true
	}
	st.notify()
	connected, closed, source := r.connected(), r.bothClosed(), r.localIsSource(s.local)
	s.mu.Unlock()
	s.persist()
	s.after(st, connected, closed, source)
}

// after starts what a state change calls for: production when both ends
// are open, clean-up when both are closed.
func (s *Service) after(st *stream, connected, closed, source bool) {
	switch {
	case closed:
		s.goBackground(func(ctx context.Context) { s.finish(ctx, st) })
	case connected && source:
		s.prefetch(st, 0)
	}
}

// PeerStream implements link.StreamHandler: the peer's view of a stream.
func (s *Service) PeerStream(ctx context.Context, linkID qkd.LinkID, req kmsproto.NewAppReq) (kmsproto.NewAppResp, error) {
	k, err := etsi004.ParseKSID(req.App)
	if err != nil {
		return kmsproto.NewAppResp{}, err
	}
	info, master, slave := req.Etsi004, req.Master, req.Slaves[0]
	s.mu.Lock()
	st := s.streams[k]
	if st == nil {
		s.mu.Unlock()
		if info.State == kmsproto.StreamClosed {
			return kmsproto.NewAppResp{State: kmsproto.StreamClosed}, nil
		}
		return s.learn(k, linkID, req), nil
	}
	r := &st.rec
	pair := r.Source == master && r.Dest == slave || r.Source == slave && r.Dest == master
	if !pair || r.Link != linkID {
		s.mu.Unlock()
		return kmsproto.NewAppResp{State: kmsproto.StreamInUse}, nil
	}
	resolved := master
	if r.Source == slave && slave < master {
		resolved = slave // the peer flips when it reads the answer
	}
	s.mu.Unlock()
	s.applyPeer(st, resolved, req.QoS, info.Mimetype, info.State, 0)
	s.mu.Lock()
	resp := kmsproto.NewAppResp{State: r.localState(s.local), Master: r.Source, QoS: wireQoS(r.QoS), Mimetype: r.QoS.MetadataMimetype}
	produce := info.Want > 0 && r.connected() && r.localIsSource(s.local)
	s.mu.Unlock()
	if produce {
		pctx, cancel := context.WithTimeout(ctx, 2*announceTimeout)
		defer cancel()
		if err := s.ensure(pctx, st, info.Want-1); err != nil {
			s.log.Debug("chunks asked for by the destination not produced", "ksid", k.String(), "err", err)
		}
	}
	return resp, nil
}

// learn records a stream the peer opened first.
func (s *Service) learn(k etsi004.KSID, linkID qkd.LinkID, req kmsproto.NewAppReq) kmsproto.NewAppResp {
	r := record{KSID: k, Source: req.Master, Dest: req.Slaves[0], Link: linkID,
		QoS: fromWire(req.QoS, req.Etsi004.Mimetype), Changed: s.o.Now(), Synced: true}
	r.setPeer(s.local, req.Etsi004.State)
	s.mu.Lock()
	if s.streams[k] == nil {
		s.streams[k] = newStream(r)
	}
	s.mu.Unlock()
	s.persist()
	s.log.Info("key stream announced by the peer", "ksid", k.String(), "source", string(r.Source), "destination", string(r.Dest))
	return kmsproto.NewAppResp{Master: r.Source, QoS: req.QoS, Mimetype: req.Etsi004.Mimetype}
}

// Sync repeats the states the peers have not acknowledged.
func (s *Service) Sync(ctx context.Context) {
	s.mu.Lock()
	var todo []*stream
	for _, st := range s.streams {
		if !st.rec.Synced {
			todo = append(todo, st)
		}
	}
	s.mu.Unlock()
	for _, st := range todo {
		if state, _ := s.announce(ctx, st, 0); state == kmsproto.StreamInUse {
			s.log.Warn("the peer holds the key stream ID for another pair; dropped", "ksid", st.rec.KSID.String())
			s.drop(st.rec.KSID)
		}
	}
}

// drop forgets a stream without telling anyone.
func (s *Service) drop(k etsi004.KSID) {
	s.mu.Lock()
	delete(s.streams, k)
	s.mu.Unlock()
	s.persist()
}

func wireQoS(q etsi004.QoS) *kmsproto.QoS {
	return &kmsproto.QoS{KeyChunkSize: q.KeyChunkSize, MaxBps: q.MaxBps, MinBps: q.MinBps, Jitter: q.Jitter,
		Priority: q.Priority, Timeout: q.Timeout, TTL: q.TTL}
}

func fromWire(q *kmsproto.QoS, mimetype string) etsi004.QoS {
	if q == nil {
		q = &kmsproto.QoS{}
	}
	return etsi004.QoS{KeyChunkSize: q.KeyChunkSize, MaxBps: q.MaxBps, MinBps: q.MinBps, Jitter: q.Jitter,
		Priority: q.Priority, Timeout: q.Timeout, TTL: q.TTL, MetadataMimetype: mimetype}
}
