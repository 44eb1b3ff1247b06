package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/sealing"
	"github.com/qkms/qkms/internal/qkd"
)

// Errors of this package (besides those of keystore).
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("keystore/sqlite: closed")
	// ErrSealed: a sealed column failed to open: tampered, swapped, or
	// sealed under a key epoch that was destroyed (sealing.ErrSealed).
	ErrSealed = sealing.ErrSealed
	// ErrKEKMissing: the database holds sealed records but the KEK file is gone.
	ErrKEKMissing = errors.New("keystore/sqlite: key-encryption key file missing")
	// ErrKEKFile: the KEK file is malformed or readable by others
	// (sealing.ErrKEKFile).
	ErrKEKFile = sealing.ErrKEKFile
)

// Options configure Open.
type Options struct {
	// Path of the database file (required).
	Path string
	// KEKFile is the key-encryption key file; Path + ".kek" if empty.
	KEKFile string
	// Synchronous is "normal" (default: a commit survives a process crash;
	// Sync makes everything so far survive power loss) or "full" (every
	// commit also survives power loss).
	Synchronous string
	// Now is the clock for defaults (Arrived, Created, TakeRequest.Now);
	// time.Now if nil.
	Now func() time.Time
	// Rand is the source of nonces and new KEKs; crypto/rand if nil.
	Rand io.Reader
	// Logger receives rotation and zeroisation events; discarded if nil.
	Logger *slog.Logger
}

// Store is a keystore.Store on SQLite. Create it with Open.
type Store struct {
	db      *sql.DB
	path    string
	kekFile string
	now     func() time.Time
	rand    io.Reader
	log     *slog.Logger
	durable *syncer // Sync's group commit (durable.go)
	// expiryHint: no key, relay record or resize record expires before it
	// (encTime; 0: unknown, look; math.MaxInt64: none expires). Lowered by
	// every insert, set by ExpireKeys, which skips its transaction while
	// now is before it: an idle node's once-a-second expiry costs nothing.
	expiryHint atomic.Int64

	mu       sync.Mutex
	ring     *sealing.Keyring // guarded by mu
	zeroized bool             // guarded by mu
	closed   bool             // guarded by mu
	// stmts: prepared statements by query (nil: could not be prepared);
	// wanted: queries met but not prepared yet. Guarded by mu.
	stmts  map[string]*sql.Stmt
	wanted map[string]bool

	// The fast path of TakeForPair (cache.go). cmu is taken after mu, or
	// alone; never mu while holding cmu.
	cmu        sync.Mutex
	caches     map[pairID]*pairCache    // guarded by cmu
	cachedIDs  map[qkd.KeyID]*pairCache // guarded by cmu
	pend       []delivery               // guarded by cmu: popped, not applied
	unleaseQ   []delivery               // guarded by cmu: evicted, unlease not written
	jrn        *journal                 // guarded by mu: every frame is written under mu
	fastErr    error                    // guarded by cmu: set, the fast path is shut
	onApplied  func(n int)              // test hook, called under cmu
	armed      chan struct{}            // first unapplied delivery
	full       chan struct{}            // flushBatch unapplied deliveries
	fill       map[pairID]int           // guarded by cmu: fill sizes (absent: minFill)
	perRequest int                      // guarded by cmu: fillPerRequest (tests that fix fill sizes set 0)
	refillQ    map[pairID]*pairCache    // guarded by cmu: caches to refill
	refillKick chan struct{}
	tidyAt     int64 // journalTidy (tests lower it); read under mu
	stop       chan struct{}
	loopDone   chan struct{}
	stopOnce   sync.Once

	// Statistics (stats.go).
	counts    counts             // guarded by cmu
	pendLinks map[qkd.LinkID]int // guarded by cmu: pend deliveries by key link
	gone      error              // guarded by cmu: ErrClosed or ErrZeroized once the store is
}

var _ keystore.Store = (*Store)(nil)

