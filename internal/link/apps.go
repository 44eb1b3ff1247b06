package link

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// Applications announced over the link (new_app,
// key_stream_closed). The master's node announces a pair or key stream
// whose slaves are attached to the peer; the peer records it (so it knows
// the pair before keys arrive) and, when told it is closed, deletes the
// pair's Ready keys on this link and forgets it. Both are idempotent by
// the app ID.

// maxApps bounds the applications one peer may announce on a link.
const maxApps = 1 << 16

// appTable holds the applications the peer announced; the zero value is
// ready to use.
type appTable struct {
	mu   sync.Mutex
	apps map[string]kmsproto.NewAppReq // guarded by mu
}

// put records a; false if the ID names another pair, or the table is full.
func (t *appTable) put(a kmsproto.NewAppReq) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.apps == nil {
		t.apps = map[string]kmsproto.NewAppReq{}
	}
	old, had := t.apps[a.App]
	switch {
	case had && (old.Master != a.Master || !slices.Equal(old.Slaves, a.Slaves)):
		return false
	case !had && len(t.apps) >= maxApps:
		return false
	}
	t.apps[a.App] = a
	return true
}

func (t *appTable) forget(app string) {
	t.mu.Lock()
	delete(t.apps, app)
	t.mu.Unlock()
}

// Apps returns the applications the peer announced on this link.
func (l *Link) Apps() []kmsproto.NewAppReq {
	l.apps.mu.Lock()
	defer l.apps.mu.Unlock()
	out := make([]kmsproto.NewAppReq, 0, len(l.apps.apps))
	for _, a := range l.apps.apps {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b kmsproto.NewAppReq) int { return cmpString(a.App, b.App) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// NewApp tells the peer of an application pair or key stream whose
// master is attached here and whose slaves are attached to the peer
// (new_app). A refusal is a *RefusedError: code UnknownSAE if a slave is
// not attached to the peer.
func (l *Link) NewApp(ctx context.Context, req kmsproto.NewAppReq) error {
	return l.call(ctx, kmsproto.NewApp, req, nil)
}

// CloseApp closes an application pair on this link: it deletes the pair's
// Ready keys here, then tells the peer (key_stream_closed), which deletes
// its own. The pair's master must be attached to this node. It returns the number of keys deleted here and at the peer. A
// failed notice can be repeated.
func (l *Link) CloseApp(ctx context.Context, req kmsproto.KeyStreamClosedReq) (here, there int, err error) {
	if !l.o.LocalSAE(req.Master) {
		return 0, 0, fmt.Errorf("link: closing %q: its master is not attached to this node", req.App)
	}
	if here, err = l.deletePair(ctx, req.Master, req.Slaves); err != nil {
		return 0, 0, err
	}
	var resp kmsproto.KeyStreamClosedResp
	if err := l.call(ctx, kmsproto.KeyStreamClosed, req, &resp); err != nil {
		return here, 0, err
	}
	return here, int(resp.Deleted), nil
}

// deletePair deletes the Ready keys of (master, slaves) on this link.
func (l *Link) deletePair(ctx context.Context, master qkd.SAEID, slaves []qkd.SAEID) (int, error) {
	keys, err := l.o.Store.ListKeys(ctx, keystore.KeyFilter{Link: l.o.ID, Master: master, Slaves: slaves, Now: l.o.Now()})
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	ids := make([]qkd.KeyID, len(keys))
	for i := range keys {
		ids[i] = keys[i].ID
	}
	return l.o.Store.DeleteKeys(ctx, ids)
}

// appOK checks the pair of an app message from the peer: its master is
// not attached here (it is the peer's).
func (l *Link) appOK(app string, master qkd.SAEID, slaves []qkd.SAEID) bool {
	return app != "" && len(app) <= 256 && master != "" && !l.o.LocalSAE(master) &&
		len(slaves) > 0 && len(slaves) <= 64
}

func (l *Link) handleNewApp(req kmsproto.NewAppReq) handlerResult {
	if !l.appOK(req.App, req.Master, req.Slaves) || req.SizeBits%8 != 0 || req.SizeBits > 1<<20 || len(req.Stream) > 256 {
		return refuse(kmsproto.BadRequest, "bad application")
	}
	for _, s := range req.Slaves {
		if !l.o.LocalSAE(s) {
			return refuse(kmsproto.UnknownSAE, "slave SAE is not attached to this node")
		}
	}
	if !l.apps.put(req) {
		return refuse(kmsproto.BadRequest, "application ID in use for another pair")
	}
	l.log.Info("application announced by the peer", "app", req.App, "master", string(req.Master))
	return ok(nil)
}

func (l *Link) handleStreamClosed(ctx context.Context, req kmsproto.KeyStreamClosedReq) handlerResult {
	if !l.appOK(req.App, req.Master, req.Slaves) {
		return refuse(kmsproto.BadRequest, "bad application")
	}
	n, err := l.deletePair(ctx, req.Master, req.Slaves)
	if err != nil {
		l.log.Error("key_stream_closed: deleting keys failed", "err", err)
		return refuse(kmsproto.Internal, "store error")
	}
	l.apps.forget(req.App)
	l.log.Info("application closed by the peer", "app", req.App, "keys_deleted", n)
	return ok(kmsproto.KeyStreamClosedResp{Deleted: uint32(n)})
}

// dispatchApps runs the split_key, merge_keys, new_app and
// key_stream_closed messages.
func (l *Link) dispatchApps(ctx context.Context, t kmsproto.Type, body []byte) handlerResult {
	switch t {
	case kmsproto.SplitKey:
		return decoded(body, func(r kmsproto.SplitKeyReq) handlerResult { return l.handleSplit(ctx, r) })
	case kmsproto.MergeKeys:
		return decoded(body, func(r kmsproto.MergeKeysReq) handlerResult { return l.handleMerge(ctx, r) })
	case kmsproto.NewApp:
		return decoded(body, func(r kmsproto.NewAppReq) handlerResult {
			if r.Etsi004 != nil {
				return l.handleStreamApp(ctx, r)
			}
			return l.handleNewApp(r)
		})
	case kmsproto.KeyStreamClosed:
		return decoded(body, func(r kmsproto.KeyStreamClosedReq) handlerResult { return l.handleStreamClosed(ctx, r) })
	}
	return refuse(kmsproto.BadRequest, "message type not supported on this link")
}

// decoded decodes a request body of type T and runs handle on it.
func decoded[T any](body []byte, handle func(T) handlerResult) handlerResult {
	var req T
	if err := kmsproto.Unmarshal(body, &req); err != nil {
		return refuse(kmsproto.BadRequest, "malformed body")
	}
	return handle(req)
}

// RefusalCode returns the peer's reply code, for callers that declare
// their own interface instead of importing link.
func (e *RefusedError) RefusalCode() kmsproto.Code { return e.Code }
