package device

// sequencer decides which notifications reach deliver: indices strictly
// increase, so no index is delivered twice and none after a newer one
// (RFC 7641 §3.4 allows reordered and repeated notifications; the index is
// what counts here, not the Observe sequence number). The 32-bit wire index
// is unwrapped to 64 bits with serial-number arithmetic (RFC 1982): a new
// index is taken to be within 2^31 of the next one expected.
type sequencer struct {
	next uint64 // lowest index still wanted
	have bool   // next is known (a block was delivered or a start was given)
}

func newSequencer(next uint64) sequencer { return sequencer{next: next, have: next > 0} }

// admit returns the 64-bit index of wire index idx, whether to deliver it,
// and how many indices were skipped before it (a gap).
func (s *sequencer) admit(idx uint32) (index uint64, ok bool, missing uint64) {
	if !s.have {
		return uint64(idx), true, 0
	}
	d := int32(idx - uint32(s.next))
	if d < 0 {
		return 0, false, 0
	}
	return s.next + uint64(d), true, uint64(d)
}

// delivered records that index went to deliver.
func (s *sequencer) delivered(index uint64) { s.next, s.have = index+1, true }
