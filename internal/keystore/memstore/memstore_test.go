package memstore_test

import (
	"testing"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/memstore"
	"github.com/qkms/qkms/internal/keystore/storetest"
)

func open(t *testing.T) keystore.Store {
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, open) }

func BenchmarkTakeForPair(b *testing.B) {
	storetest.BenchTakeForPair(b, memstore.New(memstore.Options{}))
}

func BenchmarkAddBlock(b *testing.B) {
	storetest.BenchAddBlock(b, memstore.New(memstore.Options{}))
}
