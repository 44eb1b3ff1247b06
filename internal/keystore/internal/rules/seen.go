package rules

import (
	"math"
	"slices"

	"github.com/qkms/qkms/internal/keystore"
)

// Seen is a set of uint64 numbers kept as sorted, disjoint, non-adjacent
// inclusive ranges: the block indices or slot numbers ever stored. Numbers
// are mostly added in order, so it stays a handful of ranges.
type Seen []keystore.Range

// find returns the position of the last range with From <= x, or -1.
func (s Seen) find(x uint64) int {
	i, _ := slices.BinarySearchFunc(s, x, func(r keystore.Range, x uint64) int {
		switch {
		case r.From <= x:
			return -1
		default:
			return 1
		}
	})
	return i - 1
}

// Contains reports whether x is in the set.
func (s Seen) Contains(x uint64) bool {
	i := s.find(x)
	return i >= 0 && s[i].To >= x
}

// Overlaps reports whether any number of [from, to] is in the set.
func (s Seen) Overlaps(from, to uint64) bool {
	i := s.find(to)
	return i >= 0 && s[i].To >= from
}

// Add adds [from, to] (which must not overlap the set), merging neighbours.
func (s *Seen) Add(from, to uint64) {
	i := s.find(from) + 1 // insertion position
	r := keystore.Range{From: from, To: to}
	set := *s
	lo, hi := i, i
	if i > 0 && from > 0 && set[i-1].To == from-1 {
		r.From = set[i-1].From
		lo = i - 1
	}
	if i < len(set) && to < math.MaxUint64 && set[i].From == to+1 {
		r.To = set[i].To
		hi = i + 1
	}
	*s = slices.Replace(set, lo, hi, r)
}

// Max returns the highest number in the set; ok is false if it is empty.
func (s Seen) Max() (hi uint64, ok bool) {
	if len(s) == 0 {
		return 0, false
	}
	return s[len(s)-1].To, true
}
