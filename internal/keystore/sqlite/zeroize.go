package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/sealing"
)

// Zeroize implements keystore.Store: it destroys the KEK file first (after
// which no sealed row can be opened), wipes the KEKs in memory, then deletes
// every row, vacuums the database and truncates the WAL. From then on every
// method returns keystore.ErrZeroized; zeroizing again is not an error.
// A later Open starts an empty store with a new KEK. After Close, Zeroize
// falls back to ZeroizeFiles.
func (s *Store) Zeroize(ctx context.Context) error {
	s.stopFlusher()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.zeroized {
		return nil
	}
	s.zeroized = true
	s.durable.shut(keystore.ErrZeroized) // waits for a flush in progress
	s.cmu.Lock()
	s.gone = keystore.ErrZeroized
	s.counts = make(counts)
	clear(s.pendLinks)
	s.cmu.Unlock()
	if s.closed {
		s.log.Warn("key store zeroized (closed: files destroyed)")
		return ZeroizeFiles(s.path, s.kekFile)
	}
	// No take is served from the caches from now on; they are wiped, and
	// the journal goes with the rows it names.
	s.cmu.Lock()
	s.shutFast()
	s.pend, s.unleaseQ = nil, nil
	s.cmu.Unlock()
	jrn := s.jrn
	s.jrn = nil
	errKEK := sealing.DestroyFile(s.kekFile)
	s.ring.Wipe()
	var errJrn error
	if jrn != nil {
		errJrn = errors.Join(jrn.close(false), sealing.DestroyFile(jrn.path))
	}
	// The rows are unreadable already; removing them must not depend on the
	// caller's context, which may be the one being cancelled.
	ctx = context.WithoutCancel(ctx)
	errRows := s.inTx(ctx, 0, func(tx *txn) error {
		for _, t := range tables {
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+t); err != nil {
				return fmt.Errorf("keystore/sqlite: zeroize %s: %w", t, err)
			}
		}
		return nil
	})
	if _, err := s.db.ExecContext(ctx, "VACUUM"); err != nil {
		s.log.Warn("VACUUM after zeroisation failed", "err", err)
	}
	s.checkpoint(ctx)
	s.log.Warn("key store zeroized", "kek_destroyed", errKEK == nil)
	return errors.Join(errKEK, errRows, errJrn)
}

// ZeroizeFiles destroys a store that is not open (`qkms zeroize` with the
// node stopped): the KEK file is overwritten with zeros, synced and removed
// (kekFile defaults to path + ".kek"), then the database, its -wal and -shm
// files and the delivery journal are removed. Absent files are not an
// error.
func ZeroizeFiles(path, kekFile string) error {
	if kekFile == "" {
		kekFile = path + ".kek"
	}
	errs := []error{sealing.DestroyFile(kekFile), sealing.DestroyFile(kekFile + ".tmp")}
	jrn := journalPath(path)
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal", jrn, jrn + ".tmp"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("keystore/sqlite: remove %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
