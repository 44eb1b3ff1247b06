package qkd

import "testing"

func TestPairName(t *testing.T) {
	tests := []struct {
		master SAEID
		slaves []SAEID
		want   string
	}{
		{"A1", []SAEID{"B1"}, "A1>B1"},
		{"A1", []SAEID{"C1", "B1"}, "A1>B1,C1"},
		{"A1", []SAEID{"B1", "C1"}, "A1>B1,C1"},
		{"B1", []SAEID{"A1"}, "B1>A1"},
	}
	for _, tt := range tests {
		if got := PairName(tt.master, tt.slaves); got != tt.want {
			t.Errorf("PairName(%s, %v) = %q, want %q", tt.master, tt.slaves, got, tt.want)
		}
	}
	s := []SAEID{"C1", "B1"}
	PairName("A1", s)
	if s[0] != "C1" {
		t.Error("PairName reordered its argument")
	}
}
