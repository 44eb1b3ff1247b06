package qkdsim

import (
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// PathFault is the simulator-only control resource (not part of the 004
// profile; a real QKD module has nothing like it).
const PathFault = "/sim/fault"

// FaultRequest is the body of POST /sim/fault (CBOR or JSON). Absent fields
// leave a switch unchanged.
type FaultRequest struct {
	End     string  `json:"end,omitempty"`      // "a" or "b"; empty: the end that serves the request
	Drop    *uint32 `json:"drop,omitempty"`     // drop the next N blocks at that end
	Flip    *uint32 `json:"flip,omitempty"`     // flip one bit in each of the next N blocks at that end
	DelayMS *uint32 `json:"delay_ms,omitempty"` // deliver blocks no earlier than this after they were made
	Pause   *bool   `json:"pause,omitempty"`    // pause (true) or resume (false) production of the link
}

// FaultState answers FaultRequest: the switches of that end afterwards.
type FaultState struct {
	End     string `json:"end"`
	Drop    uint32 `json:"drop"`
	Flip    uint32 `json:"flip"`
	DelayMS uint32 `json:"delay_ms"`
	Pause   bool   `json:"pause"`
}

func (e *End) serveFault(w mux.ResponseWriter, r *mux.Message) {
	f, body, ok := e.readBody(w, r)
	if !ok {
		return
	}
	var req FaultRequest
	if err := f.Unmarshal(body, &req); err != nil {
		e.failure(w, codes.BadRequest, "malformed fault request")
		return
	}
	target := e
	if req.End != "" {
		if target = e.link.End(req.End); target == nil {
			e.failure(w, codes.BadRequest, `end must be "a" or "b"`)
			return
		}
	}
	e.reply(w, f, codes.Changed, target.applyFault(req))
}

// applyFault changes the switches named in req and reports the result.
func (e *End) applyFault(req FaultRequest) FaultState {
	if req.Pause != nil {
		e.link.Pause(*req.Pause)
	}
	e.mu.Lock()
	if req.Drop != nil {
		e.faults.Drop = int(*req.Drop)
	}
	if req.Flip != nil {
		e.faults.Flip = int(*req.Flip)
	}
	if req.DelayMS != nil {
		e.faults.Delay = time.Duration(*req.DelayMS) * time.Millisecond
	}
	f := e.faults
	e.signalLocked()
	e.mu.Unlock()
	e.log.Info("qkdsim: faults set", "drop", f.Drop, "flip", f.Flip, "delay", f.Delay, "paused", e.link.Paused())
	return FaultState{
		End:     e.name,
		Drop:    uint32(f.Drop),
		Flip:    uint32(f.Flip),
		DelayMS: uint32(f.Delay / time.Millisecond),
		Pause:   e.link.Paused(),
	}
}
