package qkdsim

import "time"

// Clock is the time source of a Link: production pacing, block age, the
// delay fault and heartbeats. Tests may drive it; the default is real time.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
