package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/qkms/qkms/internal/keystore/sealing"
)

// loadKeyring reads the KEK file, or starts an empty keyring if neither the
// file nor sealed rows exist (the first rotation creates the file).
func (s *Store) loadKeyring(ctx context.Context) (*sealing.Keyring, error) {
	if err := sealing.DestroyFile(s.kekFile + ".tmp"); err != nil {
		return nil, err
	}
	ring, err := sealing.ReadFile(s.kekFile)
	if !errors.Is(err, fs.ErrNotExist) {
		return ring, err
	}
	epoch, err := metaEpoch(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if epoch != 0 {
		return nil, fmt.Errorf("%w: %s (rows are sealed under epoch %d)", ErrKEKMissing, s.kekFile, epoch)
	}
	return sealing.New(), nil
}
