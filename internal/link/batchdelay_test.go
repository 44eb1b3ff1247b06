package link

import (
	"context"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/secret"
)

// A batch waits not at all while the link has no confirmed material,
// BatchDelay below MaterialLowWater, IdleBatchDelay above; Ingest wakes
// the confirm loop for the first block and for a full batch only.
func TestBatchDelayFollowsMaterial(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	l, err := New(Options{ID: "A-B", Self: "A", Peer: "B", Store: st, Transport: noTransport{},
		BatchBlocks: 4, BatchDelay: time.Second, MaterialLowWater: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if l.o.IdleBatchDelay != 4*time.Second {
		t.Fatalf("IdleBatchDelay = %s, want 4 × BatchDelay", l.o.IdleBatchDelay)
	}
	ingest := func(i uint64) {
		t.Helper()
		if err := l.Ingest(ctx, i, secret.From(make([]byte, 1024))); err != nil {
			t.Fatal(err)
		}
	}
	woken := func() bool {
		select {
		case <-l.wakeConfirm:
			return true
		default:
			return false
		}
	}
	confirm := func(idx ...uint64) {
		t.Helper()
		if err := st.ConfirmBlocks(ctx, "A-B", idx, 0); err != nil {
			t.Fatal(err)
		}
	}
	if d := l.batchDelay(ctx); d != 0 {
		t.Fatalf("no material: delay %s, want 0", d)
	}
	ingest(0)
	if !woken() {
		t.Fatal("the first block did not wake the confirm loop")
	}
	ingest(1)
	ingest(2)
	if woken() {
		t.Fatal("a block short of a full batch woke the confirm loop")
	}
	ingest(3)
	if !woken() {
		t.Fatal("a full batch did not wake the confirm loop")
	}
	confirm(0)
	if d := l.batchDelay(ctx); d != time.Second {
		t.Fatalf("1 KiB confirmed: delay %s, want BatchDelay", d)
	}
	confirm(1, 2)
	if d := l.batchDelay(ctx); d != 4*time.Second {
		t.Fatalf("3 KiB confirmed: delay %s, want IdleBatchDelay", d)
	}
}
