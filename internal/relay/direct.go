package relay

import (
	"context"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/qkd"
)

// direct is the destination's side of a one-hop relay step without a key
// stream (Stream ""), the neighbour leg of a multicast (RelayGroup): the
// sender is the source, this node the destination, and every slave named
// is attached here. No forwarding entry is needed, and none is consulted:
// the step arrived over a link whose ITS MAC authenticated the neighbour,
// and a neighbour can already make keys for any of its SAEs with the
// slaves of this node by make_keys_external. A direct step gives it no
// more than that; only the pad differs (link material here too, but the
// key bytes come from the source's RNG, so the same keys can go to other
// destinations as well).
func (e *Engine) direct(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq, pieces []keystore.Piece) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	expires := time.UnixMilli(req.Expires)
	if len(req.Path) != 1 || req.Source != in.Peer() || req.Dest != e.o.Node || req.Master == "" || len(req.Slaves) == 0 ||
		slices.ContainsFunc(req.Slaves, func(s qkd.SAEID) bool { return !e.o.LocalSAE(s) }) {
		e.log.Warn("direct relay step refused: not a one-hop step to SAEs of this node", "from", string(in.Peer()))
		return e.burn(ctx, in, req, pieces, expires, kmsproto.NoRoute, "a step without a key stream must go from its source to SAEs of this node")
	}
	return e.deliver(ctx, in, req, pieces, expires, nil, "")
}

func hasDupIDs(ids []qkd.KeyID) bool {
	seen := make(map[qkd.KeyID]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			return true
		}
		seen[id] = true
	}
	return false
}
