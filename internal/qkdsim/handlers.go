package qkdsim

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/device/pushproto"
)

// maxURILen bounds source and destination.
const maxURILen = 1024

// coapCode is the profile's one mapping from a 004 status to a CoAP code;
// success is the code for statuses 0 and 1.
func coapCode(s pushproto.Status, success codes.Code) codes.Code {
	switch s {
	case pushproto.StatusSuccess, pushproto.StatusPeerNotConnected:
		return success
	case pushproto.StatusInsufficientKey, pushproto.StatusPeerAppNotConnected:
		return codes.NotFound
	case pushproto.StatusKSIDInUse:
		return codes.Forbidden
	case pushproto.StatusQoSNotMet:
		return codes.NotAcceptable
	case pushproto.StatusNoQKDConnection:
		return codes.ServiceUnavailable
	}
	return codes.InternalServerError
}

// endpointOf names the CoAP endpoint of a request: network and address.
func endpointOf(c mux.Conn) (name string, udp bool) {
	a := c.RemoteAddr()
	return a.Network() + " " + a.String(), a.Network() == "udp"
}

// failure answers a request that has no 004 outcome (malformed, wrong
// method) with a fixed, safe text.
func (e *End) failure(w mux.ResponseWriter, code codes.Code, text string) {
	coapx.Respond(w, e.log, code, message.TextPlain, []byte(text))
}

// reply answers with v encoded in f.
func (e *End) reply(w mux.ResponseWriter, f pushproto.Format, code codes.Code, v any) {
	p, err := f.Marshal(v)
	if err != nil {
		e.log.Error("qkdsim: encoding reply", "err", err)
		e.failure(w, codes.InternalServerError, "internal error")
		return
	}
	cf := message.AppCBOR
	if f == pushproto.JSON {
		cf = message.AppJSON
	}
	coapx.Respond(w, e.log, code, cf, p)
}

// readBody returns the body of a POST and its format; ok is false when the
// request has been answered with an error.
func (e *End) readBody(w mux.ResponseWriter, r *mux.Message) (pushproto.Format, []byte, bool) {
	if r.Code() != codes.POST {
		e.failure(w, codes.MethodNotAllowed, "POST only")
		return 0, nil, false
	}
	f := pushproto.CBOR
	if cf, err := r.ContentFormat(); err == nil {
		switch cf {
		case message.AppCBOR:
		case message.AppJSON:
			f = pushproto.JSON
		default:
			e.failure(w, codes.UnsupportedMediaType, "content-format 60 (cbor) or 50 (json)")
			return 0, nil, false
		}
	}
	if n, err := r.BodySize(); err == nil && n > pushproto.MaxMessageSize {
		e.failure(w, codes.RequestEntityTooLarge, "body too large")
		return 0, nil, false
	}
	body, err := r.ReadBody()
	if err != nil {
		e.failure(w, codes.BadRequest, "unreadable body")
		return 0, nil, false
	}
	return f, body, true
}

// decodeOpenConnect decodes and checks an OPEN_CONNECT body.
func decodeOpenConnect(f pushproto.Format, body []byte) (pushproto.OpenConnect, error) {
	var req pushproto.OpenConnect
	if err := f.Unmarshal(body, &req); err != nil {
		return pushproto.OpenConnect{}, err
	}
	if req.Source == "" || len(req.Source) > maxURILen || len(req.Destination) > maxURILen {
		return pushproto.OpenConnect{}, fmt.Errorf("%w: source must be a URI of at most %d bytes", pushproto.ErrMalformed, maxURILen)
	}
	return req, nil
}

func (e *End) serveOpenConnect(w mux.ResponseWriter, r *mux.Message) {
	f, body, ok := e.readBody(w, r)
	if !ok {
		return
	}
	req, err := decodeOpenConnect(f, body)
	if err != nil {
		e.log.Debug("qkdsim: open_connect", "err", err)
		e.failure(w, codes.BadRequest, "malformed open_connect request")
		return
	}
	endpoint, _ := endpointOf(w.Conn())
	rep, err := e.openConnect(req, endpoint)
	if err != nil {
		e.log.Error("qkdsim: open_connect", "err", err)
		e.failure(w, codes.InternalServerError, "internal error")
		return
	}
	e.reply(w, f, coapCode(rep.Status, codes.Changed), rep)
}

