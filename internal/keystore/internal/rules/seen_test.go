package rules

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/keystore"
)

func TestSeen(t *testing.T) {
	var s Seen
	for _, r := range []keystore.Range{rg(5, 5), rg(7, 9), rg(6, 6), rg(0, 0), rg(2, 3), rg(math.MaxUint64, math.MaxUint64), rg(11, 20)} {
		if s.Overlaps(r.From, r.To) {
			t.Fatalf("Overlaps(%d, %d) = true before Add", r.From, r.To)
		}
		s.Add(r.From, r.To)
	}
	want := Seen{rg(0, 0), rg(2, 3), rg(5, 9), rg(11, 20), rg(math.MaxUint64, math.MaxUint64)}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Fatalf("Seen after adds (-want +got):\n%s", diff)
	}
	for x, in := range map[uint64]bool{0: true, 1: false, 4: false, 5: true, 9: true, 10: false, 15: true, 21: false, math.MaxUint64: true} {
		if got := s.Contains(x); got != in {
			t.Errorf("Contains(%d) = %v, want %v", x, got, in)
		}
	}
	if !s.Overlaps(10, 11) || s.Overlaps(21, 100) || !s.Overlaps(1, 2) {
		t.Errorf("Overlaps gives wrong answers on %v", s)
	}
	if m, ok := s.Max(); !ok || m != math.MaxUint64 {
		t.Errorf("Max() = %d, %v", m, ok)
	}
	s.Add(1, 1)
	s.Add(4, 4)
	s.Add(10, 10)
	if diff := cmp.Diff(Seen{rg(0, 20), rg(math.MaxUint64, math.MaxUint64)}, s); diff != "" {
		t.Fatalf("Seen after filling gaps (-want +got):\n%s", diff)
	}
}

func rg(from, to uint64) keystore.Range { return keystore.Range{From: from, To: to} }
