package etsi004

import (
	"errors"
	"testing"
)

func TestAppID(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"SAE_A1", "SAE_A1", false},
		{"sae://SAE_A1", "SAE_A1", false},
		{"client://SAE_A1/path?x=1", "SAE_A1", false},
		{"server://qkd_server_alice", "qkd_server_alice", false},
		{"sae://user:pass@SAE_B1", "SAE_B1", false},
		{"", "", true},
		{"sae://", "", true},
		{"a b", "", true},
		{"x\x00y", "", true},
	}
	for _, tt := range tests {
		got, err := AppID(tt.in)
		if (err != nil) != tt.wantErr || string(got) != tt.want {
			t.Errorf("AppID(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Errorf("AppID(%q) error %v does not wrap ErrBadRequest", tt.in, err)
		}
	}
}

func TestKSID(t *testing.T) {
	a, err := NewKSID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewKSID()
	if a.IsNull() || a == b || a[6]>>4 != 4 || a[8]>>6 != 2 {
		t.Fatalf("NewKSID gave %v and %v: want distinct version 4 UUIDs", a, b)
	}
	p, err := ParseKSID(a.String())
	if err != nil || p != a {
		t.Fatalf("ParseKSID(%s) = %v, %v", a, p, err)
	}
	if _, err := ParseKSID("not-a-uuid"); err == nil {
		t.Fatal("ParseKSID accepted garbage")
	}
	if !(KSID{}).IsNull() || StatusQoSNotMet.String() != "requested QoS could not be met" || Status(42).String() != "status 42" {
		t.Fatal("IsNull or String wrong")
	}
}
