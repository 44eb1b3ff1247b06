package sqlite

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// gate is a flush that blocks until released: entered receives the
// flush's number (1, 2, ...) when it starts.
type gate struct {
	entered   chan int
	release   chan error
	started   atomic.Int64
	completed atomic.Int64
}

func newGate() *gate { return &gate{entered: make(chan int, 64), release: make(chan error)} }

func (g *gate) flush() error {
	n := int(g.started.Add(1))
	g.entered <- n
	err := <-g.release
	g.completed.Add(1)
	return err
}

// joins returns a channel that receives once per caller joining a flush.
func joins(y *syncer) chan struct{} {
	c := make(chan struct{}, 64)
	y.onJoin = func() { c <- struct{}{} }
	return c
}

// TestSyncerGenerations: callers that arrive while a flush runs share the
// next one, which starts only when the running one ended; none of them is
// answered by the flush that was running when it called.
func TestSyncerGenerations(t *testing.T) {
	y := newSyncer(t.TempDir() + "/x.db")
	g := newGate()
	y.flush = g.flush
	joined := joins(y)
	ctx := t.Context()

	y.touch()
	first := make(chan error, 1)
	go func() { first <- y.sync(ctx) }()
	<-joined
	if n := <-g.entered; n != 1 {
		t.Fatalf("flush %d started, want 1", n)
	}
	const waiters = 8
	y.touch() // written while flush 1 runs: flush 1 may not cover it
	results := make(chan error, waiters)
	for range waiters {
		go func() { results <- y.sync(ctx) }()
	}
	for range waiters {
		<-joined
	}
	g.release <- nil
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	if n := <-g.entered; n != 2 {
		t.Fatalf("flush %d started, want 2", n)
	}
	select {
	case err := <-results:
		t.Fatalf("a caller returned (%v) before the flush that started after its call ended", err)
	default:
	}
	g.release <- nil
	for range waiters {
		if err := <-results; err != nil {
			t.Fatalf("waiter: %v", err)
		}
	}
	if n := g.started.Load(); n != 2 {
		t.Errorf("%d flushes for %d callers, want 2", n, waiters+1)
	}
	// Nothing written since: answered at once, without a flush.
	if err := y.sync(ctx); err != nil || g.started.Load() != 2 {
		t.Errorf("sync with nothing new = %v after %d flushes, want nil after 2", err, g.started.Load())
	}
}

