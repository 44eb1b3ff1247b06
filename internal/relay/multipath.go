package relay

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Multipath relay (docs/relay-design.md "Multipath relay").
//
// A multipath key stream is registered once by its application pair (its
// Group ID is the key stream the pair's KMSes know) and forwarded along
// several routes, each an ordinary single-path forwarding entry with its
// own stream ID (Entry.Group, Path, Paths, Mode). Only the two end nodes
// see the group; intermediate nodes forward one path's steps as any other.
//
//   - MultipathSpread: each relay batch is divided over the paths in
//     proportion to their rates; every key travels one path whole. The
//     pair's rate approaches the max-flow between its nodes; each key is
//     seen by the nodes of its path, as with one route.
//   - MultipathSplit: every key is the XOR of one share per path (the
//     shares of all paths but the last are fresh random bytes, the last
//     is the key XOR them), so a node on one path alone learns nothing
//     about it. The receiving end stores the shares that arrive first as
//     rows no application receives, and the last share's step combines
//     them into the keys in one transaction. Each key costs its length on
//     every path: the pair's rate is that of the narrowest path, and
//     no scheme that keeps the key from every single node of two
//     node-disjoint routes can do better than max-flow minus the largest
//     path's share (the shares of one path must be independent of the key).

// Multipath modes (Entry.Mode).
const (
	MultipathSpread = "spread"
	MultipathSplit  = "split"
)

// member reports whether en is one path of a multipath stream.
func (en Entry) member() bool { return en.Group != "" }

// paths returns the paths of multipath stream group at this node as the
// end that sends: the source (back false) or the destination (back true),
// sorted by path index.
func (e *Engine) paths(group string, back bool) []Entry {
	e.mu.RLock()
	var out []Entry
	for _, en := range e.table {
		if en.Group != group {
			continue
		}
		if !back && en.Prev == "" && en.Source == e.o.Node || back && en.Next == "" && en.Dest == e.o.Node {
			out = append(out, en)
		}
	}
	e.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return a.Path - b.Path })
	return out
}

// groupEntry is the entry Lookup answers for a multipath stream at one of
// its ends: the pair and the ends, no hops.
func (e *Engine) groupEntry(group string) (Entry, bool) {
	ps := e.paths(group, false)
	if len(ps) == 0 {
		ps = e.paths(group, true)
	}
	if len(ps) == 0 {
		return Entry{}, false
	}
	p := ps[0]
	return Entry{Stream: group, Source: p.Source, Dest: p.Dest, Master: p.Master, Slaves: slices.Clone(p.Slaves),
		Group: group, Paths: p.Paths, Mode: p.Mode}, true
}

// onePath returns the entry that keys which must all take one path of
// stream leave this node along (ETSI 004 chunks, multicast legs): the
// stream's own entry, or the first path of a spread multipath stream.
// Keys split over paths are never such keys: a split stream has none.
func (e *Engine) onePath(stream string) (Entry, error) {
	if en, ok := e.entry(stream); ok && !en.member() {
		return en, nil
	}
	ps := e.paths(stream, false)
	switch {
	case len(ps) == 0:
		return Entry{}, fmt.Errorf("%w: %s", ErrUnknownStream, stream)
	case ps[0].Mode != MultipathSpread:
		return Entry{}, fmt.Errorf("%w: %s is split over paths; these keys take one", ErrUnknownStream, stream)
	}
	return ps[0], nil
}

// checkMember validates the multipath fields of an entry.
func checkMember(en Entry) error {
	switch {
	case !en.member():
		if en.Paths != 0 || en.Path != 0 || en.Mode != "" {
			return fmt.Errorf("%w: multipath fields without a group", ErrBadEntry)
		}
	case en.Group == en.Stream:
		return fmt.Errorf("%w: a path of a multipath stream needs its own stream ID", ErrBadEntry)
	case en.Paths < 2 || en.Paths > maxPaths || en.Path < 0 || en.Path >= en.Paths:
		return fmt.Errorf("%w: path %d of %d", ErrBadEntry, en.Path, en.Paths)
	case en.Mode != MultipathSpread && en.Mode != MultipathSplit:
		return fmt.Errorf("%w: multipath mode %q", ErrBadEntry, en.Mode)
	case !(en.Rate >= 0) || math.IsInf(en.Rate, 0):
		return fmt.Errorf("%w: path rate %v", ErrBadEntry, en.Rate)
	}
	return nil
}

// maxPaths bounds the paths of one multipath stream.
const maxPaths = 16

// relayPaths relays n keys of the multipath stream group from this end
// (the source, or with back the destination) over its paths.
func (e *Engine) relayPaths(ctx context.Context, group string, ps []Entry, sizeBits, n int, ttl time.Duration, back bool) ([]qkd.KeyID, error) {
	if ps[0].Mode == MultipathSplit {
		return e.relaySplit(ctx, group, ps, sizeBits, n, ttl, back)
	}
	return e.relaySpread(ctx, ps, sizeBits, n, ttl, back)
}

// legOf is the leg of one path of a multipath stream from this end.
func (e *Engine) legOf(p Entry, back bool) leg {
	if back {
		return leg{stream: p.Stream, source: p.Source, dest: p.Dest, slaves: p.Slaves, next: e.byPeer[p.Prev], back: true}
	}
	return leg{stream: p.Stream, dest: p.Dest, slaves: p.Slaves, next: e.byPeer[p.Next], hybrid: e.hybridRequired(p)}
}