func (o *Options) setDefaults() error {
	if o.Path == "" {
		return errors.New("keystore/sqlite: no database path")
	}
	if o.KEKFile == "" {
		o.KEKFile = o.Path + ".kek"
	}
	switch o.Synchronous {
	case "":
		o.Synchronous = "normal"
	case "normal", "full":
	default:
		return fmt.Errorf("keystore/sqlite: synchronous %q is not normal or full", o.Synchronous)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func dsn(o Options) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "secure_delete(ON)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_pragma", "synchronous("+o.Synchronous+")")
	// Up to 16 MiB of page cache (grown only as the database is used): the
	// key indices are keyed by random IDs, and the default 2 MiB turns
	// their updates into pread(2) calls once a node holds ~10k keys.
	q.Add("_pragma", "cache_size(-16384)")
	// Temporary files (the statement journal every multi-row INSERT and
	// UPDATE writes, sorts) in memory: a temp file costs a write(2) per
	// page it holds, and its pages, sealed as they are, would outlive the
	// transaction on disk.
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Set("_txlock", "immediate")
	// A "file:" name is a URI to SQLite: escape the path so that '%', '?'
	// and '#' in it stay part of the file name.
	return "file:" + (&url.URL{Path: o.Path}).EscapedPath() + "?" + q.Encode()
}

// Open opens (creating if needed) the store at opts.Path with its KEK file,
// and rotates the KEK once, which authenticates every sealed row.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn(opts))
	if err != nil {
		return nil, fmt.Errorf("keystore/sqlite: open %s: %w", opts.Path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	s := &Store{db: db, path: opts.Path, kekFile: opts.KEKFile, now: opts.Now, rand: opts.Rand,
		log: opts.Logger.With("store", opts.Path), durable: newSyncer(opts.Path),
		stmts:  make(map[string]*sql.Stmt),
		wanted: make(map[string]bool),
		caches: make(map[pairID]*pairCache), cachedIDs: make(map[qkd.KeyID]*pairCache),
		fill: make(map[pairID]int), perRequest: fillPerRequest, refillQ: make(map[pairID]*pairCache),
		armed: make(chan struct{}, 1), full: make(chan struct{}, 1), refillKick: make(chan struct{}, 1),
		tidyAt: journalTidy, counts: make(counts), pendLinks: make(map[qkd.LinkID]int)}
	if err := s.init(ctx); err != nil {
		if s.ring != nil {
			s.ring.Wipe()
		}
		s.durable.shut(ErrClosed)
		if s.jrn != nil {
			_ = s.jrn.close(false)
		}
		s.closeStmts()
		_ = db.Close()
		return nil, err
	}
	s.stop, s.loopDone = make(chan struct{}), make(chan struct{})
	go s.flushLoop(s.stop, s.loopDone)
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := createSchema(ctx, s.db); err != nil {
		return err
	}
	// Deliveries a crash left in the journal are applied before anything
	// reads the keys.
	if err := s.replayJournal(ctx); err != nil {
		return err
	}
	jrn, err := openJournal(journalPath(s.path), &s.durable.fmu)
	if err != nil {
		return err
	}
	s.jrn = jrn
	s.durable.setJournal(jrn)
	s.durable.openWAL()
	ring, err := s.loadKeyring(ctx)
	if err != nil {
		return err
	}
	s.ring = ring
	if err := s.rotate(ctx); err != nil {
		return err
	}
	return s.loadCounts(ctx)
}

// lock takes mu and reports whether the store may be used; on error mu is
// released again.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case s.zeroized:
		s.mu.Unlock()
		return keystore.ErrZeroized
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// tx runs fn in one transaction (BEGIN IMMEDIATE) under mu and commits it
// if fn returns nil. The transaction first applies the deliveries of the
// fast path not applied yet (see run).
func (s *Store) tx(ctx context.Context, fn func(tx *txn) error) error {
	return s.txEvict(ctx, nil, fn)
}

// txEvict is tx that first evicts, under cmu, the cached keys fn may touch.
func (s *Store) txEvict(ctx context.Context, evict func(), fn func(tx *txn) error) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	return s.run(ctx, evict, fn)
}

