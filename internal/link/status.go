package link

import (
	"context"

	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// statusDue reports whether get_status should be sent after the first
// (which each end sends when it starts, Start): not while a
// verified message from the peer (a reply, or a request of its own: a
// key batch, a slot refill) came within the last StatusInterval. An
// active link thus spends no MAC slot and no round trip on polling; a
// peer that falls silent, or was zeroised (it can tag nothing any
// more), is asked within two intervals.
func (l *Link) statusDue() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peer.LastSeen.IsZero() || l.peer.Err != "" || l.o.Now().Sub(l.peer.LastSeen) >= l.o.StatusInterval
}

func (l *Link) pollStatus(ctx context.Context) error {
	var st kmsproto.Status
	if err := l.call(ctx, kmsproto.GetStatus, struct{}{}, &st); err != nil {
		return err
	}
	l.notePeerStatus(st)
	return nil
}

// status is this end's view of the link, for get_status.
func (l *Link) status(ctx context.Context) kmsproto.Status {
	st := kmsproto.Status{Node: l.o.Self, State: kmsproto.StateActive, Time: l.o.Now().UnixMilli()}
	l.mu.Lock()
	if l.inactive {
		st.State = kmsproto.StateInactive
	}
	l.mu.Unlock()
	if s, err := l.o.Store.Stats(ctx, l.o.ID); err == nil {
		st.ConfirmedBytes = s.ConfirmedBytes[0] + s.ConfirmedBytes[1]
		st.ReadyKeys = int64(s.KeysReady)
		st.Slots = int64(s.Slots[l.o.Self])
	}
	return st
}

func (l *Link) notePeerStatus(st kmsproto.Status) {
	l.mu.Lock()
	prev := l.peer.State
	l.peer = PeerStatus{State: st.State, LastSeen: l.o.Now()}
	l.mu.Unlock()
	if prev != st.State {
		l.log.Info("peer status", "state", st.State)
		poke(l.wakeOutbox) // an inactive peer ends pending allocations
	}
}

func (l *Link) notePeerAlive() {
	l.mu.Lock()
	l.peer.LastSeen = l.o.Now()
	l.peer.Err = ""
	if l.peer.State == "" {
		l.peer.State = kmsproto.StateActive
	}
	l.mu.Unlock()
}

func (l *Link) notePeerError(err error) {
	l.mu.Lock()
	first := l.peer.Err == ""
	l.peer.Err = err.Error()
	l.mu.Unlock()
	if first {
		l.log.Warn("peer KMS unreachable", "err", err)
	}
}

// PrepareAnnounce seals a post_status telling the peer this node's state,
// without sending it: a zeroisation prepares it, destroys the key store
// (and with it every MAC key), then sends. The returned function sends it
// once.
func (l *Link) PrepareAnnounce(ctx context.Context, state string) (func(context.Context) error, error) {
	st := l.status(ctx)
	st.State = state
	p, err := l.prepare(ctx, kmsproto.PostStatus, st)
	if err != nil {
		return nil, err
	}
	if err := p.sync(ctx); err != nil { // now: the store is destroyed before the send
		p.wipe()
		return nil, err
	}
	return func(ctx context.Context) error {
		defer p.wipe()
		_, err := p.attempt(ctx, nil)
		return err
	}, nil
}

// PeerInactive reports that the peer announced it is inactive (zeroised
// or stopped): keys shared with it can no longer be delivered at its end.
func (l *Link) PeerInactive() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peer.State == kmsproto.StateInactive
}

// SetInactive stops the link from sending and accepting anything but
// get_status (after zeroisation).
func (l *Link) SetInactive() {
	l.mu.Lock()
	l.inactive = true
	l.mu.Unlock()
	l.own.wipe()
	l.peerSlots.wipe()
	l.retained.wipe()
	l.replies.clear()
}

// DeleteAtPeer asks the peer to delete keys (delete_keys), e.g. expired ones.
func (l *Link) DeleteAtPeer(ctx context.Context, ids []qkd.KeyID, reason string) (int, error) {
	var resp kmsproto.DeleteKeysResp
	if err := l.call(ctx, kmsproto.DeleteKeys, kmsproto.DeleteKeysReq{IDs: ids, Reason: reason}, &resp); err != nil {
		return 0, err
	}
	return int(resp.Deleted), nil
}

func (l *Link) handleDelete(ctx context.Context, req kmsproto.DeleteKeysReq) handlerResult {
	if len(req.IDs) > 1<<16 {
		return refuse(kmsproto.BadRequest, "too many keys")
	}
	n, err := l.o.Store.DeleteKeys(ctx, req.IDs)
	if err != nil {
		return refuse(kmsproto.Internal, "store error")
	}
	return ok(kmsproto.DeleteKeysResp{Deleted: uint32(n)})
}