// openConnect is 004 OPEN_CONNECT at this end. It never blocks: the peer
// end's state is reported by status 0 (open there too) or 1 (not yet).
func (e *End) openConnect(req pushproto.OpenConnect, endpoint string) (pushproto.OpenConnectReply, error) {
	rep := pushproto.OpenConnectReply{Source: req.Source, Destination: req.Destination}
	qos, ok := e.link.offer(req.QoS)
	rep.QoS = qos
	if !ok {
		rep.Status = pushproto.StatusQoSNotMet
		return rep, nil
	}
	e.mu.Lock()
	if h := e.holder; h != nil && h.source != req.Source && e.obs != nil {
		e.mu.Unlock()
		e.log.Warn("qkdsim: open_connect refused: end held by another application", "source", req.Source, "holder", h.source)
		rep.Status = pushproto.StatusKSIDInUse
		return rep, nil
	}
	ksid, ok, err := e.link.bindStream(req.KeyStreamID)
	if err != nil || !ok {
		e.mu.Unlock()
		rep.Status = pushproto.StatusNoQKDConnection
		return rep, err
	}
	if e.obs != nil && e.obs.endpoint != endpoint {
		e.obs.cancel() // the latest OPEN_CONNECT wins
		e.obs = nil
	}
	prev := e.holder
	e.holder = &holder{source: req.Source, destination: req.Destination, endpoint: endpoint}
	e.mu.Unlock()
	if prev == nil || prev.source != req.Source {
		e.log.Info("qkdsim: key stream opened", "source", req.Source, "destination", req.Destination, "ksid", ksid)
	}
	rep.KeyStreamID = ksid
	rep.Status = pushproto.StatusPeerNotConnected
	if e.link.other(e).isOpen() {
		rep.Status = pushproto.StatusSuccess
	}
	return rep, nil
}

// admitLocked checks that endpoint opened stream k at this end.
func (e *End) admitLocked(k pushproto.KeyStreamID, endpoint string) pushproto.Status {
	ksid := e.link.KeyStreamID()
	switch {
	case ksid.IsZero() || k != ksid || e.holder == nil:
		return pushproto.StatusPeerAppNotConnected
	case e.holder.endpoint != endpoint:
		return pushproto.StatusKSIDInUse
	}
	return pushproto.StatusSuccess
}

func (e *End) serveClose(w mux.ResponseWriter, r *mux.Message) {
	f, body, ok := e.readBody(w, r)
	if !ok {
		return
	}
	var req pushproto.Close
	if err := f.Unmarshal(body, &req); err != nil {
		e.failure(w, codes.BadRequest, "malformed close request")
		return
	}
	endpoint, _ := endpointOf(w.Conn())
	st := e.closeStream(req.KeyStreamID, endpoint)
	e.reply(w, f, coapCode(st, codes.Changed), pushproto.StatusReply{Status: st})
}

// closeStream is 004 CLOSE at this end.
func (e *End) closeStream(k pushproto.KeyStreamID, endpoint string) pushproto.Status {
	e.mu.Lock()
	if st := e.admitLocked(k, endpoint); st != pushproto.StatusSuccess {
		e.mu.Unlock()
		return st
	}
	source := e.holder.source
	e.holder = nil
	if e.obs != nil {
		e.obs.cancel()
		e.obs = nil
	}
	e.mu.Unlock()
	e.log.Info("qkdsim: key stream closed", "source", source)
	if !e.link.other(e).isOpen() {
		e.link.endStream()
	}
	return pushproto.StatusSuccess
}

// getKeyQuery is the query of GET /etsi004/get_key.
type getKeyQuery struct {
	ksid     pushproto.KeyStreamID
	index    uint32
	hasIndex bool
}

func parseGetKeyQuery(r *mux.Message) (getKeyQuery, error) {
	var q getKeyQuery
	qs, _ := r.Queries()
	var haveKSID bool
	for _, kv := range qs {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case pushproto.QueryKeyStreamID:
			id, err := pushproto.ParseKeyStreamID(v)
			if err != nil {
				return q, err
			}
			q.ksid, haveKSID = id, true
		case pushproto.QueryIndex:
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return q, fmt.Errorf("%w: index", pushproto.ErrMalformed)
			}
			q.index, q.hasIndex = uint32(n), true
		}
	}
	if !haveKSID {
		return q, fmt.Errorf("%w: ksid missing", pushproto.ErrMalformed)
	}
	return q, nil
}

