package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/storetest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// BenchmarkKeyCycle measures what a node's store does per key delivered
// through enc_keys in steady state: the key is reserved (Allocate, Pending,
// in batches of 1024 with a TTL, as the KMS restocks), made Ready
// (SetKeysReady), and taken one by one (TakeForPair), with a pool of about
// 8k keys standing. Reported per key.
func BenchmarkKeyCycle(b *testing.B) {
	s := openAt(b, b.TempDir())
	ctx := context.Background()
	const batch = 1024
	now := time.Now()
	idx := uint64(0)
	reserve := func() {
		data := secret.From(storetest.Pattern(link, idx, 32*batch))
		if err := s.AddBlock(ctx, keystore.Block{Link: link, Index: idx, Data: data}); err != nil {
			b.Fatal(err)
		}
		if err := s.ConfirmBlocks(ctx, link, []uint64{idx}, 0); err != nil {
			b.Fatal(err)
		}
		a := keystore.Allocation{Link: link, Pieces: []keystore.Piece{{Index: idx, Len: 32 * batch}}}
		ids, _ := qkd.NewKeyIDs(nil, batch) // as link.Reserve names them
		for i := range ids {
			a.Keys = append(a.Keys, keystore.Key{ID: ids[i], Master: master, Slaves: []qkd.SAEID{slave},
				Pending: []qkd.SAEID{master}, SizeBits: 256, Created: now, Expires: now.Add(time.Hour)})
		}
		a.Outbox = &keystore.Outbox{ID: ids[0].String(), Payload: make([]byte, 64)}
		if err := s.Allocate(ctx, a); err != nil {
			b.Fatal(err)
		}
		if err := s.SetKeysReady(ctx, ids, a.Outbox.ID); err != nil {
			b.Fatal(err)
		}
		idx++
	}
	for range 8 {
		reserve()
	}
	r := keystore.TakeRequest{Master: master, Caller: master, Slaves: []qkd.SAEID{slave}, SizeBits: 256, Number: 1}
	b.ResetTimer()
	for i := range b.N {
		if i%batch == 0 {
			reserve()
		}
		r.Now = now
		got, err := s.TakeForPair(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		got[0].Data.Wipe()
	}
	b.StopTimer()
	if err := s.flush(ctx); err != nil {
		b.Fatal(err)
	}
}
