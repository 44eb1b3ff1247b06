package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/sealing"
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
// share one fsync (group commit).
//
// Generations: callers join the next flush, one that has not started yet;
// it starts when the flush in progress (if any) ends, run by whichever of
// its callers gets there first, and every caller that joined it returns
// with its result. A caller never settles for a flush that was already
// running when it called: that flush may have read the files before the
// caller's writes.
//
// A call with nothing new to flush returns at once: the store counts its
// writes (dirty: every commit and every journal change, counted after the
// write(2)); a flush records the count it started at, and once it
// succeeds every write counted up to there is durable.
//
// A failed flush is final (until the store is opened again): the kernel
// may have dropped the dirty pages it could not write and marked them
// clean, so a later fsync that succeeds proves nothing about them, and WAL
// and journal replay both stop at the first damaged frame, so nothing
// written after them would be replayed either. Every later Sync returns
// the first error.
//
// The files: the WAL is kept open (a descriptor opened after a write-back
// error would not see it) and reopened if SQLite replaced it; the
// directory is synced whenever a WAL descriptor is opened, so that a new
// WAL's name is durable too (the journal syncs it when it creates or
// renames its file). fmu is held for a whole flush and by whoever closes
// or replaces a file, so a flush never meets a closed descriptor: Close
// and Zeroize shut the syncer (waiting for the flush in progress) before
// they close the journal, and a Sync that comes later returns ErrClosed or
// ErrZeroized.

// syncer coalesces fsyncs of the WAL and the journal.
type syncer struct {
	walPath string
	dir     string
	// dirty counts the store's writes (see touch).
	dirty atomic.Uint64
	// flush does the work of one flush; flushFiles but in tests.
	flush func() error

	mu      sync.Mutex
	next    *flushGen // guarded by mu: the flush callers join (not started), or nil
	running *flushGen // guarded by mu: the flush in progress, or nil
	clean   uint64    // guarded by mu: dirty as read when the last successful flush started
	failed  error     // guarded by mu: the first flush error, final
	gone    error     // guarded by mu and fmu: ErrClosed or ErrZeroized once shut
	// Test hooks, set before use: onJoin is called (under mu) when a
	// caller joins a flush that has not started, onFlushed (under mu)
	// when a flush succeeded.
	onJoin    func()
	onFlushed func()

	fmu sync.Mutex
	wal *os.File // guarded by fmu: the WAL, once it exists
	jrn *journal // guarded by fmu: the journal to flush, or nil
}

// flushGen is one flush and the callers that wait for it.
type flushGen struct {
	done    chan struct{} // closed when the flush ended
	started bool          // guarded by syncer.mu
	err     error         // set before done is closed
}

func newSyncer(dbPath string) *syncer {
	y := &syncer{walPath: dbPath + "-wal", dir: filepath.Dir(dbPath)}
	y.flush = y.flushFiles
	return y
}

// touch records a write (a commit or a change of the journal) that a
// later sync must flush. Called after the write.
func (y *syncer) touch() { y.dirty.Add(1) }

