package qkdsim

import (
	"math"
	"time"
)

// CoAP over UDP must not reuse a message ID towards the same endpoint within
// EXCHANGE_LIFETIME (RFC 7252 §4.5, §4.8.2): the receiver would take the new
// message for a duplicate. go-coap does exactly that — it answers from its
// duplicate cache and never hands the notification to the application — so
// a device that sent more than 65536 confirmable notifications to one KMS in
// 247 s would lose key silently. midWindow keeps an end under that bound.
const (
	exchangeLifetime = 247 * time.Second
	windowSec        = int64(exchangeLifetime/time.Second) + 1
)

// MaxUDPBurst is the most confirmable messages an end sends to its KMS over
// UDP within EXCHANGE_LIFETIME; it leaves room under 2^16 message IDs for
// the end's other messages. Beyond it an end slows to ≈ 240 messages/s.
const MaxUDPBurst = 60000

// midWindow counts confirmable messages per second over the last
// EXCHANGE_LIFETIME (plus one second, rounding up).
type midWindow struct {
	secs   [windowSec]int64
	counts [windowSec]uint32
}

// reserve counts one message sent at now and returns 0, or, when the window
// is full, counts nothing and returns how long to wait before trying again.
func (w *midWindow) reserve(now time.Time) time.Duration {
	s := now.Unix()
	total, oldest := 0, int64(math.MaxInt64)
	for i, sec := range w.secs {
		if w.counts[i] > 0 && sec > s-windowSec {
			total += int(w.counts[i])
			oldest = min(oldest, sec)
		}
	}
	if total >= MaxUDPBurst {
		return time.Unix(oldest+windowSec, 0).Sub(now)
	}
	slot := (s%windowSec + windowSec) % windowSec
	if w.secs[slot] != s {
		w.secs[slot], w.counts[slot] = s, 0
	}
	w.counts[slot]++
	return 0
}
