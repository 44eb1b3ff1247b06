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
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/qkms/qkms/internal/keystore"
)

// Errors of this package (besides those of keystore).
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("keystore/sqlite: closed")
	// ErrSealed: a sealed column failed to open: tampered, swapped, or
	// sealed under a key epoch that was destroyed.
	ErrSealed = errors.New("keystore/sqlite: sealed record cannot be opened")
	// ErrKEKMissing: the database holds sealed records but the KEK file is gone.
	ErrKEKMissing = errors.New("keystore/sqlite: key-encryption key file missing")
	// ErrKEKFile: the KEK file is malformed or readable by others.
	ErrKEKFile = errors.New("keystore/sqlite: bad key-encryption key file")
)

// Options configure Open.
type Options struct {
	// Path of the database file (required).
	Path string
	// KEKFile is the key-encryption key file; Path + ".kek" if empty.
	KEKFile string
	// Synchronous is "normal" (default: a commit survives a process crash)
	// or "full" (a commit also survives power loss).
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

	mu       sync.Mutex
	ring     *keyring // guarded by mu
	zeroized bool     // guarded by mu
	closed   bool     // guarded by mu
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
		log: opts.Logger.With("store", opts.Path)}
	if err := s.init(ctx); err != nil {
		if s.ring != nil {
			s.ring.wipe()
		}
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := createSchema(ctx, s.db); err != nil {
		return err
	}
	ring, err := s.loadKeyring(ctx)
	if err != nil {
		return err
	}
	s.ring = ring
	return s.rotate(ctx)
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
// if fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	return s.inTx(ctx, fn)
}

// inTx is tx for callers that hold mu.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("keystore/sqlite: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("keystore/sqlite: commit: %w", err)
	}
	return nil
}

// Close closes the database and wipes the KEKs in memory. Closing twice is
// not an error.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.ring != nil {
		s.ring.wipe()
	}
	return s.db.Close()
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
