package device

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSequencer(t *testing.T) {
	type step struct {
		wire    uint32
		index   uint64
		ok      bool
		missing uint64
	}
	tests := []struct {
		name  string
		start uint64
		steps []step
	}{
		{"in order", 0, []step{{0, 0, true, 0}, {1, 1, true, 0}, {2, 2, true, 0}}},
		{"first block anywhere", 0, []step{{500, 500, true, 0}, {501, 501, true, 0}}},
		{"duplicate", 0, []step{{0, 0, true, 0}, {1, 1, true, 0}, {1, 0, false, 0}, {2, 2, true, 0}}},
		{"reordered", 0, []step{{4, 4, true, 0}, {6, 6, true, 1}, {5, 0, false, 0}, {7, 7, true, 0}}},
		{"gap", 0, []step{{0, 0, true, 0}, {10, 10, true, 9}}},
		{"wrap", 0, []step{{math.MaxUint32 - 1, math.MaxUint32 - 1, true, 0}, {math.MaxUint32, math.MaxUint32, true, 0},
			{0, 1 << 32, true, 0}, {math.MaxUint32, 0, false, 0}, {1, 1<<32 + 1, true, 0}}},
		{"resume after restart", 1<<32 + 5, []step{{3, 0, false, 0}, {5, 1<<32 + 5, true, 0}, {9, 1<<32 + 9, true, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSequencer(tt.start)
			var got, want []step
			for _, st := range tt.steps {
				index, ok, missing := s.admit(st.wire)
				if ok {
					s.delivered(index)
				} else {
					index = 0
				}
				got = append(got, step{st.wire, index, ok, missing})
				want = append(want, st)
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(step{})); diff != "" {
				t.Errorf("admit (-want +got):\n%s", diff)
			}
		})
	}
}
