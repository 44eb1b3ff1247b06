package kms

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// Announcing application pairs to the slave's node (new_app,
// key_stream_closed). The first time a pair (local master, slaves on a
// neighbour) is served, the service tells the neighbour with new_app, once
// per pair and link: the neighbour records it, or answers that a slave is
// not attached to it, which makes the request fail with 400. A peer that
// cannot be reached is asked again on the next request. ClosePair ends a
// pair at both ends.

// appLink is what announcing needs of a link (link.Link).
type appLink interface {
	NewApp(ctx context.Context, req kmsproto.NewAppReq) error
	CloseApp(ctx context.Context, req kmsproto.KeyStreamClosedReq) (here, there int, err error)
}

// announceTimeout bounds a new_app round trip: the request waits for it.
const announceTimeout = time.Second

// appCache remembers the pairs announced per link; the zero value is
// ready to use.
type appCache struct {
	mu   sync.Mutex
	sent map[appKey]bool // guarded by mu
}

// appKey names a pair on a link without allocating for one slave.
type appKey struct {
	link   qkd.LinkID
	master qkd.SAEID
	slaves string
}

func keyOf(l qkd.LinkID, master qkd.SAEID, slaves []qkd.SAEID) appKey {
	k := appKey{link: l, master: master}
	if len(slaves) == 1 {
		k.slaves = string(slaves[0])
	} else {
		k.slaves = appID("", slaves)
	}
	return k
}

func (c *appCache) has(k appKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent[k]
}

func (c *appCache) set(k appKey, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sent == nil {
		c.sent = map[appKey]bool{}
	}
	if on {
		c.sent[k] = true
	} else {
		delete(c.sent, k)
	}
}

// appID names a pair in new_app and key_stream_closed.
func appID(master qkd.SAEID, slaves []qkd.SAEID) string {
	s := make([]string, len(slaves))
	for i, sl := range slaves {
		s[i] = string(sl)
	}
	return string(master) + ">" + strings.Join(s, ",")
}

// refusalCode is the code of a peer's authenticated refusal
// (link.RefusedError); ok is false for any other error.
func refusalCode(err error) (code kmsproto.Code, ok bool) {
	var r interface{ RefusalCode() kmsproto.Code }
	if errors.As(err, &r) {
		return r.RefusalCode(), true
	}
	return 0, false
}

// announce sends new_app for (master, slaves) over l unless it was sent.
func (s *Service) announce(ctx context.Context, l Link, master qkd.SAEID, slaves []qkd.SAEID, sizeBits int) error {
	al, ok := l.(appLink)
	key := keyOf(l.ID(), master, slaves)
	if !ok || s.apps.has(key) {
		return nil
	}
	app := appID(master, slaves)
	actx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	err := al.NewApp(actx, kmsproto.NewAppReq{App: app, Master: master, Slaves: slaves, SizeBits: uint32(sizeBits)})
	code, refused := refusalCode(err)
	switch {
	case err == nil:
		s.apps.set(key, true)
	case refused && code == kmsproto.UnknownSAE:
		s.log.Warn("the neighbour does not know the slave SAE", "link", string(l.ID()), "app", app)
		return &qkd.RequestError{Msg: "slave SAE ID is not attached to its KME"}
	case refused:
		// The peer answered (e.g. an older version): do not ask again.
		s.log.Info("new_app refused by the neighbour", "link", string(l.ID()), "app", app, "err", err)
		s.apps.set(key, true)
	default:
		s.log.Debug("new_app not delivered; asking again next time", "link", string(l.ID()), "err", err)
	}
	return nil
}

// ClosePair closes the pair (caller as master, slave) on its neighbour
// link: the pair's Ready keys are deleted here and at the slave's node
// (key_stream_closed), and the pair is announced again if served later.
// It returns the keys deleted here and there.
func (s *Service) ClosePair(ctx context.Context, caller, slave qkd.SAEID) (here, there int, err error) {
	if err := s.checkActive(); err != nil {
		return 0, 0, err
	}
	l, _, err := s.route(caller, slave)
	if err != nil {
		return 0, 0, err
	}
	al, ok := l.(appLink)
	if !ok {
		return 0, 0, qkd.ErrNoRoute
	}
	slaves := []qkd.SAEID{slave}
	s.apps.set(keyOf(l.ID(), caller, slaves), false)
	return al.CloseApp(ctx, kmsproto.KeyStreamClosedReq{App: appID(caller, slaves), Master: caller, Slaves: slaves, Reason: "closed"})
}