// TestSyncerAfterCall hammers the syncer: every caller returns only after
// a flush that started after it called has completed.
func TestSyncerAfterCall(t *testing.T) {
	y := newSyncer(t.TempDir() + "/x.db")
	var started, completed atomic.Int64
	y.flush = func() error {
		started.Add(1)
		completed.Add(1)
		return nil
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				// Read before the write: a flush that starts after the
				// write covers it, and sync may return on it (even at
				// once, if it completed before the call).
				before := started.Load()
				y.touch()
				if err := y.sync(t.Context()); err != nil {
					t.Error(err)
					return
				}
				if completed.Load() <= before {
					t.Errorf("sync returned with %d flushes completed, %d had started before the write", completed.Load(), before)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d flushes for %d calls", started.Load(), 8*500)
}

// TestSyncerFailure: a failed flush fails every caller that shares it, and
// every later call, without flushing again.
func TestSyncerFailure(t *testing.T) {
	y := newSyncer(t.TempDir() + "/x.db")
	g := newGate()
	y.flush = g.flush
	joined := joins(y)
	ctx := t.Context()
	boom := errors.New("boom")

	y.touch()
	results := make(chan error, 4)
	go func() { results <- y.sync(ctx) }()
	<-joined
	<-g.entered
	y.touch()
	for range 3 {
		go func() { results <- y.sync(ctx) }()
		<-joined
	}
	g.release <- nil // the first flush succeeds
	<-g.entered
	g.release <- boom // the second, shared by three, fails
	for i := range 4 {
		err := <-results
		if i > 0 && !errors.Is(err, boom) {
			t.Errorf("caller %d = %v, want %v", i, err, boom)
		}
	}
	y.touch()
	if err := y.sync(ctx); !errors.Is(err, boom) {
		t.Errorf("sync after a failure = %v, want %v", err, boom)
	}
	if err := y.err(); !errors.Is(err, boom) {
		t.Errorf("err() = %v, want %v", err, boom)
	}
	if n := g.started.Load(); n != 2 {
		t.Errorf("%d flushes, want 2 (none after the failure)", n)
	}
}

// TestSyncerCancel: a caller whose context ends stops waiting; the flush
// goes on for the others.
func TestSyncerCancel(t *testing.T) {
	y := newSyncer(t.TempDir() + "/x.db")
	g := newGate()
	y.flush = g.flush
	joined := joins(y)
	y.touch()
	first := make(chan error, 1)
	go func() { first <- y.sync(t.Context()) }()
	<-joined
	<-g.entered
	ctx, cancel := context.WithCancel(t.Context())
	y.touch()
	waiting := make(chan error, 1)
	go func() { waiting <- y.sync(ctx) }()
	<-joined
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller = %v, want context.Canceled", err)
	}
	g.release <- nil
	if err := <-first; err != nil {
		t.Error(err)
	}
	// The flush the cancelled caller joined was never started; the next
	// caller runs it.
	done := make(chan error, 1)
	go func() { done <- y.sync(t.Context()) }()
	<-joined
	<-g.entered
	g.release <- nil
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestSyncSharesFlushes: on a store, callers of Sync that arrive during a
// flush share one more flush, counted through the hook.
func TestSyncSharesFlushes(t *testing.T) {
	s := openAt(t, t.TempDir())
	ctx := t.Context()
	g := newGate()
	real := s.durable.flush
	s.durable.flush = func() error {
		if err := g.flush(); err != nil {
			return err
		}
		return real()
	}
	var flushed atomic.Int64
	s.durable.mu.Lock()
	joined := joins(s.durable)
	s.durable.onFlushed = func() { flushed.Add(1) }
	s.durable.mu.Unlock()

	readyKeys(t, s, 1, nil) // a commit to flush
	first := make(chan error, 1)
	go func() { first <- s.Sync(ctx) }()
	<-joined
	<-g.entered
	readyKeys(t, s, 1, nil)
	const callers = 16
	results := make(chan error, callers)
	for range callers {
		go func() { results <- s.Sync(ctx) }()
		<-joined
	}
	g.release <- nil
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	<-g.entered
	g.release <- nil
	for range callers {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if n := flushed.Load(); n != 2 {
		t.Errorf("%d flushes for %d callers of Sync, want 2", n, callers+1)
	}
}

// TestSyncClosed: Sync after Close returns ErrClosed, after Zeroize
// ErrZeroized (also after Close then Zeroize). A Sync whose flush is under
// way when the store ends: Close waits for it (and flushes once more
// itself), so it succeeds; Zeroize does not wait, and the flush, finding
// the files shut, returns ErrZeroized.
func TestSyncClosed(t *testing.T) {
	tests := []struct {
		name     string
		end      func(s *Store) error
		waits    bool  // end waits for the flush under way
		inFlight error // what the Sync under way returns
		after    error
	}{
		{"Close", func(s *Store) error { return s.Close() }, true, nil, ErrClosed},
		{"Zeroize", func(s *Store) error { return s.Zeroize(context.Background()) }, false, keystore.ErrZeroized, keystore.ErrZeroized},
		{"Close then Zeroize", func(s *Store) error {
			return errors.Join(s.Close(), s.Zeroize(context.Background()))
		}, true, nil, keystore.ErrZeroized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openAt(t, t.TempDir())
			readyKeys(t, s, 4, nil)
			g := newGate()
			real := s.durable.flush
			s.durable.flush = func() error {
				if err := g.flush(); err != nil {
					return err
				}
				return real()
			}
			inFlight := make(chan error, 1)
			go func() { inFlight <- s.Sync(t.Context()) }()
			<-g.entered
			ended := make(chan error, 1)
			if tt.waits {
				s.durable.mu.Lock()
				joined := joins(s.durable)
				s.durable.mu.Unlock()
				go func() { ended <- tt.end(s) }()
				<-joined // Close's own barrier waits behind the flush under way
				close(g.release)
			} else {
				ended <- tt.end(s)
				close(g.release)
			}
			if err := <-ended; err != nil {
				t.Fatal(err)
			}
			if err := <-inFlight; !errors.Is(err, tt.inFlight) {
				t.Errorf("Sync under way = %v, want %v", err, tt.inFlight)
			}
			if err := s.Sync(t.Context()); !errors.Is(err, tt.after) {
				t.Errorf("Sync after = %v, want %v", err, tt.after)
			}
		})
	}
}

// TestSyncRacesClose runs Sync and writes while the store is closed or
// zeroised under them: every call returns nil or why the store ended.
func TestSyncRacesClose(t *testing.T) {
	for _, zeroize := range []bool{false, true} {
		s := openAt(t, t.TempDir())
		ctx := t.Context()
		readyKeys(t, s, 64, nil)
		want := ErrClosed
		if zeroize {
			want = keystore.ErrZeroized
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					var err error
					if i%2 == 0 && w%2 == 0 {
						_, err = s.TakeForPair(ctx, pairReq(1))
						if errors.Is(err, qkd.ErrInsufficientKey) {
							err = nil
						}
					} else {
						err = s.Sync(ctx)
					}
					if err != nil && !errors.Is(err, want) {
						t.Errorf("during shutdown: %v", err)
						return
					}
					select {
					case <-stop:
						return
					default:
					}
				}
			})
		}
		// Some traffic first, then the end.
		for i := range 20 {
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.AddBlock(ctx, keystore.Block{Link: "X-Y", Index: uint64(i), Data: secret.From([]byte{1})}); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if zeroize {
			err = s.Zeroize(ctx)
		} else {
			err = s.Close()
		}
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestTakesAreDurable: keys delivered in a transaction (TakeByID, the slow
// path of TakeForPair) are returned only after a flush that started after
// their delivery was committed; if that flush fails the keys are not
// returned, are not delivered again, and no more keys are taken.
func TestTakesAreDurable(t *testing.T) {
	withLink := func(n int) keystore.TakeRequest {
		r := pairReq(n)
		r.Link = link
		return r
	}
	tests := []struct {
		name string
		take func(ctx context.Context, s *Store, keys []keystore.Key) ([]keystore.Key, error)
	}{
		{"TakeByID", func(ctx context.Context, s *Store, keys []keystore.Key) ([]keystore.Key, error) {
			return s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: ids(keys[:2])})
		}},
		{"TakeForPair with a link", func(ctx context.Context, s *Store, _ []keystore.Key) ([]keystore.Key, error) {
			return s.TakeForPair(ctx, withLink(2))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openQuiet(t, dir)
			ctx := t.Context()
			keys := readyKeys(t, s, 6, nil)
			var flushedAt []uint64 // dirty count each successful flush started at
			s.durable.mu.Lock()
			s.durable.onFlushed = func() { flushedAt = append(flushedAt, s.durable.clean) }
			s.durable.mu.Unlock()

			got, err := tt.take(ctx, s, keys)
			if err != nil {
				t.Fatal(err)
			}
			s.durable.mu.Lock()
			clean, dirty := s.durable.clean, s.durable.dirty.Load()
			n := len(flushedAt)
			s.durable.mu.Unlock()
			if n != 1 || clean != dirty {
				t.Errorf("after the take: %d flushes, %d of %d writes durable; want 1 flush covering every write", n, clean, dirty)
			}
			for _, k := range got {
				if rowsWithID(t, dir, k.ID) != 0 {
					t.Errorf("key %s returned but still in the database", k.ID)
				}
			}

			boom := errors.New("disk on fire")
			s.durable.flush = func() error { return boom }
			lost, err := tt.take(ctx, s, keys[2:])
			if !errors.Is(err, boom) || lost != nil {
				t.Fatalf("take with a failing flush = %d keys, %v; want none, %v", len(lost), err, boom)
			}
			left, err := s.CountKeys(ctx, pairReq(0))
			if err != nil {
				t.Fatal(err)
			}
			if left != 2 {
				t.Errorf("%d keys left after the failed take, want 2 (its 2 keys lost, not back)", left)
			}
			if _, err := tt.take(ctx, s, keys[4:]); !errors.Is(err, boom) {
				t.Errorf("take after the failure = %v, want %v", err, boom)
			}
			if again, err := s.CountKeys(ctx, pairReq(0)); err != nil || again != left {
				t.Errorf("keys after a take refused for the failed flush = %d, %v; want %d (nothing taken)", again, err, left)
			}
		})
	}
}
