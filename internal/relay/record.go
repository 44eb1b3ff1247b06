package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"

	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/qkd"
)

// Step records (keystore.RelayStep's Record): the destination stores
// deliveredRecord; an intermediate node stores its outgoing message
// together with the neighbour it goes to, so that a retry of the step
// follows the route the step took even after the forwarding table
// changed: the message's pad is material of that one link.
var deliveredRecord = []byte("delivered")

// passRecordV1 starts a pass record. Records written before the next hop
// was kept are the bare CBOR message, which starts with a map header
// (0xa0–0xbf), never with this byte.
const passRecordV1 = 0x01

// refusedRecordV1 starts the record of a step this node refused for good
// after the sender had used its pad (burn): code, then the message.
const refusedRecordV1 = 0x02

func encodeRefused(code kmsproto.Code, msg string) []byte {
	return append([]byte{refusedRecordV1, byte(code)}, msg...)
}

func decodeRefused(rec []byte) (kmsproto.Code, string, bool) {
	if len(rec) < 2 || rec[0] != refusedRecordV1 {
		return 0, "", false
	}
	return kmsproto.Code(rec[1]), string(rec[2:]), true
}

func encodePass(next string, body []byte) []byte {
	rec := []byte{passRecordV1}
	rec = binary.AppendUvarint(rec, uint64(len(next)))
	rec = append(rec, next...)
	return append(rec, body...)
}

// decodePass returns the next hop ("" for a record without one: the
// outgoing link's ID, or in older records the next node's) and the
// outgoing message of a pass record.
func decodePass(rec []byte) (string, []byte) {
	if len(rec) == 0 || rec[0] != passRecordV1 {
		return "", rec
	}
	n, k := binary.Uvarint(rec[1:])
	if k <= 0 || n > uint64(len(rec)-1-k) {
		return "", nil
	}
	at := 1 + k
	return string(rec[at : at+int(n)]), rec[at+int(n):]
}

// fromRecord answers a step that was applied here before (a retry after a
// lost reply) from its record, without consuming anything: delivered at
// the destination; at an intermediate node the recorded message goes
// again to the recorded next hop, whatever the forwarding table says now.
// handled is false if the step has no record here (or one without its
// next hop, written by an older version).
func (e *Engine) fromRecord(ctx context.Context, step string) (resp kmsproto.ForwardKeysResp, code kmsproto.Code, msg string, handled bool) {
	rec, err := e.o.Store.RelayRecord(ctx, step)
	switch {
	case errors.Is(err, qkd.ErrNotFound):
		return resp, kmsproto.OK, "", false
	case err != nil:
		e.log.Error("relay record lookup failed", "err", err)
		return resp, kmsproto.Internal, "store error", true
	case bytes.Equal(rec, deliveredRecord):
		return kmsproto.ForwardKeysResp{Delivered: true}, kmsproto.OK, "", true
	}
	if code, msg, ok := decodeRefused(rec); ok {
		return resp, code, msg, true // refused before: the same answer
	}
	next, body := decodePass(rec)
	out := e.byLink[qkd.LinkID(next)] // the pad belongs to that very link
	if out == nil {
		out = e.byPeer[qkd.NodeID(next)]
	}
	if out == nil || body == nil {
		return resp, kmsproto.OK, "", false
	}
	resp, code, msg = e.sendOn(ctx, out, body)
	return resp, code, msg, true
}

// sendOn sends a recorded outgoing message to the next hop and relays its
// answer. The step is recorded: it is finished even if the upstream
// request is abandoned meanwhile (its retry then finds the answer at once).
func (e *Engine) sendOn(ctx context.Context, out *link.Link, body []byte) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	resp, err := out.Forward(context.WithoutCancel(ctx), body)
	var refused *link.RefusedError
	switch {
	case errors.As(err, &refused):
		return kmsproto.ForwardKeysResp{}, refused.Code, refused.Msg
	case err != nil:
		return kmsproto.ForwardKeysResp{}, kmsproto.Retry, "next hop unreachable"
	}
	resp.Hops++
	return resp, kmsproto.OK, ""
}