// run is txEvict for callers that hold mu. The deliveries journaled so far
// are applied in the same transaction as fn, so fn sees the exact state,
// and forgotten once it commits; if fn fails they are applied on their own.
// fn may be nil (a flush). The statements run without ctx's cancellation:
// ctx was checked when mu was taken, and every operation is short.
func (s *Store) run(ctx context.Context, evict func(), fn func(tx *txn) error) error {
	recs := s.detach(evict)
	// The unleases of what was evicted go before anything else is written
	// (a failure is logged and shuts the fast path; the operation goes on).
	_ = s.writeUnleases()
	if fn == nil && len(recs) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	s.prepareWanted(ctx)
	err := s.inTx(ctx, len(recs), func(tx *txn) error {
		if err := s.applyDeliveries(ctx, tx, recs); err != nil {
			return err
		}
		if fn == nil {
			return nil
		}
		return fn(tx)
	})
	if err != nil && len(recs) > 0 && fn != nil {
		if ferr := s.inTx(ctx, len(recs), func(tx *txn) error { return s.applyDeliveries(ctx, tx, recs) }); ferr != nil {
			notify(s.armed) // the flusher retries
		}
	}
	return err
}

// inTx runs fn in one transaction; the caller holds mu (or owns s during
// Open). Once it commits, the statistics take its delta and the first
// applied deliveries of pend (which it applied) are forgotten, together.
func (s *Store) inTx(ctx context.Context, applied int, fn func(tx *txn) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("keystore/sqlite: begin: %w", err)
	}
	t := &txn{tx: tx, s: s, ctx: ctx}
	if err := fn(t); err != nil {
		_ = tx.Rollback()
		return err
	}
	err = tx.Commit()
	s.durable.touch()
	if err != nil {
		return fmt.Errorf("keystore/sqlite: commit: %w", err)
	}
	s.cmu.Lock()
	s.counts.add(t.delta)
	if applied > 0 {
		s.forgetAppliedLocked(applied)
	}
	s.cmu.Unlock()
	return nil
}

// Close applies the journaled deliveries, wipes the cached keys and the
// KEKs in memory and closes the database. The journal is removed once
// every delivery it records is applied and durable (a barrier); otherwise
// it is left to the replay of the next Open. Closing twice is not an
// error.
func (s *Store) Close() error {
	s.stopFlusher()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var errs []error
	remove := false
	if !s.zeroized {
		err := s.run(context.Background(), s.shutFast, nil)
		serr := s.durable.sync(context.Background())
		if serr != nil {
			serr = s.syncErr(serr)
		}
		errs = append(errs, err, serr)
		s.cmu.Lock()
		remove = err == nil && serr == nil && len(s.pend) == 0
		s.cmu.Unlock()
	}
	s.closed = true
	s.durable.shut(ErrClosed) // waits for a flush in progress
	s.cmu.Lock()
	s.pend, s.unleaseQ = nil, nil
	clear(s.pendLinks)
	if s.gone == nil {
		s.gone = ErrClosed
	}
	s.cmu.Unlock()
	if s.jrn != nil {
		errs = append(errs, s.jrn.close(remove))
		s.jrn = nil
	}
	if s.ring != nil {
		s.ring.Wipe()
	}
	s.closeStmts()
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}

// shutFast shuts the fast path and drops the caches (under cmu), queueing
// the unleases of their keys. A journal failure recorded before stays the
// reason.
func (s *Store) shutFast() {
	if s.fastErr == nil {
		s.fastErr = errStopped
	}
	s.dropAllLocked()
}

// enc maps a uint64 to an int64 with the same order (SQLite integers are
// signed): the top bit is flipped. Parity is kept.
func enc(u uint64) int64 { return int64(u ^ 1<<63) }

// dec is the inverse of enc.
func dec(i int64) uint64 { return uint64(i) ^ 1<<63 }

// encTime stores a time as Unix nanoseconds, the zero time as 0.
func encTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func decTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
