package streams

import (
	"context"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// Close implements etsi004.Service (CLOSE): the caller's end closes. The
// stream's keys are deleted once the peer has closed too, or when their
// TTL ends (ETSI GS QKD 004 CLOSE).
func (s *Service) Close(ctx context.Context, caller qkd.SAEID, req etsi004.CloseRequest) (etsi004.CloseResponse, error) {
	s.mu.Lock()
	st := s.streams[req.KeyStreamID]
	ok := st != nil && s.local(caller) && st.rec.localApp(s.local) == caller && st.rec.localState(s.local) == kmsproto.StreamOpen
	s.mu.Unlock()
	if !ok {
		return etsi004.CloseResponse{Status: etsi004.StatusPeerNotConnectedGK}, nil
	}
	s.closeLocal(st)
	s.announce(ctx, st, 0)
	return etsi004.CloseResponse{Status: etsi004.StatusSuccessful}, nil
}

// closeLocal closes this node's end of st.
func (s *Service) closeLocal(st *stream) {
	s.mu.Lock()
	st.rec.setLocal(s.local, kmsproto.StreamClosed)
	s.changedLocked(st)
	closed, source := st.rec.bothClosed(), st.rec.localIsSource(s.local)
	s.mu.Unlock()
	s.persist()
	s.releaseIfDone(st)
	s.after(st, false, closed, source)
}

// finish forgets a stream closed at both ends (or whose TTL passed); the
// source's node deletes its remaining keys here and at the peer.
func (s *Service) finish(ctx context.Context, st *stream) {
	s.mu.Lock()
	r := st.rec
	if s.streams[r.KSID] != st {
		s.mu.Unlock()
		return
	}
	delete(s.streams, r.KSID)
	s.mu.Unlock()
	s.persist()
	if !r.localIsSource(s.local) {
		return
	}
	s.release(st)
	ids := r.Made.ids(r.KSID)
	here, err := s.o.Store.DeleteKeys(ctx, ids)
	if err != nil {
		s.log.Error("key stream keys not deleted", "ksid", r.KSID.String(), "err", err)
	}
	there := 0
	if l := s.byID[r.Link]; l != nil && len(ids) > 0 {
		dctx, cancel := context.WithTimeout(ctx, announceTimeout)
		defer cancel()
		for b := 0; b < len(ids); b += 1 << 15 {
			n, err := l.DeleteAtPeer(dctx, ids[b:min(b+1<<15, len(ids))], "key stream closed")
			if err != nil {
				s.log.Info("key stream keys not deleted at the peer; they go at their TTL", "ksid", r.KSID.String(), "err", err)
				break
			}
			there += n
		}
	}
	s.log.Info("key stream finished", "ksid", r.KSID.String(), "keys_deleted_here", here, "keys_deleted_there", there)
}

// Sweep finishes the streams closed at this end whose TTL has passed
// since (the peer never closed, or could not be told).
func (s *Service) Sweep(ctx context.Context) {
	now := s.o.Now()
	s.mu.Lock()
	var done []*stream
	for _, st := range s.streams {
		r := &st.rec
		if r.localState(s.local) == kmsproto.StreamClosed && !now.Before(r.Changed.Add(time.Duration(r.QoS.TTL)*time.Second)) {
			done = append(done, st)
		}
	}
	s.mu.Unlock()
	for _, st := range done {
		s.finish(ctx, st)
	}
}

// Stream describes a stream for status pages and tests.
type Stream struct {
	KSID               etsi004.KSID
	Source, Dest       qkd.SAEID
	QoS                etsi004.QoS
	SrcState, DstState string
}

// Streams lists the streams this node knows.
func (s *Service) Streams() []Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Stream, 0, len(s.streams))
	for _, st := range s.streams {
		r := st.rec
		out = append(out, Stream{KSID: r.KSID, Source: r.Source, Dest: r.Dest, QoS: r.QoS, SrcState: r.SrcState, DstState: r.DstState})
	}
	return out
}
