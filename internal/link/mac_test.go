package link_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/link/linktest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// waitInitialPolls waits for the get_status both ends send at start, so
// that slot counts change only by the test's own messages afterwards.
func waitInitialPolls(t *testing.T, p *linktest.Pair) {
	t.Helper()
	// Each end's own poll answered, not just the peer's heard (which
	// also sets LastSeen): none is in flight when a test starts counting.
	linktest.WaitFor(t, "initial get_status", func() bool {
		sa, aa := p.PA.Numbers()
		sb, ab := p.PB.Numbers()
		return !p.A.PeerStatus().LastSeen.IsZero() && !p.B.PeerStatus().LastSeen.IsZero() &&
			sa >= 1 && sa == aa && sb >= 1 && sb == ab
	})
}

// lastSeq returns the message number of the last message A sent.
func lastSeq(t *testing.T, p *linktest.Pair) uint64 {
	t.Helper()
	h, ok := linktest.RequestHeader(p.PA.Last())
	if !ok {
		t.Fatal("the last message A sent does not decode")
	}
	return h.Seq
}

type bounds struct {
	lowest, next uint64
	count        int
}

func slotBounds(t *testing.T, s keystore.Store, sender qkd.NodeID) bounds {
	t.Helper()
	lo, next, n, err := s.SlotBounds(context.Background(), "A-B", sender)
	if err != nil {
		t.Fatal(err)
	}
	return bounds{lo, next, n}
}

// TestForgedMessageKeepsItsKeys: a tampered message is rejected and uses up
// nothing, whether its keys are in the store or (Wegman–Carter, second
// half of a slot) in memory; the genuine message then verifies once.
func TestForgedMessageKeepsItsKeys(t *testing.T) {
	forModes(t, linktest.Options{}, func(t *testing.T, p *linktest.Pair) {
		ctx := context.Background()
		waitInitialPolls(t, p)
		var mu sync.Mutex
		var genuine []byte
		p.PA.SetTamper(func(tp kmsproto.Type, b []byte) []byte {
			if tp != kmsproto.DeleteKeys {
				return b
			}
			mu.Lock()
			genuine = bytes.Clone(b)
			mu.Unlock()
			c := bytes.Clone(b)
			c[len(c)-1] ^= 0x80 // the tag's last byte
			return c
		})
		for i := range 4 { // two slots: both halves of each with Wegman–Carter
			// A different request each time: the same one would go again
			// as the identical message under the same number.
			if _, err := p.A.DeleteAtPeer(ctx, nil, fmt.Sprintf("forged %d", i)); !errors.Is(err, link.ErrUnauthenticated) {
				t.Fatalf("message %d with a bad tag = %v, want link.ErrUnauthenticated", i, err)
			}
			mu.Lock()
			g := genuine
			mu.Unlock()
			rep, err := p.PA.To.Handle(ctx, kmsproto.DeleteKeys, g)
			if err != nil {
				t.Fatalf("message %d: the genuine message after a forgery with its number = %v, want accepted", i, err)
			}
			if again, err := p.PA.To.Handle(ctx, kmsproto.DeleteKeys, g); err != nil || !bytes.Equal(again, rep) {
				t.Fatalf("message %d replayed = %v, want its first reply again (same: %v)", i, err, bytes.Equal(again, rep))
			}
		}
	})
}

// TestMACMismatchFailsClearly: ends with different schemes refuse each
// other's first message with ErrMACMismatch and use up no key.
func TestMACMismatchFailsClearly(t *testing.T) {
	tests := []struct{ a, b itsmac.Scheme }{
		{itsmac.SchemeWegmanCarter, itsmac.SchemePoly1305},
		{itsmac.SchemePoly1305, itsmac.SchemeWegmanCarter},
	}
	for _, tt := range tests {
		t.Run(tt.a.String()+"→"+tt.b.String(), func(t *testing.T) {
			p := linktest.NewPair(t, linktest.Options{MAC: tt.a, MACB: tt.b, MACEpoch: 16, Logger: testLogger(t)})
			ctx := context.Background()
			if got := p.A.MACScheme() + "," + p.B.MACScheme(); got != tt.a.String()+","+tt.b.String() {
				t.Fatalf("MACScheme() of A, B = %s", got)
			}
			before := slotBounds(t, p.SB, "A")
			if _, err := p.A.DeleteAtPeer(ctx, nil, "x"); !errors.Is(err, link.ErrUnauthenticated) {
				t.Fatalf("DeleteAtPeer across schemes = %v, want link.ErrUnauthenticated", err)
			}
			if _, err := p.PA.To.Handle(ctx, kmsproto.DeleteKeys, p.PA.LastOf(kmsproto.DeleteKeys)); !errors.Is(err, link.ErrMACMismatch) {
				t.Fatalf("Handle(message from the other scheme) = %v, want link.ErrMACMismatch", err)
			}
			if after := slotBounds(t, p.SB, "A"); after != before {
				t.Fatalf("refused messages changed the receiver's slots: %+v → %+v", before, after)
			}
		})
	}
}

