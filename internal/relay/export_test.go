package relay

import "github.com/qkms/qkms/internal/qkd"

// Spy makes e an honest-but-curious node for a test: relayed receives
// the plaintext keys of every step e forwards as an intermediate node,
// opened every hybrid secret R e recovers as a destination, with the
// header's transcript hash. Set before any traffic.
func Spy(e *Engine, relayed func(ids []qkd.KeyID, plain []byte), opened func(r, th []byte)) {
	e.spy = &spyHooks{relayed: relayed, opened: opened}
}

// WireHook makes e, as a destination, report the sizes of the hybrid
// header and the signed path of every step it receives.
func WireHook(e *Engine, f func(header, path int)) {
	if e.spy == nil {
		e.spy = &spyHooks{}
	}
	e.spy.wire = f
}
