package sqlite

import (
	"testing"

	"github.com/qkms/qkms/internal/keystore/storetest"
)

func BenchmarkTakeForPair(b *testing.B) { storetest.BenchTakeForPair(b, openAt(b, b.TempDir())) }

func BenchmarkAddBlock(b *testing.B) { storetest.BenchAddBlock(b, openAt(b, b.TempDir())) }