// sync returns nil once every write touched before the call is durable:
// after a flush that started after the call succeeded. It returns ctx's
// error if ctx ends first (the flush goes on for its other callers).
func (y *syncer) sync(ctx context.Context) error {
	y.mu.Lock()
	switch {
	case y.gone != nil:
		err := y.gone
		y.mu.Unlock()
		return err
	case y.failed != nil:
		err := y.failed
		y.mu.Unlock()
		return err
	case y.dirty.Load() == y.clean:
		y.mu.Unlock()
		return nil
	}
	g := y.next
	if g == nil {
		g = &flushGen{done: make(chan struct{})}
		y.next = g
	}
	if y.onJoin != nil {
		y.onJoin()
	}
	for !g.started {
		if y.running == nil {
			return y.run(g) // unlocks mu
		}
		// A flush is in progress: g starts when it ends.
		prev := y.running
		y.mu.Unlock()
		select {
		case <-prev.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		y.mu.Lock()
	}
	y.mu.Unlock()
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run runs the flush g (which is y.next, not started) and returns its
// result. Called with mu held; returns with it released.
func (y *syncer) run(g *flushGen) error {
	y.next = nil
	y.running = g
	g.started = true
	mark := y.dirty.Load()
	err := y.failed
	if err == nil {
		err = y.gone
	}
	if err == nil {
		y.mu.Unlock()
		err = y.flush()
		y.mu.Lock()
	}
	y.running = nil
	switch {
	case err == nil:
		y.clean = max(y.clean, mark)
		if y.onFlushed != nil {
			y.onFlushed()
		}
	case y.gone != nil:
		err = y.gone // shut while flushing: that is the reason
	case y.failed == nil:
		y.failed = err
	}
	g.err = err
	close(g.done)
	y.mu.Unlock()
	return err
}

// err returns the error every sync returns from now on (nil if none).
func (y *syncer) err() error {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.gone != nil {
		return y.gone
	}
	return y.failed
}

// flushFiles fsyncs the WAL and the journal.
func (y *syncer) flushFiles() error {
	y.fmu.Lock()
	defer y.fmu.Unlock()
	if y.gone != nil {
		return y.gone
	}
	if err := y.syncWAL(); err != nil {
		return err
	}
	if y.jrn != nil {
		if err := y.jrn.f.Sync(); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	return nil
}

// syncWAL fsyncs the WAL file, (re)opening it if it is new. Under fmu.
func (y *syncer) syncWAL() error {
	fi, err := os.Stat(y.walPath)
	if errors.Is(err, fs.ErrNotExist) {
		// No WAL: every commit is in the database file, which SQLite
		// synced when it checkpointed.
		y.closeWAL()
		return nil
	}
	if err != nil {
		return fmt.Errorf("WAL: %w", err)
	}
	if y.wal != nil {
		if cur, err := y.wal.Stat(); err != nil || !os.SameFile(fi, cur) {
			y.closeWAL()
		}
	}
	if y.wal == nil {
		f, err := os.Open(y.walPath)
		if err != nil {
			return fmt.Errorf("WAL: %w", err)
		}
		y.wal = f
		if err := sealing.SyncDir(y.dir); err != nil {
			return err
		}
	}
	if err := y.wal.Sync(); err != nil {
		return fmt.Errorf("WAL: %w", err)
	}
	return nil
}

func (y *syncer) closeWAL() {
	if y.wal != nil {
		_ = y.wal.Close()
		y.wal = nil
	}
}

// openWAL opens the WAL early (best effort): a write-back error is
// reported to descriptors that were open when it happened.
func (y *syncer) openWAL() {
	y.fmu.Lock()
	defer y.fmu.Unlock()
	if y.wal == nil {
		if f, err := os.Open(y.walPath); err == nil {
			y.wal = f
		}
	}
}

// setJournal makes j (nil: none) the journal that flushes sync.
func (y *syncer) setJournal(j *journal) {
	y.fmu.Lock()
	defer y.fmu.Unlock()
	y.jrn = j
}

// shut ends the syncer for good (Close: ErrClosed; Zeroize:
// keystore.ErrZeroized, which also replaces an earlier ErrClosed): it
// waits for the flush in progress, closes the WAL and forgets the journal,
// which the caller may close afterwards. Every later sync returns why.
func (y *syncer) shut(why error) {
	y.fmu.Lock()
	defer y.fmu.Unlock()
	y.mu.Lock()
	if y.gone == nil || errors.Is(why, keystore.ErrZeroized) {
		y.gone = why
	}
	y.mu.Unlock()
	y.closeWAL()
	y.jrn = nil
}

// Sync implements keystore.Store: every operation that returned before the
// call survives power loss once it returns nil. It does not wait for the
// store's lock, only for the flush. After Close it returns ErrClosed,
// after Zeroize keystore.ErrZeroized; once a flush failed, the error of
// that flush.
func (s *Store) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.barrier(ctx)
}

// barrier is Sync for the store's own callers.
func (s *Store) barrier(ctx context.Context) error {
	err := s.durable.sync(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClosed), errors.Is(err, keystore.ErrZeroized),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("keystore/sqlite: sync: %w", err)
}
