package link

import (
	"context"
	"errors"
	"fmt"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// Split and merge of reserved keys (split_key, merge_keys).
//
// The initiator applies the change to its store at once, in one
// transaction with an outbox entry (Store.ResizeKeys): the old keys are
// gone, the new ones Pending, never delivered. The outbox worker sends the
// message; the peer applies the same resize (its new keys Ready) and
// answers; on the authenticated OK the new keys become Ready here. So a
// crash at any point leaves at most a message to resend, and both ends
// end with the same keys. The peer's operation record (by the initiator's
// operation ID) makes a repeat answer OK without a second change. If the
// peer refuses for good (it does not hold the keys: expired, deleted), the
// pending new keys are deleted here too: the key is lost at both ends,
// never delivered at one only.

// maxResizeParts bounds the keys of one split and of one merge.
const maxResizeParts = 1 << 14

// Split splits the Ready key id of (master, slaves) on this link into
// parts keys of equal size (a whole number of bytes each), here and at the
// peer. It returns the new keys' IDs once both ends hold them (Ready here).
// On a timeout the outbox goes on: the keys become Ready later or are
// dropped at both ends.
func (l *Link) Split(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID, id qkd.KeyID, parts int) ([]qkd.KeyID, error) {
	if parts < 2 || parts > maxResizeParts {
		return nil, fmt.Errorf("link: cannot split a key into %d", parts)
	}
	ids, err := qkd.NewKeyIDs(l.o.Rand, parts)
	if err != nil {
		return nil, err
	}
	op := l.newID()
	req := kmsproto.SplitKeyReq{OpID: op, Master: master, Slaves: slaves, ID: id, NewIDs: ids}
	if err := l.resize(ctx, kmsproto.SplitKey, op, req, master, slaves, []qkd.KeyID{id}, ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// Merge merges the Ready keys ids of (master, slaves) on this link,
// concatenated in order, into one new key, here and at the peer, like
// Split.
func (l *Link) Merge(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID, ids []qkd.KeyID) (qkd.KeyID, error) {
	if len(ids) < 2 || len(ids) > maxResizeParts {
		return qkd.KeyID{}, fmt.Errorf("link: cannot merge %d keys", len(ids))
	}
	nw, err := qkd.NewKeyIDs(l.o.Rand, 1)
	if err != nil {
		return qkd.KeyID{}, err
	}
	op := l.newID()
	req := kmsproto.MergeKeysReq{OpID: op, Master: master, Slaves: slaves, IDs: ids, NewID: nw[0]}
	if err := l.resize(ctx, kmsproto.MergeKeys, op, req, master, slaves, ids, nw); err != nil {
		return qkd.KeyID{}, err
	}
	return nw[0], nil
}

// resize applies the local half of a split or merge with its outbox entry
// and waits for the peer.
func (l *Link) resize(ctx context.Context, t kmsproto.Type, op string, req any, master qkd.SAEID, slaves []qkd.SAEID, old, nw []qkd.KeyID) error {
	body, err := kmsproto.Marshal(req)
	if err != nil {
		return err
	}
	payload, err := kmsproto.Marshal(outboxEntry{Type: t, Body: body, IDs: nw})
	if err != nil {
		return err
	}
	r := keystore.Resize{ID: l.resizeID(l.o.Self, op), Link: l.o.ID, Master: master, Slaves: slaves, Old: old, New: nw,
		Outbox: &keystore.Outbox{ID: op, Link: l.o.ID, Payload: payload, Created: l.o.Now()}}
	return l.queueAndWait(ctx, op, 2*l.o.CallTimeout, string(t), func() error {
		return l.o.Store.ResizeKeys(ctx, r)
	})
}

// resizeID is the store's record of an operation op started by node by:
// unique per link and initiator.
func (l *Link) resizeID(by qkd.NodeID, op string) string {
	return string(l.o.ID) + "|" + string(by) + "|" + op
}

func (l *Link) handleSplit(ctx context.Context, req kmsproto.SplitKeyReq) handlerResult {
	if len(req.NewIDs) < 2 || len(req.NewIDs) > maxResizeParts {
		return refuse(kmsproto.BadRequest, "bad split")
	}
	return l.applyPeerResize(ctx, req.OpID, req.Master, req.Slaves, []qkd.KeyID{req.ID}, req.NewIDs)
}

func (l *Link) handleMerge(ctx context.Context, req kmsproto.MergeKeysReq) handlerResult {
	if len(req.IDs) < 2 || len(req.IDs) > maxResizeParts {
		return refuse(kmsproto.BadRequest, "bad merge")
	}
	return l.applyPeerResize(ctx, req.OpID, req.Master, req.Slaves, req.IDs, []qkd.KeyID{req.NewID})
}

// applyPeerResize (receiver) applies the peer's split or merge to this
// end's copies of the keys; the new keys are Ready at once.
func (l *Link) applyPeerResize(ctx context.Context, op string, master qkd.SAEID, slaves []qkd.SAEID, old, nw []qkd.KeyID) handlerResult {
	if op == "" || len(op) > 64 || master == "" || len(slaves) == 0 || l.o.LocalSAE(master) {
		return refuse(kmsproto.BadRequest, "bad resize")
	}
	err := l.o.Store.ResizeKeys(ctx, keystore.Resize{ID: l.resizeID(l.o.Peer, op), Link: l.o.ID, Master: master,
		Slaves: slaves, Old: old, New: nw, Ready: true})
	switch {
	case err == nil || errors.Is(err, keystore.ErrApplied):
		return ok(nil)
	case errors.Is(err, qkd.ErrNotFound):
		return refuse(kmsproto.BadRequest, "keys not held here")
	case errors.Is(err, keystore.ErrConflict):
		return refuse(kmsproto.Retry, "keys not ready here (yet)")
	case errors.Is(err, keystore.ErrBadAllocation):
		return refuse(kmsproto.BadRequest, "resize does not add up")
	}
	l.log.Error("resize from peer failed", "err", err)
	return refuse(kmsproto.Internal, "store error")
}
