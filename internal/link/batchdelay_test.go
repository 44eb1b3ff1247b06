package link

import (
	"context"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/secret"
)

// A batch waits not at all while either half of the link (each end's
// block parity) has no confirmed material, BatchDelay while one holds
// less than MaterialLowWater/2, IdleBatchDelay above; Ingest wakes
// the confirm loop for the first block and for a full batch only.
func TestBatchDelayFollowsMaterial(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	l, err := New(Options{ID: "A-B", Self: "A", Peer: "B", Store: st, Transport: noTransport{},
		BatchBlocks: 4, BatchDelay: time.Second, MaterialLowWater: 4096})
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
	if d := l.batchDelay(ctx); d != 0 {
		t.Fatalf("1 KiB confirmed, all of one end's half: delay %s, want 0 (the other end's half is empty)", d)
	}
	confirm(1)
	if d := l.batchDelay(ctx); d != time.Second {
		t.Fatalf("1 KiB in each half: delay %s, want BatchDelay", d)
	}
	confirm(2, 3)
	if d := l.batchDelay(ctx); d != 4*time.Second {
		t.Fatalf("2 KiB in each half: delay %s, want IdleBatchDelay", d)
	}
}
