package sqlite

import (
	"bytes"
	"errors"
	"testing"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/storetest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// TestStreamKeysReopen: a key's stream tag survives a restart.
func TestStreamKeysReopen(t *testing.T) {
	const ksid = "6b1f2e8a-470c-4f3d-9a52-11e07c3b905d"
	dir := t.TempDir()
	s := openAt(t, dir)
	ctx := t.Context()
	if err := s.AddBlock(ctx, keystore.Block{Link: link, Index: 1, Data: secret.From(storetest.Pattern(link, 1, 64))}); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmBlocks(ctx, link, []uint64{1}, 0); err != nil {
		t.Fatal(err)
	}
	plain, chunk := qkd.KeyID{1}, qkd.KeyID{2}
	slaves := []qkd.SAEID{slave}
	key := func(id qkd.KeyID, stream string) keystore.Key {
		return keystore.Key{ID: id, State: keystore.KeyReady, Master: master, Slaves: slaves, Pending: slaves, SizeBits: 256, Stream: stream}
	}
	if err := s.Allocate(ctx, keystore.Allocation{Link: link, Pieces: []keystore.Piece{{Index: 1, Len: 64}},
		Keys: []keystore.Key{key(chunk, ksid), key(plain, "")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir)
	pair := keystore.TakeRequest{Master: master, Slaves: slaves, Caller: slave, SizeBits: 256, Number: 2}
	if _, err := s.TakeForPair(ctx, pair); !errors.Is(err, qkd.ErrInsufficientKey) {
		t.Errorf("TakeForPair(2) after reopening = %v, want ErrInsufficientKey", err)
	}
	if list, err := s.ListKeys(ctx, keystore.KeyFilter{Master: master, Slaves: slaves}); err != nil || len(list) != 1 || list[0].ID != plain {
		t.Errorf("ListKeys after reopening = %v, %v; want only %s", list, err, plain)
	}
	pair.Number = 1
	if got, err := s.TakeForPair(ctx, pair); err != nil || got[0].ID != plain {
		t.Errorf("TakeForPair(1) after reopening = %v, %v; want %s", got, err, plain)
	}
	got, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{chunk}})
	if err != nil {
		t.Fatalf("TakeByID(chunk) after reopening = %v", err)
	}
	if got[0].Stream != ksid || !bytes.Equal(got[0].Data.Expose(), storetest.Pattern(link, 1, 64)[:32]) {
		t.Errorf("chunk after reopening: Stream %q (want %q), or other bytes", got[0].Stream, ksid)
	}
}
