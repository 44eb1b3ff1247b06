package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/storetest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// stockKeys stores n Ready 256-bit keys of (master, [slave]) pending for
// slave, up to 1024 per block and allocation.
func stockKeys(b *testing.B, s *Store, n int) {
	b.Helper()
	ctx := context.Background()
	for n > 0 {
		chunk := min(n, 1024)
		n -= chunk
		readyKeysQuick(b, s, ctx, chunk)
	}
}

func readyKeysQuick(b *testing.B, s *Store, ctx context.Context, n int) {
	s.cmu.Lock()
	st := s.counts[link].stats(0)
	s.cmu.Unlock()
	idx := st.MaxIndex + 1
	if err := s.AddBlock(ctx, keystore.Block{Link: link, Index: idx, Data: secret.From(storetest.Pattern(link, idx, 32*n))}); err != nil {
		b.Fatal(err)
	}
	if err := s.ConfirmBlocks(ctx, link, []uint64{idx}, 0); err != nil {
		b.Fatal(err)
	}
	a := keystore.Allocation{Link: link, Pieces: []keystore.Piece{{Index: idx, Len: 32 * n}}}
	for range n {
		id, _ := qkd.NewKeyID(nil)
		a.Keys = append(a.Keys, keystore.Key{ID: id, State: keystore.KeyReady, Master: master, Slaves: []qkd.SAEID{slave},
			Pending: []qkd.SAEID{slave}, SizeBits: 256})
	}
	if err := s.Allocate(ctx, a); err != nil {
		b.Fatal(err)
	}
}

// countFlushes counts the syncer's successful flushes from now on.
func countFlushes(s *Store) *atomic.Int64 {
	var n atomic.Int64
	s.durable.mu.Lock()
	s.durable.onFlushed = func() { n.Add(1) }
	s.durable.mu.Unlock()
	return &n
}

// mapStore is the baseline: keys in a map under a mutex, popped one at a
// time.
type mapStore struct {
	mu   sync.Mutex
	keys map[qkd.KeyID]keystore.Key
	ids  []qkd.KeyID
}

func newMapStore(n int) *mapStore {
	m := &mapStore{keys: make(map[qkd.KeyID]keystore.Key, n), ids: make([]qkd.KeyID, n)}
	for i := range n {
		id, _ := qkd.NewKeyID(nil)
		m.ids[i] = id
		m.keys[id] = keystore.Key{ID: id, Master: master, Slaves: []qkd.SAEID{slave}, SizeBits: 256, Data: secret.From(make([]byte, 32))}
	}
	return m
}

func (m *mapStore) pop() []keystore.Key {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.ids[len(m.ids)-1]
	m.ids = m.ids[:len(m.ids)-1]
	k := m.keys[id]
	delete(m.keys, id)
	return []keystore.Key{k} // moved out, as a pop from a pair cache does
}

// BenchmarkTakeForPairLeased measures TakeForPair of one 256-bit key in
// steady state — pops from leased caches, background refills (each a lease
// fsynced), deliveries applied to the database — sequentially and from
// parallel callers, against the baseline of popping from a map under a
// mutex, in the same run. Metrics: fsyncs/op (lease and other flushes per
// take).
func BenchmarkTakeForPairLeased(b *testing.B) {
	for _, mode := range []string{"seq", "parallel"} {
		par := mode == "parallel"
		b.Run("map/"+mode, func(b *testing.B) {
			m := newMapStore(b.N + 1)
			b.ResetTimer()
			if !par {
				for range b.N {
					m.pop()[0].Data.Wipe()
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m.pop()[0].Data.Wipe()
				}
			})
		})
		b.Run("sqlite/"+mode, func(b *testing.B) {
			s := openAt(b, b.TempDir())
			stockKeys(b, s, b.N+64)
			flushes := countFlushes(s)
			ctx := context.Background()
			r := pairReq(1)
			take := func() {
				got, err := s.TakeForPair(ctx, r)
				if err != nil {
					b.Fatal(err)
				}
				got[0].Data.Wipe()
			}
			b.ResetTimer()
			if par {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						take()
					}
				})
			} else {
				for range b.N {
					take()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(flushes.Load())/float64(b.N), "fsyncs/op")
		})
	}
}

