package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/hybrid"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// HybridOptions turn on post-quantum hybrid keys
// (docs/hybrid.md). The source and the destination of a key stream run an
// ML-KEM exchange authenticated with ML-DSA node keys: the destination
// signs a KEM offer (asked for along the route with an OfferReq, cached
// at the source until shortly before it expires), the source seals every
// relay step to it (hybrid.Seal: a hybrid secret R wrapped under the KEM
// secret, the header signed), and both ends store
// combine(relayed key, R, transcript) instead of the relayed key. Every
// node on the route signs its forwarding step; the destination checks
// the chain against the configured route (Entry.Route) and refuses keys
// that came another way.
type HybridOptions struct {
	// Key and Cert are this node's ML-DSA key and encoded certificate;
	// Verifier checks the certificates of other nodes (the network's PQ
	// CA and revocation list). Without them this node can neither make
	// nor forward nor receive hybrid keys: steps that need them fail.
	Key      *hybrid.PrivateKey
	Cert     []byte
	Verifier *hybrid.Verifier
	// KEM of the offers this node makes as a destination ("" = ML-KEM-768).
	KEM string
	// Combiner this node uses as a source ("" = xor-shake256).
	Combiner string
	// Require reports whether the keys of a stream must be hybrid (the
	// pair's policy): the source then seals every step, and the
	// destination refuses steps without a valid hybrid header.
	Require func(Entry) bool
	// OfferLifetime of this node's KEM offers (default DefaultOfferLifetime).
	OfferLifetime time.Duration
	// OnReject, if set, is called (without locks held) when this node, as
	// destination, refuses hybrid keys; err wraps hybrid.ErrPathMismatch
	// when the signed path is not the configured route.
	OnReject func(stream string, err error)
	// OnKeys, if set, is called after this node stored n hybrid keys as
	// the source (dest false, once the route delivered them) or the
	// destination of a step.
	OnKeys func(dest bool, n int)
}

// DefaultOfferLifetime is how long a destination's KEM offer is valid. A
// new one is made when half of it is left; the decapsulation key of the
// old one is kept until it expires (plus offerGrace), then wiped.
const DefaultOfferLifetime = time.Hour

const (
	offerMargin = time.Minute     // a source does not seal to an offer this close to expiry
	offerGrace  = 5 * time.Minute // a destination keeps an expired offer's key this long
)

// Errors of the hybrid side.
var (
	ErrHybridUnavailable = errors.New("relay: hybrid keys required, but this node has no post-quantum identity")
	ErrHybridMulticast   = errors.New("relay: hybrid keys are not available for multicast (group) keys")
)

// hybridState is the engine's post-quantum state.
type hybridState struct {
	o HybridOptions

	mu      sync.Mutex
	offers  map[string]*hybrid.Offer // at a source: the destination's offer per stream; guarded by mu
	decaps  map[string]*decapEntry   // at a destination: by offer key ID; guarded by mu
	current map[string]string        // at a destination: stream → key ID of its current offer; guarded by mu
	// certs, at a destination: the certificates of the route's nodes per
	// stream, learnt (and verified) with the last OfferReq; guarded by mu.
	certs map[string]map[qkd.NodeID][]byte
}

type decapEntry struct {
	key     *hybrid.DecapKey
	offer   []byte // encoded, signed
	expires time.Time
}

func newHybridState(o *HybridOptions) *hybridState {
	if o == nil {
		return nil
	}
	h := &hybridState{o: *o, offers: map[string]*hybrid.Offer{}, decaps: map[string]*decapEntry{}, current: map[string]string{},
		certs: map[string]map[qkd.NodeID][]byte{}}
	if h.o.OfferLifetime <= 0 {
		h.o.OfferLifetime = DefaultOfferLifetime
	}
	return h
}

func (h *hybridState) ready() bool {
	return h != nil && h.o.Key != nil && h.o.Verifier != nil && len(h.o.Cert) > 0
}

// hybridRequired reports whether the stream's keys must be hybrid.
func (e *Engine) hybridRequired(en Entry) bool {
	return e.hyb != nil && e.hyb.o.Require != nil && e.hyb.o.Require(en)
}

// ---------------------------------------------------------------------------
// Source

// sealed is what a source adds to one step: the header and path to send,
// and the application keys it stores.
type sealed struct {
	header, path []byte
	keys         []secret.Bytes
}