// spreadCounts divides n keys over paths by their rates (equal shares
// when no path has one); remainders go to the paths in turn, starting at
// turn, so that batches of one key alternate.
func spreadCounts(ps []Entry, n int, turn uint64) []int {
	var total float64
	for _, p := range ps {
		total += p.Rate
	}
	out := make([]int, len(ps))
	left := n
	for i, p := range ps {
		w := 1 / float64(len(ps))
		if total > 0 {
			w = p.Rate / total
		}
		out[i] = int(math.Floor(float64(n) * w))
		left -= out[i]
	}
	for i := 0; left > 0; i++ {
		out[(int(turn)+i)%len(ps)]++
		left--
	}
	return out
}

// relaySpread sends each path its part of the n keys, at once; the keys
// of the paths that answered are the result (fewer than n if a path
// failed; an error only if none delivered).
func (e *Engine) relaySpread(ctx context.Context, ps []Entry, sizeBits, n int, ttl time.Duration, back bool) ([]qkd.KeyID, error) {
	counts := spreadCounts(ps, n, e.spreadTurn.Add(1))
	ids := make([][]qkd.KeyID, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		if counts[i] == 0 {
			continue
		}
		wg.Go(func() {
			ids[i], errs[i] = e.start(ctx, p, sizeBits, counts[i], ttl, e.legOf(p, back))
		})
	}
	wg.Wait()
	var out []qkd.KeyID
	for i := range ps {
		out = append(out, ids[i]...)
	}
	if len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	for i, err := range errs {
		if err != nil {
			e.log.Debug("multipath: one path did not deliver its part", "stream", ps[i].Stream, "err", err)
		}
	}
	return out, nil
}

// relaySplit sends one XOR share of the n keys along every path: the
// shares of all paths but the last first, at once, then the last, whose
// step makes the receiving end combine them.
func (e *Engine) relaySplit(ctx context.Context, group string, ps []Entry, sizeBits, n int, ttl time.Duration, back bool) ([]qkd.KeyID, error) {
	if len(ps) != ps[0].Paths {
		return nil, fmt.Errorf("%w: %d of the %d paths of split stream %s are configured here", qkd.ErrNoRoute, len(ps), ps[0].Paths, group)
	}
	b, err := e.newBatch(ps[0].Master, ps[0].Slaves, sizeBits, n, ttl)
	if err != nil {
		return nil, err
	}
	defer b.k.Wipe()
	last := b.k.Clone() // K XOR every other share
	defer last.Wipe()
	rows, err := qkd.NewKeyIDs(nil, len(ps)-1)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if e.legOf(p, back).next == nil {
			return nil, fmt.Errorf("%w: path %s has no first hop here", ErrBadEntry, p.Stream)
		}
	}
	errs := make([]error, len(ps)-1)
	var wg sync.WaitGroup
	for i, p := range ps[:len(ps)-1] {
		share, err := secret.Random(e.o.Rand, b.k.Len())
		if err != nil {
			wg.Wait()
			return nil, err
		}
		xorInto(last.Expose(), last.Expose(), share.Expose())
		l := e.legOf(p, back)
		l.hybrid = false // the key's hybrid secret travels with the last share
		l.share = &kmsproto.Share{Group: group, Row: rows[i]}
		l.shareData = share
		wg.Go(func() {
			defer share.Wipe()
			errs[i] = e.sendStep(ctx, b, l, false, nil)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err // the shares that arrived expire with their TTL
	}
	p := ps[len(ps)-1]
	l := e.legOf(p, back)
	l.share = &kmsproto.Share{Group: group, Combine: rows}
	l.shareData = last
	if err := e.sendStep(ctx, b, l, true, b.ids); err != nil {
		return nil, err
	}
	return b.ids, nil
}

// checkShare validates the share of a step arriving for entry en.
func checkShare(en Entry, req kmsproto.ForwardKeysReq) (kmsproto.Code, string) {
	sh := req.Share
	switch {
	case sh == nil && en.member() && en.Mode == MultipathSplit:
		return kmsproto.BadRequest, "a path of a split multipath stream carries shares only"
	case sh == nil:
		return kmsproto.OK, ""
	case !en.member() || en.Mode != MultipathSplit || sh.Group != en.Group:
		return kmsproto.BadRequest, "a share of a stream that is not split here"
	case req.Etsi004 != nil:
		return kmsproto.BadRequest, "ETSI 004 chunks are never split"
	case sh.Row.IsZero() == (len(sh.Combine) == 0), len(sh.Combine) > maxPaths-1:
		return kmsproto.BadRequest, "malformed share"
	case !sh.Row.IsZero() && req.Hybrid != nil:
		return kmsproto.BadRequest, "a stored share carries no hybrid header"
	}
	return kmsproto.OK, ""
}

// deliverShare stores a share that is not the last (its step's Row) at
// the receiving end: one row no application receives, expiring with the
// keys.
func (e *Engine) deliverShare(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq, pieces []keystore.Piece, expires time.Time) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	err := e.o.Store.ApplyRelayStep(ctx, keystore.RelayStep{ID: req.Step, InLink: in.ID(), In: pieces, Expires: expires},
		func(inPad, _ secret.Bytes) (keystore.RelayResult, error) {
			k := secret.Make(len(req.Cipher))
			xorInto(k.Expose(), req.Cipher, inPad.Expose())
			row := keystore.Key{ID: req.Share.Row, Link: in.ID(), State: keystore.KeyPending, Master: req.Master, Slaves: req.Slaves,
				SizeBits: 8 * len(req.Cipher), Created: time.UnixMilli(req.Created), Expires: expires, Data: k, Stream: keystore.ShareStream}
			return keystore.RelayResult{Keys: []keystore.Key{row}, Record: slices.Clone(deliveredRecord)}, nil
		})
	return e.delivered(ctx, in, req, pieces, expires, err, "")
}