// BenchmarkTakeForPairPop measures a take served from a leased cache that
// holds enough keys (no refill, no flush during the measurement): the pop
// itself, against the map baseline of BenchmarkTakeForPairLeased.
func BenchmarkTakeForPairPop(b *testing.B) {
	const batch = maxFill / 2
	s := openQuiet(b, b.TempDir())
	setFill(s, pairReq(1), maxFill)
	ctx := context.Background()
	r := pairReq(1)
	for done := 0; done < b.N; {
		b.StopTimer()
		n := min(batch, b.N-done)
		stockKeys(b, s, n+1)
		got, err := s.TakeForPair(ctx, r) // slow path: fills the cache with n+1 keys, leased
		if err != nil {
			b.Fatal(err)
		}
		got[0].Data.Wipe()
		b.StartTimer()
		for range n {
			got, err := s.TakeForPair(ctx, r)
			if err != nil {
				b.Fatal(err)
			}
			got[0].Data.Wipe()
		}
		b.StopTimer()
		s.cmu.Lock()
		clear(s.refillQ) // refills are the flusher's; none runs here
		s.cmu.Unlock()
		if err := s.flush(ctx); err != nil {
			b.Fatal(err)
		}
		done += n
	}
}

// BenchmarkStats measures Stats of a link holding 10k keys, 1k blocks and
// 1k slots, from the counters, against counting the tables as Stats did
// before ("scan": one link's GROUP BY queries in a transaction).
func BenchmarkStats(b *testing.B) {
	s := openAt(b, b.TempDir())
	ctx := context.Background()
	stockKeys(b, s, 10_000)
	for i := range 1000 {
		idx := uint64(1_000_000 + i)
		if err := s.AddBlock(ctx, keystore.Block{Link: link, Index: idx, Data: secret.From(storetest.Pattern(link, idx, 64))}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.InitLink(ctx, keystore.LinkInit{Link: link, Slots: []keystore.SlotRange{{Sender: "A", Count: 1000}},
		Material: []secret.Bytes{secret.From(make([]byte, 1000*keystore.SlotSize))}}); err != nil {
		b.Fatal(err)
	}
	b.Run("counters", func(b *testing.B) {
		for range b.N {
			if _, err := s.Stats(ctx, link); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for range b.N {
			if err := s.tx(ctx, func(tx *txn) error {
				for _, q := range []string{
					"SELECT state, idx & 1, COUNT(*), SUM(size - off) FROM blocks WHERE link = ? GROUP BY state, idx & 1",
					"SELECT state, COUNT(*) FROM keys WHERE link = ? GROUP BY state",
					"SELECT sender, COUNT(*) FROM slots WHERE link = ? GROUP BY sender",
				} {
					if _, err := eachRow(ctx, tx, func(*sql.Rows) error { return nil }, q, string(link)); err != nil {
						return err
					}
				}
				_, _, err := blockSet(link).max(ctx, tx)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSync measures the barrier after a commit: "commit" is the
// baseline (a one-byte AddBlock), "commit+sync" adds Sync after each, and
// "commit+sync/parallel" runs that from 8 callers per CPU, which share
// flushes. Metric: fsyncs/op (flushes of WAL and journal per call).
func BenchmarkSync(b *testing.B) {
	run := func(b *testing.B, sync, par bool) {
		s := openAt(b, b.TempDir())
		ctx := context.Background()
		var idx atomic.Uint64
		flushes := countFlushes(s)
		op := func() {
			i := idx.Add(1)
			if err := s.AddBlock(ctx, keystore.Block{Link: link, Index: i, Data: secret.From([]byte{byte(i)})}); err != nil {
				b.Fatal(err)
			}
			if sync {
				if err := s.Sync(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ResetTimer()
		if par {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					op()
				}
			})
		} else {
			for range b.N {
				op()
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(flushes.Load())/float64(b.N), "fsyncs/op")
	}
	b.Run("commit", func(b *testing.B) { run(b, false, false) })
	b.Run("commit+sync", func(b *testing.B) { run(b, true, false) })
	b.Run("commit+sync/parallel", func(b *testing.B) { run(b, true, true) })
}