func (s *sealed) wipe() {
	if s != nil {
		secret.WipeAll(s.keys)
	}
}

// seal makes the hybrid part of step: the destination's offer (asked for
// if none is cached), the sealed header, the source's path step and the
// application keys combine(K_i, R, transcript).
func (e *Engine) seal(ctx context.Context, b *batch, l leg, step string) (*sealed, error) {
	h := e.hyb
	if !h.ready() {
		return nil, ErrHybridUnavailable
	}
	offer, err := e.offerFor(ctx, b, l)
	if err != nil {
		return nil, err
	}
	hdr, r, err := hybrid.Seal(h.o.Verifier, hybrid.SealParams{Combiner: h.o.Combiner, Stream: l.stream, Step: step,
		Source: e.o.Node, SizeBits: b.sizeBits, KeyIDs: b.ids, Offers: []*hybrid.Offer{offer}, Key: h.o.Key, Cert: h.o.Cert},
		e.o.Now())
	if err != nil {
		e.dropOffer(l.stream)
		return nil, fmt.Errorf("relay: hybrid seal: %w", err)
	}
	defer r.Wipe()
	th, err := hdr.TranscriptHash()
	if err != nil {
		return nil, err
	}
	// The destination has every route node's certificate from the
	// OfferReq: the steps go without theirs.
	st, err := hybrid.SignStep(h.o.Key, l.stream, step, th, hybrid.PathStep{Hop: 0, Node: e.o.Node, Next: l.next.Peer()})
	if err != nil {
		return nil, err
	}
	s := &sealed{}
	if s.header, err = hdr.Marshal(); err != nil {
		return nil, err
	}
	if s.path, err = hybrid.MarshalPath([]hybrid.PathStep{st}); err != nil {
		return nil, err
	}
	size := b.sizeBits / 8
	qkdKeys := make([]secret.Bytes, len(b.ids))
	for i := range qkdKeys {
		qkdKeys[i] = b.k.Slice(i*size, (i+1)*size)
	}
	s.keys, err = hybrid.CombineKeys(hdr, r, qkdKeys)
	secret.WipeAll(qkdKeys)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// offerFor returns the destination's KEM offer for the leg's stream: the
// cached one while it is valid for offerMargin more, else a new one asked
// for along the route (OfferReq) and verified.
func (e *Engine) offerFor(ctx context.Context, b *batch, l leg) (*hybrid.Offer, error) {
	h := e.hyb
	now := e.o.Now()
	h.mu.Lock()
	o := h.offers[l.stream]
	h.mu.Unlock()
	if o != nil && time.UnixMilli(o.Expires).After(now.Add(offerMargin)) {
		return o, nil
	}
	req := kmsproto.ForwardKeysReq{Stream: l.stream, Step: e.newStep(), Source: e.o.Node, Dest: l.dest, Master: b.master,
		Slaves: l.slaves, Path: []qkd.NodeID{e.o.Node}, OfferReq: true, Certs: [][]byte{h.o.Cert}}
	body, err := kmsproto.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := l.next.Forward(ctx, body) // no lock held
	var refused *link.RefusedError
	switch {
	case errors.As(err, &refused) && refused.Code == kmsproto.NoRoute:
		return nil, fmt.Errorf("%w: KEM offer: %s", qkd.ErrNoRoute, refused.Msg)
	case err != nil:
		return nil, fmt.Errorf("%w: KEM offer of %s: %w", qkd.ErrPeerUnavailable, l.dest, err)
	}
	o, err = hybrid.UnmarshalOffer(resp.Offer)
	if err == nil {
		err = hybrid.VerifyOffer(h.o.Verifier, o, e.o.Now())
	}
	if err == nil && (o.Stream != l.stream || o.Source != e.o.Node || o.Dest != l.dest) {
		err = fmt.Errorf("%w: offer for another stream or node", hybrid.ErrMalformed)
	}
	if err != nil {
		e.log.Warn("KEM offer refused", "stream", l.stream, "dest", string(l.dest), "err", err)
		return nil, fmt.Errorf("relay: KEM offer of %s: %w", l.dest, err)
	}
	h.mu.Lock()
	h.offers[l.stream] = o
	h.mu.Unlock()
	return o, nil
}

// dropOffer forgets a stream's cached offer (refused by its destination:
// restarted, or the offer rotated away).
func (e *Engine) dropOffer(stream string) {
	if e.hyb == nil {
		return
	}
	e.hyb.mu.Lock()
	delete(e.hyb.offers, stream)
	e.hyb.mu.Unlock()
}

// ---------------------------------------------------------------------------
// Every node of the route

// handleOfferReq passes an OfferReq along the stream's route, or answers
// it at the destination with the current offer. Nothing is consumed.
func (e *Engine) handleOfferReq(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	if req.Stream == "" || req.Step == "" || len(req.IDs) != 0 || len(req.Pieces) != 0 || len(req.Cipher) != 0 || req.Hybrid != nil ||
		len(req.Path) == 0 || len(req.Path) > hybrid.MaxPathSteps || len(req.Certs) != len(req.Path) ||
		req.Path[len(req.Path)-1] != in.Peer() || slices.Contains(req.Path, e.o.Node) {
		return kmsproto.ForwardKeysResp{}, kmsproto.BadRequest, "malformed KEM offer request"
	}
	en, next, code, msg := e.entryFor(in, req)
	if code != kmsproto.OK {
		return kmsproto.ForwardKeysResp{}, code, msg
	}
	if !e.hyb.ready() {
		return kmsproto.ForwardKeysResp{}, kmsproto.Hybrid, "this node has no post-quantum identity"
	}
	if next == "" {
		if err := e.learnCerts(req); err != nil {
			e.reject(req.Stream, err)
			return kmsproto.ForwardKeysResp{}, kmsproto.Hybrid, "route certificates refused: " + err.Error()
		}
		offer, err := e.currentOffer(en)
		if err != nil {
			e.log.Warn("no KEM offer for a stream", "stream", req.Stream, "err", err)
			return kmsproto.ForwardKeysResp{}, kmsproto.Hybrid, "this node makes no KEM offers (no post-quantum identity)"
		}
		return kmsproto.ForwardKeysResp{Offer: offer}, kmsproto.OK, ""
	}
	fwd := req
	fwd.Path = append(slices.Clone(req.Path), e.o.Node)
	fwd.Certs = append(slices.Clone(req.Certs), e.hyb.o.Cert)
	body, err := kmsproto.Marshal(fwd)
	if err != nil {
		return kmsproto.ForwardKeysResp{}, kmsproto.Internal, "encoding"
	}
	return e.sendOn(ctx, e.outLinks(next)[0], body)
}

// entryFor checks a step against the stream's forwarding entry and
// returns the entry and the next hop ("" at the destination).
func (e *Engine) entryFor(in *link.Link, req kmsproto.ForwardKeysReq) (Entry, qkd.NodeID, kmsproto.Code, string) {
	en, ok := e.Lookup(req.Stream)
	var next qkd.NodeID
	if ok {
		next, ok = en.hopAfter(in.Peer(), req.Back)
	}
	if !ok || slices.Contains(req.Path, next) || en.Dest != req.Dest || en.Source != req.Source || en.Master != req.Master || !slices.Equal(en.Slaves, req.Slaves) {
		e.log.Warn("relay step refused: no matching forwarding entry", "stream", req.Stream, "from", string(in.Peer()))
		return en, "", kmsproto.NoRoute, "no forwarding entry for this stream from this neighbour"
	}
	return en, next, kmsproto.OK, ""
}

// signPass adds this intermediate node's signed forwarding step to a
// hybrid step going on to next (nil if the step is not hybrid).
func (e *Engine) signPass(in *link.Link, req kmsproto.ForwardKeysReq, next qkd.NodeID) ([]byte, kmsproto.Code, string) {
	if req.Hybrid == nil {
		return nil, kmsproto.OK, ""
	}
	if !e.hyb.ready() {
		return nil, kmsproto.Hybrid, "this node cannot sign a hybrid forwarding step (no post-quantum identity)"
	}
	hdr, err := hybrid.UnmarshalHeader(req.Hybrid)
	if err != nil {
		return nil, kmsproto.BadRequest, "malformed hybrid header"
	}
	th, err := hdr.TranscriptHash()
	if err != nil {
		return nil, kmsproto.BadRequest, "malformed hybrid header"
	}
	steps, err := hybrid.UnmarshalPath(req.PathSigns)
	if err != nil || len(steps) == 0 {
		return nil, kmsproto.BadRequest, "malformed signed path"
	}
	st, err := hybrid.SignStep(e.hyb.o.Key, req.Stream, req.Step, th,
		hybrid.PathStep{Hop: uint(len(steps)), Node: e.o.Node, Prev: in.Peer(), Next: next}) // certificate: sent with the OfferReq
	if err != nil {
		e.log.Error("signing a forwarding step failed", "stream", req.Stream, "err", err)
		return nil, kmsproto.Internal, "signing failed"
	}
	path, err := hybrid.MarshalPath(append(steps, st))
	if err != nil {
		return nil, kmsproto.BadRequest, "signed path too long"
	}
	return path, kmsproto.OK, ""
}

// ---------------------------------------------------------------------------
// Destination

// currentOffer returns the stream's current signed offer, making a new
// one when there is none or less than half of its lifetime is left, and
// wipes decapsulation keys past their expiry and grace.
func (e *Engine) currentOffer(en Entry) ([]byte, error) {
	h := e.hyb
	if !h.ready() {
		return nil, ErrHybridUnavailable
	}
	now := e.o.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, d := range h.decaps {
		if now.After(d.expires.Add(offerGrace)) {
			d.key.Wipe()
			delete(h.decaps, id)
		}
	}
	if d := h.decaps[h.current[en.Stream]]; d != nil && d.expires.Sub(now) > h.o.OfferLifetime/2 {
		return d.offer, nil
	}
	o, dk, err := hybrid.NewOffer(hybrid.OfferParams{KEM: h.o.KEM, Stream: en.Stream, Source: en.Source, Dest: e.o.Node,
		Expires: now.Add(h.o.OfferLifetime), Key: h.o.Key, Cert: h.o.Cert})
	if err != nil {
		return nil, err
	}
	enc, err := o.Marshal()
	if err != nil {
		dk.Wipe()
		return nil, err
	}
	h.decaps[o.KeyID] = &decapEntry{key: dk, offer: enc, expires: time.UnixMilli(o.Expires)}
	h.current[en.Stream] = o.KeyID
	return enc, nil
}

// WipeHybrid wipes and forgets every KEM decapsulation key and cached
// offer (zeroisation); new offers are made on demand afterwards.
func (e *Engine) WipeHybrid() {
	h := e.hyb
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, d := range h.decaps {
		d.key.Wipe()
		delete(h.decaps, id)
	}
	clear(h.current)
	clear(h.offers)
	clear(h.certs)
}

func (e *Engine) decapKey(id string) *hybrid.DecapKey {
	e.hyb.mu.Lock()
	defer e.hyb.mu.Unlock()
	if d := e.hyb.decaps[id]; d != nil {
		return d.key
	}
	return nil
}

// spyHooks let a test play an honest-but-curious trusted node, which
// records every secret it handles (set by export_test.go only).
type spyHooks struct {
	relayed func(ids []qkd.KeyID, plain []byte) // an intermediate node's relayed keys
	opened  func(r, th []byte)                  // a destination's hybrid secret R and transcript hash
	wire    func(header, path int)              // sizes of a received step's hybrid part
}

// opened is a verified hybrid step at its destination: the header and R.
type opened struct {
	hdr *hybrid.Header
	r   secret.Bytes
}

func (o *opened) wipe() {
	if o != nil {
		o.r.Wipe()
	}
}

// openHybrid checks a step arriving at its destination: a stream that
// requires hybrid keys must have them; a header must be the source's,
// signed, for this very step and keys, sealed to an offer of this node;
// the signed path must be the configured route. nil without a header
// (and none required).
func (e *Engine) openHybrid(en Entry, req kmsproto.ForwardKeysReq) (*opened, kmsproto.Code, string) {
	if req.Hybrid == nil {
		if e.hybridRequired(en) {
			e.reject(req.Stream, errors.New("hybrid keys required, none came"))
			return nil, kmsproto.Hybrid, "this stream requires hybrid keys"
		}
		return nil, kmsproto.OK, ""
	}
	if !e.hyb.ready() {
		return nil, kmsproto.Hybrid, "this node cannot receive hybrid keys (no post-quantum identity)"
	}
	if e.spy != nil && e.spy.wire != nil {
		e.spy.wire(len(req.Hybrid), len(req.PathSigns))
	}
	hdr, err := hybrid.UnmarshalHeader(req.Hybrid)
	if err != nil {
		return nil, kmsproto.BadRequest, "malformed hybrid header"
	}
	if hdr.Stream != req.Stream || hdr.Step != req.Step || hdr.Source != req.Source || hdr.SizeBits != int(req.SizeBits) || !slices.Equal(hdr.KeyIDs, req.IDs) {
		e.reject(req.Stream, errors.New("hybrid header does not belong to its step"))
		return nil, kmsproto.Hybrid, "hybrid header does not belong to this step"
	}
	now := e.o.Now()
	r, err := hybrid.Open(e.hyb.o.Verifier, hdr, e.o.Node, e.decapKey, now)
	if errors.Is(err, hybrid.ErrUnknownOffer) {
		e.log.Info("hybrid step refused: sealed to an offer this node no longer has", "stream", req.Stream)
		return nil, kmsproto.HybridStale, "hybrid header refused: " + err.Error()
	}
	if err != nil {
		e.reject(req.Stream, err)
		return nil, kmsproto.Hybrid, "hybrid header refused: " + err.Error()
	}
	th, err := hdr.TranscriptHash()
	var steps []hybrid.PathStep
	if err == nil {
		steps, err = hybrid.UnmarshalPath(req.PathSigns)
	}
	if err == nil && len(en.Route) == 0 {
		err = errors.New("no configured route to check the signed path against")
	}
	if err == nil {
		err = hybrid.VerifyPathWith(e.hyb.o.Verifier, req.Stream, req.Step, th, steps, en.Route, now, e.certsOf(req.Stream))
	}
	if errors.Is(err, hybrid.ErrNoCertificate) {
		// Not an attack: the route changed since the source's last offer
		// request, which carried the certificates. The source asks again.
		r.Wipe()
		e.log.Info("hybrid step refused: a route node's certificate is not known yet", "stream", req.Stream, "err", err)
		return nil, kmsproto.HybridStale, "signed forwarding path refused: " + err.Error()
	}
	if err != nil {
		r.Wipe()
		e.reject(req.Stream, err)
		return nil, kmsproto.Hybrid, "signed forwarding path refused: " + err.Error()
	}
	if e.spy != nil && e.spy.opened != nil {
		e.spy.opened(r.Expose(), th)
	}
	return &opened{hdr: hdr, r: r}, kmsproto.OK, ""
}

// learnCerts keeps the certificates an OfferReq collected along the route
// (one per node of its Path, each verified, subject = that node) for the
// stream's path checks; they replace what the stream had.
func (e *Engine) learnCerts(req kmsproto.ForwardKeysReq) error {
	now := e.o.Now()
	got := make(map[qkd.NodeID][]byte, len(req.Path))
	for i, node := range req.Path {
		c, err := e.hyb.o.Verifier.VerifyCert(req.Certs[i], now)
		if err != nil {
			return fmt.Errorf("certificate of %s: %w", node, err)
		}
		if c.Subject != string(node) {
			return fmt.Errorf("%w: certificate of %q sent for %s", hybrid.ErrWrongSubject, c.Subject, node)
		}
		got[node] = slices.Clone(req.Certs[i])
	}
	e.hyb.mu.Lock()
	e.hyb.certs[req.Stream] = got
	e.hyb.mu.Unlock()
	return nil
}

// certsOf returns the lookup of the certificates learnt for stream.
func (e *Engine) certsOf(stream string) func(qkd.NodeID) []byte {
	e.hyb.mu.Lock()
	m := e.hyb.certs[stream]
	e.hyb.mu.Unlock()
	return func(n qkd.NodeID) []byte { return m[n] }
}

// reject logs and reports keys this destination refused.
func (e *Engine) reject(stream string, err error) {
	e.log.Warn("hybrid keys rejected", "stream", stream, "err", err)
	if e.hyb != nil && e.hyb.o.OnReject != nil {
		e.hyb.o.OnReject(stream, err)
	}
}

func (e *Engine) countHybrid(dest bool, n int) {
	if e.hyb != nil && e.hyb.o.OnKeys != nil {
		e.hyb.o.OnKeys(dest, n)
	}
}

// combine turns the relayed keys of a delivered step into its
// application keys (qkdKeys are wiped by the caller).
func (o *opened) combine(qkdKeys []secret.Bytes) ([]secret.Bytes, error) {
	return hybrid.CombineKeys(o.hdr, o.r, qkdKeys)
}