func (e *End) serveGetKey(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.GET {
		e.failure(w, codes.MethodNotAllowed, "GET only")
		return
	}
	obs, obsErr := r.Observe()
	if obsErr == nil && obs == 1 { // the token names the registration; go-coap's Cancel sends no query
		e.deregister(r.Token())
		e.replyNotification(w, codes.Content, pushproto.Notification{Status: pushproto.StatusInsufficientKey})
		return
	}
	q, err := parseGetKeyQuery(r)
	if err != nil {
		e.failure(w, codes.BadRequest, "query needs ksid=<uuid> and optionally index=<uint32>")
		return
	}
	if obsErr == nil && obs == 0 {
		e.register(w, r, q.ksid)
		return
	}
	e.pull(w, q)
}

// register makes the requesting endpoint the end's observer, replacing any
// earlier registration. The push loop sends the first response itself, so
// the handler sets none (over UDP go-coap then acknowledges the request
// with an empty ACK: a separate response, RFC 7252 §5.2.2).
func (e *End) register(w mux.ResponseWriter, r *mux.Message, k pushproto.KeyStreamID) {
	endpoint, udp := endpointOf(w.Conn())
	e.mu.Lock()
	if st := e.admitLocked(k, endpoint); st != pushproto.StatusSuccess {
		e.mu.Unlock()
		e.replyNotification(w, coapCode(st, codes.Content), pushproto.Notification{Status: st})
		return
	}
	o := newObserver(w.Conn(), r.Token(), endpoint, udp)
	if e.obs != nil {
		e.obs.cancel()
	}
	e.obs = o
	e.pushers.Add(1)
	e.mu.Unlock()
	e.log.Debug("qkdsim: KMS registered for key", "endpoint", endpoint)
	go e.push(o)
}

func (e *End) deregister(token message.Token) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.obs != nil && bytes.Equal(e.obs.token, token) {
		e.obs.cancel()
		e.obs = nil
	}
}

// pull answers a GET without Observe: the block with the given index (or
// the oldest), if still buffered. It does not consume the block.
func (e *End) pull(w mux.ResponseWriter, q getKeyQuery) {
	endpoint, _ := endpointOf(w.Conn())
	e.mu.Lock()
	if st := e.admitLocked(q.ksid, endpoint); st != pushproto.StatusSuccess {
		e.mu.Unlock()
		e.replyNotification(w, coapCode(st, codes.Content), pushproto.Notification{Status: st})
		return
	}
	b, ok := e.buf.front()
	if q.hasIndex {
		b, ok = e.buf.find(q.index)
	}
	var p []byte
	var err error
	if ok {
		p, err = e.encodeLocked(b)
	}
	e.mu.Unlock()
	switch {
	case err != nil:
		e.log.Error("qkdsim: encoding block", "err", err)
		e.failure(w, codes.InternalServerError, "internal error")
	case !ok:
		e.replyNotification(w, codes.NotFound, pushproto.Notification{Status: pushproto.StatusInsufficientKey, Index: q.index})
	default:
		// go-coap writes the response after the handler returns and keeps
		// copies (over UDP for EXCHANGE_LIFETIME): p cannot be wiped here.
		coapx.Respond(w, e.log, codes.Content, message.AppCBOR, p)
	}
}

// encodeLocked encodes a buffered block as a status-0 notification; the
// caller owns and wipes the result.
func (e *End) encodeLocked(b block) ([]byte, error) {
	age := max(e.link.opts.Clock.Now().Sub(b.made), 0)
	return pushproto.EncodeNotification(pushproto.Notification{
		Status:      pushproto.StatusSuccess,
		Index:       uint32(b.index),
		Key:         secretView(b.data),
		KeyStreamID: e.link.KeyStreamID(),
		AgeMS:       uint64(age / time.Millisecond),
	})
}

func (e *End) replyNotification(w mux.ResponseWriter, code codes.Code, n pushproto.Notification) {
	p, err := pushproto.EncodeNotification(n)
	if err != nil {
		e.failure(w, codes.InternalServerError, "internal error")
		return
	}
	coapx.Respond(w, e.log, code, message.AppCBOR, p)
}