// TestInternalBytesPerMessage measures the internal key material (MAC
// slots of keystore.SlotSize bytes) that messages use up, at both ends of
// the link, and checks that both ends account for the same slots.
func TestInternalBytesPerMessage(t *testing.T) {
	const msgs = 192
	tests := []struct {
		name     string
		mac      itsmac.Scheme
		epoch    int
		min, max float64 // bytes per message
	}{
		{"poly1305", itsmac.SchemePoly1305, 0, 64, 64},
		// 32 bytes of pads per message, plus one 64-byte hash-key slot per
		// epoch (the current and the previous epoch's are still held).
		{"wegman_carter epoch 16", itsmac.SchemeWegmanCarter, 16, 32 + 64.0*(msgs/16-2)/msgs, 32 + 64.0*(msgs/16+1)/msgs},
		{"wegman_carter epoch 1024", itsmac.SchemeWegmanCarter, 0, 32, 32 + 64.0/msgs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := linktest.NewPair(t, linktest.Options{PSKSlots: 256, MAC: tt.mac, MACEpoch: tt.epoch, Logger: testLogger(t)})
			ctx := context.Background()
			waitInitialPolls(t, p)
			before := slotBounds(t, p.SA, "A")
			sentBefore, _ := p.PA.Numbers()
			for i := range msgs {
				if _, err := p.A.DeleteAtPeer(ctx, nil, "count"); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			atA, atB := slotBounds(t, p.SA, "A"), slotBounds(t, p.SB, "A")
			if atA != atB {
				t.Fatalf("A's MAC slots differ between the ends: at A %+v, at B %+v", atA, atB)
			}
			if a, b := slotBounds(t, p.SA, "B"), slotBounds(t, p.SB, "B"); a != b {
				t.Fatalf("B's MAC slots differ between the ends: at A %+v, at B %+v", a, b)
			}
			// Every message A sealed meanwhile counts: a status poll of
			// its own may go out beside the test's messages.
			sentAfter, _ := p.PA.Numbers()
			sent := sentAfter - sentBefore
			perMsg := float64((before.count-atA.count)*keystore.SlotSize) / float64(sent)
			t.Logf("%s: %d messages used %d MAC slots: %.2f internal bytes per message (%d slots left)",
				tt.name, sent, before.count-atA.count, perMsg, atA.count)
			if perMsg < tt.min || perMsg > tt.max {
				t.Errorf("internal bytes per message = %.2f, want %.2f..%.2f", perMsg, tt.min, tt.max)
			}
			if tt.mac == itsmac.SchemeWegmanCarter && tt.epoch == 16 {
				// Epochs before the previous one are destroyed at both ends.
				e := lastSeq(t, p) / 16
				if keep := (e - 1) * 9; atA.lowest != keep {
					t.Errorf("lowest slot of A = %d, want %d (hash key of epoch %d)", atA.lowest, keep, e-1)
				}
			}
		})
	}
}

// TestRestartNeverReusesKeys: a restarted end (same store, nothing in
// memory) continues with new message numbers that the peer accepts.
func TestRestartNeverReusesKeys(t *testing.T) {
	for _, m := range macModes {
		t.Run(m.name, func(t *testing.T) {
			p := linktest.NewPair(t, linktest.Options{MAC: m.o.MAC, MACEpoch: m.o.MACEpoch, Logger: testLogger(t)})
			ctx := context.Background()
			waitInitialPolls(t, p)
			for range 3 { // the last one leaves half a slot in memory with Wegman–Carter
				if _, err := p.A.DeleteAtPeer(ctx, nil, "before"); err != nil {
					t.Fatal(err)
				}
			}
			last := lastSeq(t, p)
			a2, err := link.New(link.Options{ID: "A-B", Self: "A", Peer: "B", Store: p.SA, Transport: p.PA,
				PSK: secret.PSK{Bytes: secret.Make(2 * 32 * keystore.SlotSize)}, MAC: m.o.MAC, MACEpoch: m.o.MACEpoch,
				StatusInterval: time.Hour, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			if err := a2.Init(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a2.DeleteAtPeer(ctx, nil, "after"); err != nil {
				t.Fatalf("restarted end's message = %v", err)
			}
			if seq := lastSeq(t, p); seq <= last {
				t.Fatalf("restarted end sent number %d, want > %d", seq, last)
			}
		})
	}
}
