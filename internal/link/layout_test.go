package link

import (
	"testing"

	"github.com/qkms/qkms/internal/itsmac"
)

func TestLayout(t *testing.T) {
	wc, err := newLayout(itsmac.SchemeWegmanCarter, 16)
	if err != nil {
		t.Fatal(err)
	}
	poly, _ := newLayout(itsmac.SchemePoly1305, 0)
	tests := []struct {
		seq        uint64
		slot, half uint64
	}{
		{0, 1, 0}, {1, 1, 1}, {2, 2, 0}, {15, 8, 1}, // epoch 0: hash key in slot 0
		{16, 10, 0}, {17, 10, 1}, {31, 17, 1}, // epoch 1: hash key in slot 9
		{32, 19, 0}, // epoch 2: hash key in slot 18
	}
	for _, tt := range tests {
		slot, half := wc.slotOf(tt.seq)
		if slot != tt.slot || uint64(half) != tt.half {
			t.Errorf("slotOf(%d) = %d, %d; want %d, %d", tt.seq, slot, half, tt.slot, tt.half)
		}
	}
	if got := wc.hashSlot(2); got != 18 {
		t.Errorf("hashSlot(2) = %d, want 18", got)
	}
	for _, y := range []layout{wc, poly} {
		for seq := range uint64(200) {
			slot, _ := y.slotOf(seq)
			if y.msgsBelow(slot) > seq || y.msgsBelow(slot+1) <= seq {
				t.Fatalf("wc=%v: msgsBelow(%d) = %d, msgsBelow(%d) = %d; message %d uses slot %d",
					y.wc, slot, y.msgsBelow(slot), slot+1, y.msgsBelow(slot+1), seq, slot)
			}
			if y.wc && slot == y.hashSlot(y.epochOf(seq)) {
				t.Fatalf("message %d uses its epoch's hash-key slot %d", seq, slot)
			}
		}
	}
	for _, n := range []int{-2, 0, 1, 3, 17} {
		if _, err := newLayout(itsmac.SchemeWegmanCarter, n); err == nil {
			t.Errorf("newLayout(wegman_carter, %d) = nil error", n)
		}
	}
	if _, err := newLayout(itsmac.Scheme(9), 16); err == nil {
		t.Error("newLayout(Scheme(9)) = nil error")
	}
}
