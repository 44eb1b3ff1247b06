package streams

import (
	"context"
	"fmt"
	"math"
	"mime"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// OpenConnect implements etsi004.Service (OPEN_CONNECT).
func (s *Service) OpenConnect(ctx context.Context, caller qkd.SAEID, req etsi004.OpenRequest) (etsi004.OpenResponse, error) {
	src, err := etsi004.AppID(req.Source)
	if err != nil {
		return etsi004.OpenResponse{}, err
	}
	dst, err := etsi004.AppID(req.Destination)
	if err != nil {
		return etsi004.OpenResponse{}, err
	}
	switch {
	case src != caller:
		return etsi004.OpenResponse{}, ErrNotSource
	case !s.local(caller):
		return etsi004.OpenResponse{}, fmt.Errorf("%w: application not attached to this node", etsi004.ErrBadRequest)
	case dst == src:
		return etsi004.OpenResponse{}, fmt.Errorf("%w: destination is the source", etsi004.ErrBadRequest)
	}
	res := etsi004.OpenResponse{QoS: req.QoS, KeyStreamID: req.KeyStreamID}
	if !req.KeyStreamID.IsNull() && s.isRemote(req.KeyStreamID) {
		if r, joined := s.join(ctx, caller, dst, req.KeyStreamID); joined {
			return r, nil
		}
	}
	l := s.route(dst)
	if l == nil && s.remoteOK(dst) && !s.neighbour(dst) {
		return s.openRemote(ctx, caller, dst, req)
	}
	if l == nil {
		res.Status = etsi004.StatusNoQKDConnection
		return res, nil
	}
	if !req.KeyStreamID.IsNull() {
		if r, joined := s.join(ctx, caller, dst, req.KeyStreamID); joined {
			return r, nil
		}
	}
	q, ok := s.checkQoS(req.QoS, l)
	if !ok {
		res.Status, res.QoS = etsi004.StatusQoSNotMet, q
		return res, nil
	}
	if req.KeyStreamID.IsNull() {
		if res.KeyStreamID, err = etsi004.NewKSID(); err != nil {
			return etsi004.OpenResponse{}, err
		}
	}
	return s.create(ctx, record{KSID: res.KeyStreamID, Source: caller, Dest: dst, Link: l.ID(), QoS: q,
		SrcState: kmsproto.StreamOpen, Changed: s.o.Now()}, !req.KeyStreamID.IsNull())
}

// route returns the link to the neighbour node of dst; nil if dst is not
// attached to a neighbour that is up.
func (s *Service) route(dst qkd.SAEID) Link {
	node, known := s.o.SAEs[dst]
	l := s.byPeer[node]
	switch {
	case !known || node == s.o.Node:
		return nil
	case l == nil:
		return nil
	case l.PeerInactive():
		return nil
	}
	return l
}

// neighbour reports whether dst is attached to a neighbour node.
func (s *Service) neighbour(dst qkd.SAEID) bool {
	node, known := s.o.SAEs[dst]
	return known && s.byPeer[node] != nil
}

// join opens the caller's end of an existing stream: its destination
// application joins the peer's stream (status 0, the stream's QoS).
// joined is false if no stream has the ID.
func (s *Service) join(ctx context.Context, caller, dst qkd.SAEID, k etsi004.KSID) (etsi004.OpenResponse, bool) {
	s.mu.Lock()
	st := s.streams[k]
	if st == nil {
		s.mu.Unlock()
		return etsi004.OpenResponse{}, false
	}
	r := &st.rec
	res := etsi004.OpenResponse{Status: etsi004.StatusKSIDInUse, QoS: r.QoS, KeyStreamID: k}
	pair := r.Source == caller && r.Dest == dst || r.Source == dst && r.Dest == caller
	if !pair || r.localState(s.local) != "" {
		s.mu.Unlock()
		return res, true
	}
	r.setLocal(s.local, kmsproto.StreamOpen)
	s.changedLocked(st)
	s.mu.Unlock()
	s.persist()
	s.announce(ctx, st, 0)
	s.mu.Lock()
	res.QoS = r.QoS
	if !r.connected() {
		res.Status = etsi004.StatusPeerNotConnected
	} else {
		res.Status = etsi004.StatusSuccessful
	}
	s.mu.Unlock()
	return res, true
}

// create registers a new stream opened by its source application and
// tells the peer. A predefined ID (wait) blocks until the peer opens it
// or the timeout passes (6, the stream is dropped).
func (s *Service) create(ctx context.Context, r record, wait bool) (etsi004.OpenResponse, error) {
	st := newStream(r)
	s.mu.Lock()
	if old := s.streams[r.KSID]; old != nil { // opened or learnt meanwhile
		s.mu.Unlock()
		if r.Registered {
			s.releaseRoute(r.Route)
		}
		// The peer's first chunk may have arrived since this call found
		// the ID unknown: then this is the peer's stream, to join.
		if res, joined := s.join(ctx, r.Source, r.Dest, r.KSID); joined {
			return res, nil
		}
		return etsi004.OpenResponse{Status: etsi004.StatusKSIDInUse, QoS: s.qosOf(old), KeyStreamID: r.KSID}, nil
	}
	s.streams[r.KSID] = st
	s.mu.Unlock()
	s.persist()
	if r.Remote {
		s.goBackground(func(ctx context.Context) { s.pump(ctx, st) })
	}
	res := etsi004.OpenResponse{Status: etsi004.StatusPeerNotConnected, QoS: r.QoS, KeyStreamID: r.KSID}
	if peer, _ := s.announce(ctx, st, 0); peer == kmsproto.StreamInUse {
		s.drop(r.KSID)
		res.Status = etsi004.StatusKSIDInUse
		return res, nil
	}
	if !wait {
		if s.isConnected(st) {
			res.Status = etsi004.StatusSuccessful
		}
		return res, nil
	}
	if !s.waitConnected(ctx, st, ms(r.QoS.Timeout)) {
		s.log.Info("peer application did not open the key stream in time", "ksid", r.KSID.String())
		s.closeLocal(st)
		res.Status = etsi004.StatusTimeout
		return res, nil
	}
	res.Status = etsi004.StatusSuccessful
	res.QoS = s.qosOf(st)
	return res, nil
}

func (s *Service) qosOf(st *stream) etsi004.QoS {
	s.mu.Lock()
	defer s.mu.Unlock()
	return st.rec.QoS
}

func (s *Service) isConnected(st *stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return st.rec.connected()
}

// waitConnected waits until both ends of st are open, at most d.
func (s *Service) waitConnected(ctx context.Context, st *stream, d time.Duration) bool {
	timeout := s.o.After(d)
	for {
		s.mu.Lock()
		conn, ch := st.rec.connected(), st.changed
		s.mu.Unlock()
		if conn {
			return true
		}
		select {
		case <-ch:
		case <-timeout:
			return s.isConnected(st)
		case <-ctx.Done():
			return false
		}
	}
}

// ms converts a 004 millisecond field.
func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

// checkQoS fills in the defaults and checks what the node can give; if
// not ok, q is the counter-proposal.
func (s *Service) checkQoS(q etsi004.QoS, l Link) (etsi004.QoS, bool) {
	def := func(v *uint32, d uint32) {
		if *v == 0 {
			*v = d
		}
	}
	def(&q.KeyChunkSize, DefaultChunkSize)
	def(&q.Timeout, DefaultTimeout)
	def(&q.TTL, DefaultTTL)
	ok := true
	if q.KeyChunkSize > uint32(s.o.MaxChunkBytes) {
		q.KeyChunkSize, ok = uint32(s.o.MaxChunkBytes), false
	}
	if !mimeOK(q.MetadataMimetype) {
		q.MetadataMimetype, ok = etsi004.MimeJSON, false
	}
	if q.MaxBps != 0 && q.MinBps > q.MaxBps {
		q.MinBps, ok = q.MaxBps, false
	}
	if s.o.LinkRate != nil && l != nil {
		if rate, known := s.o.LinkRate(l.ID()); known && float64(q.MinBps) > rate {
			q.MinBps, ok = uint32(math.Floor(rate)), false
			if q.MaxBps > q.MinBps {
				q.MaxBps = q.MinBps
			}
		}
	}
	return q, ok
}

// mimeOK: no metadata, or application/json (with parameters, any case).
func mimeOK(m string) bool {
	if m == "" {
		return true
	}
	t, _, err := mime.ParseMediaType(m)
	return err == nil && strings.EqualFold(t, etsi004.MimeJSON)
}
