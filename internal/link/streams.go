package link

import (
	"context"
	"sync/atomic"

	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// ETSI GS QKD 004 key streams over the link (new_app): a
// new_app that carries a kmsproto.StreamInfo is one end of a key stream
// telling the other end its state. Either end may send it (the stream's
// source or destination application is attached to the receiver); the
// link checks the shape and hands it to the node's key stream service,
// whose answer goes back in a kmsproto.NewAppResp.

// StreamHandler is the node's key stream service as the link sees it
// (streams.Service).
type StreamHandler interface {
	// PeerStream takes the peer's view of a key stream and returns this
	// end's. An error is answered with code Internal.
	PeerStream(ctx context.Context, link qkd.LinkID, req kmsproto.NewAppReq) (kmsproto.NewAppResp, error)
}

// streamHandler holds the registered StreamHandler (nil: none).
type streamHandler struct{ h atomic.Pointer[StreamHandler] }

// SetStreamHandler registers the service that handles the peer's 004 key
// stream announcements; until then they are refused with code Retry.
func (l *Link) SetStreamHandler(h StreamHandler) { l.streams.h.Store(&h) }

// AnnounceStream sends this end's view of a 004 key stream to the peer
// (new_app with req.Etsi004 set) and returns the peer's.
func (l *Link) AnnounceStream(ctx context.Context, req kmsproto.NewAppReq) (kmsproto.NewAppResp, error) {
	var resp kmsproto.NewAppResp
	err := l.call(ctx, kmsproto.NewApp, req, &resp)
	return resp, err
}

// streamOK checks the shape of a key stream announcement: one source and
// one destination application, exactly one of them attached here.
func (l *Link) streamOK(req kmsproto.NewAppReq) bool {
	if req.App == "" || len(req.App) > 256 || req.Stream != req.App || req.Master == "" || len(req.Slaves) != 1 ||
		req.Slaves[0] == req.Master || req.SizeBits == 0 || req.SizeBits%8 != 0 || req.SizeBits > 1<<20 ||
		req.QoS == nil || len(req.Etsi004.Mimetype) > 255 {
		return false
	}
	return l.o.LocalSAE(req.Master) != l.o.LocalSAE(req.Slaves[0])
}

func (l *Link) handleStreamApp(ctx context.Context, req kmsproto.NewAppReq) handlerResult {
	if !l.streamOK(req) {
		return refuse(kmsproto.BadRequest, "bad key stream")
	}
	hp := l.streams.h.Load()
	if hp == nil {
		return refuse(kmsproto.Retry, "no key stream service here (yet)")
	}
	resp, err := (*hp).PeerStream(ctx, l.o.ID, req)
	if err != nil {
		l.log.Error("key stream announcement failed", "stream", req.App, "err", err)
		return refuse(kmsproto.Internal, "key stream service error")
	}
	return ok(resp)
}
