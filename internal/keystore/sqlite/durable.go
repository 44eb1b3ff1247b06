package sqlite

import (
	"context"
	"fmt"
	"os"
	"sync"
)

// The durability barrier (keystore.Store.Sync).
//
// The database runs in WAL mode. With synchronous=normal a commit writes
// its frames to the WAL with write(2) and returns: the commit survives a
// process crash (the page cache is the kernel's) but not power loss, which
// may lose a suffix of the commits — never reorder them, WAL replay stops
// at the first frame whose checksum fails. Sync makes every commit so far
// durable by fsync(2) of the WAL file and of the delivery journal, which
// is exactly what synchronous=full does after each commit; but Sync runs
// only where one-time material leaves the node, and concurrent callers
// share one fsync (group commit): a caller waits for the flush in progress
// and, if that flush started before its own commit, for one more.

// syncer coalesces fsyncs of the WAL and the journal.
type syncer struct {
	wal string // path of the WAL file

	mu      sync.Mutex
	cond    *sync.Cond
	gen     uint64 // guarded by mu: generation of the next flush to start
	done    uint64 // guarded by mu: generations below done are flushed
	running bool   // guarded by mu
	err     error  // guarded by mu: the last flush's error
}

func newSyncer(dbPath string) *syncer {
	y := &syncer{wal: dbPath + "-wal"}
	y.cond = sync.NewCond(&y.mu)
	return y
}

// sync flushes everything written before it was called; flush does the
// work (fsync of the files) and is run by one caller at a time.
func (y *syncer) sync(flush func() error) error {
	y.mu.Lock()
	defer y.mu.Unlock()
	// A flush that is running may have started before our writes: we need
	// one that starts after this point.
	want := y.gen + 1
	for y.done < want {
		if !y.running {
			y.running = true
			y.gen++
			g := y.gen
			y.mu.Unlock()
			err := flush()
			y.mu.Lock()
			y.running = false
			y.done = g
			y.err = err
			y.cond.Broadcast()
			if g >= want {
				return err
			}
			continue
		}
		y.cond.Wait()
	}
	return y.err
}

// fsyncPath flushes the file at path to stable storage; a file that does
// not exist (no WAL yet) has nothing to flush.
func fsyncPath(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Sync implements keystore.Store: every operation that returned before the
// call survives power loss once it returns nil.
func (s *Store) Sync(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	s.mu.Unlock()
	err := s.durable.sync(func() error {
		if err := fsyncPath(s.durable.wal); err != nil {
			return err
		}
		s.cmu.Lock()
		j := s.jrn
		s.cmu.Unlock()
		if j != nil {
			return j.f.Sync()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keystore/sqlite: sync: %w", err)
	}
	return nil
}
