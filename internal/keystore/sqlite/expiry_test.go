package sqlite

import (
	"testing"
	"time"
)

// TestExpireKeysIdle: once a store knows its earliest expiry, ExpireKeys
// before it writes nothing (an idle node asks every second); a key stored
// later with an earlier expiry is still deleted on time, and keys are
// deleted exactly when they expire.
func TestExpireKeysIdle(t *testing.T) {
	s := openAt(t, t.TempDir())
	ctx := t.Context()
	base := time.Now()
	late := readyKeys(t, s, 4, func(int) time.Time { return base.Add(time.Hour) })
	if gone, err := s.ExpireKeys(ctx, base); err != nil || len(gone) != 0 {
		t.Fatalf("ExpireKeys before any expiry = %d keys, %v", len(gone), err)
	}
	writes := s.durable.dirty.Load()
	for i := range 50 {
		if gone, err := s.ExpireKeys(ctx, base.Add(time.Duration(i)*time.Second)); err != nil || len(gone) != 0 {
			t.Fatalf("idle ExpireKeys = %d keys, %v", len(gone), err)
		}
	}
	if got := s.durable.dirty.Load(); got != writes {
		t.Fatalf("%d writes over 50 idle ExpireKeys, want none", got-writes)
	}
	soon := readyKeys(t, s, 2, func(int) time.Time { return base.Add(time.Minute) })
	if gone, err := s.ExpireKeys(ctx, base.Add(time.Minute-time.Nanosecond)); err != nil || len(gone) != 0 {
		t.Fatalf("ExpireKeys just before the new expiry = %d keys, %v", len(gone), err)
	}
	gone, err := s.ExpireKeys(ctx, base.Add(time.Minute))
	if err != nil || len(gone) != len(soon) {
		t.Fatalf("ExpireKeys at the new keys' expiry = %d keys, %v; want %d", len(gone), err, len(soon))
	}
	gone, err = s.ExpireKeys(ctx, base.Add(time.Hour))
	if err != nil || len(gone) != len(late) {
		t.Fatalf("ExpireKeys at the first keys' expiry = %d keys, %v; want %d", len(gone), err, len(late))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExpireKeys(ctx, base); err == nil {
		t.Fatal("ExpireKeys after Close succeeded")
	}
}
