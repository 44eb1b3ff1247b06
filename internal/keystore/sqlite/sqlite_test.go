package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/storetest"
)

// openAt opens the store at dir/keys.db and closes it when the test ends.
func openAt(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(t.Context(), Options{Path: filepath.Join(dir, "keys.db")})
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) keystore.Store { return openAt(t, t.TempDir()) })
}
