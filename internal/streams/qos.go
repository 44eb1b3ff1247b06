package streams

import (
	"context"
	"math"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// QoSRouter is a Router that registers a remote pair's key stream with
// the stream's QoS (the SDN controller admits min_bps: it promises that
// rate on every link of the route, or counter-proposes the rate it can),
// and releases it when no ETSI 004 stream uses it any more (the node's
// sdnRouter: QUICKS link/registration with qos_request etsi_004, DELETE
// link/{key_stream_id}). Without it (a plain Router) remote streams get a
// best-effort route and are never released here.
type QoSRouter interface {
	Router
	// Stream004 registers the key stream of master → slave for q and
	// returns it with the rate its route promises: at least q.MinBps when
	// admitted, less when the controller counter-proposes. The stream is
	// registered in both cases; release it if it is not used.
	Stream004(ctx context.Context, master, slave qkd.SAEID, q etsi004.QoS) (stream string, offeredBps float64, err error)
	// Release004 releases a key stream got from Stream004 that no ETSI 004
	// stream of this node uses any more. The router keeps it if other
	// users (an ETSI 014 pair) still hold it.
	Release004(ctx context.Context, stream string) error
}

// releaseTimeout bounds one release at the controller.
const releaseTimeout = 10 * time.Second

// routeRemote gets the key stream of a remote pair: with its QoS from a
// QoSRouter (counter is the counter-proposal, nil if admitted), else
// from the Router. registered: Release004 releases the stream.
func (s *Service) routeRemote(ctx context.Context, src, dst qkd.SAEID, q etsi004.QoS) (route string, registered bool, counter *etsi004.QoS, err error) {
	qr, ok := s.o.Router.(QoSRouter)
	if !ok {
		route, err = s.o.Router.Stream(ctx, src, []qkd.SAEID{dst})
		return route, false, nil, err
	}
	route, offered, err := qr.Stream004(ctx, src, dst, q)
	if err != nil {
		return "", false, nil, err
	}
	if q.MinBps > 0 && offered < float64(q.MinBps) {
		c := q
		c.MinBps = uint32(max(math.Floor(offered), 0))
		s.log.Info("remote key stream: the SDN controller counter-proposes a lower min_bps", "source", string(src),
			"destination", string(dst), "min_bps", q.MinBps, "offered_bps", c.MinBps)
		return route, true, &c, nil
	}
	return route, true, nil, nil
}

// release gives the key stream of st back to the SDN controller (source
// node, stream registered with Stream004), unless another stream of this
// node uses it. At most once per stream.
func (s *Service) release(st *stream) {
	s.mu.Lock()
	r := &st.rec
	if !r.Registered {
		s.mu.Unlock()
		return
	}
	r.Registered = false
	route := r.Route
	s.mu.Unlock()
	s.persist()
	s.releaseRoute(route)
}

// releaseRoute releases route in the background unless a stream of this
// node that registered it still uses it.
func (s *Service) releaseRoute(route string) {
	qr, ok := s.o.Router.(QoSRouter)
	if !ok || route == "" {
		return
	}
	s.mu.Lock()
	for _, o := range s.streams {
		if o.rec.Registered && o.rec.Route == route {
			s.mu.Unlock()
			s.log.Debug("key stream kept at the SDN controller: another ETSI 004 stream uses it", "stream", route)
			return
		}
	}
	s.mu.Unlock()
	s.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
		defer cancel()
		if err := qr.Release004(ctx, route); err != nil {
			s.log.Info("key stream not released at the SDN controller", "stream", route, "err", err)
			return
		}
		s.log.Info("key stream released at the SDN controller", "stream", route)
	})
}

// releaseIfDone releases the key stream of a remote stream whose source
// end (this node) closed while the destination is not open: nobody needs
// the route any more. While the destination is open the source keeps
// polling it over the route; finish releases it.
func (s *Service) releaseIfDone(st *stream) {
	s.mu.Lock()
	r := &st.rec
	done := r.Remote && r.Registered && r.localIsSource(s.local) && r.SrcState == kmsproto.StreamClosed && r.DstState != kmsproto.StreamOpen
	s.mu.Unlock()
	if done {
		s.release(st)
	}
}
