package memstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("memstore: closed")

// Options configure a Store. The zero value is usable.
type Options struct {
	// Now is the clock for defaults (Arrived, Created, TakeRequest.Now);
	// time.Now if nil.
	Now func() time.Time
}

// Store is an in-memory keystore.Store.
type Store struct {
	now func() time.Time

	mu       sync.Mutex
	zeroized bool                     // guarded by mu
	closed   bool                     // guarded by mu
	links    map[qkd.LinkID]*link     // guarded by mu
	keys     map[qkd.KeyID]*keyRecord // guarded by mu
	outbox   map[string]*outboxRecord // guarded by mu
	relays   map[string]*relayRecord  // guarded by mu; by step ID
	resizes  map[string]time.Time     // guarded by mu; resize ID → when its record may go
	seq      uint64                   // guarded by mu; orders keys and outbox entries
	// pairs indexes keys by pairKey in insertion order, for TakeForPair;
	// deleted records are swept lazily. guarded by mu.
	pairs map[string][]*keyRecord
}

var _ keystore.Store = (*Store)(nil)

type link struct {
	blocks      map[uint64]*block
	seen        rules.Seen // every block index ever added
	initialised bool
	senders     map[qkd.NodeID]*sender
}

type block struct {
	state   keystore.BlockState
	off     int
	data    []byte // the original block; data[:off] is wiped
	arrived time.Time
}

type sender struct {
	slots map[uint64]secret.Bytes
	seen  rules.Seen // every slot number ever stored
}

type keyRecord struct {
	key  keystore.Key
	seq  uint64
	gone bool // deleted; still in pairs until swept
}

type outboxRecord struct {
	entry keystore.Outbox
	seq   uint64
}

// New returns an empty Store.
func New(opts Options) *Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{
		now:     opts.Now,
		links:   make(map[qkd.LinkID]*link),
		keys:    make(map[qkd.KeyID]*keyRecord),
		outbox:  make(map[string]*outboxRecord),
		relays:  make(map[string]*relayRecord),
		resizes: make(map[string]time.Time),
		pairs:   make(map[string][]*keyRecord),
	}
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

// link returns the state of l, creating it if create is set (nil otherwise).
func (s *Store) link(l qkd.LinkID, create bool) *link {
	st := s.links[l]
	if st == nil && create {
		st = &link{blocks: make(map[uint64]*block), senders: make(map[qkd.NodeID]*sender)}
		s.links[l] = st
	}
	return st
}

func (s *Store) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// Stats implements keystore.Store.
func (s *Store) Stats(ctx context.Context, l qkd.LinkID) (keystore.LinkStats, error) {
	if err := s.lock(ctx); err != nil {
		return keystore.LinkStats{}, err
	}
	defer s.mu.Unlock()
	st := keystore.LinkStats{Slots: make(map[qkd.NodeID]int)}
	if ls := s.link(l, false); ls != nil {
		for idx, b := range ls.blocks {
			rem := int64(len(b.data) - b.off)
			if b.state == keystore.BlockUnconfirmed {
				st.UnconfirmedBlocks++
				st.UnconfirmedBytes += rem
			} else {
				st.ConfirmedBytes[idx%2] += rem
			}
		}
		for id, snd := range ls.senders {
			if n := len(snd.slots); n > 0 {
				st.Slots[id] = n
			}
		}
		st.MaxIndex, st.HasIndex = ls.seen.Max()
	}
	for _, k := range s.keys {
		if k.key.Link != l {
			continue
		}
		if k.key.State == keystore.KeyReady {
			st.KeysReady++
		} else {
			st.KeysPending++
		}
	}
	return st, nil
}

// Zeroize implements keystore.Store: it wipes every buffer and forgets every
// record. Zeroizing twice is not an error.
func (s *Store) Zeroize(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wipeAll()
	s.zeroized = true
	return nil
}

// Close implements keystore.Store: it wipes every buffer like Zeroize; later
// calls return ErrClosed (or keystore.ErrZeroized after a Zeroize).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wipeAll()
	s.closed = true
	return nil
}

func (s *Store) wipeAll() {
	for _, ls := range s.links {
		for _, b := range ls.blocks {
			secret.Wipe(b.data)
		}
		for _, snd := range ls.senders {
			for _, m := range snd.slots {
				m.Wipe()
			}
		}
	}
	for _, k := range s.keys {
		k.key.Data.Wipe()
	}
	for _, r := range s.relays {
		secret.Wipe(r.data)
	}
	clear(s.relays)
	clear(s.resizes)
	clear(s.links)
	clear(s.keys)
	clear(s.outbox)
	clear(s.pairs)
}

// copyKey returns an independent copy of k (with Data if withData).
func copyKey(k *keystore.Key, withData bool) keystore.Key {
	c := *k
	c.Slaves = cloneSAEs(k.Slaves)
	c.Pending = cloneSAEs(k.Pending)
	c.Data = secret.Bytes{}
	if withData {
		c.Data = k.Data.Clone()
	}
	return c
}

func cloneSAEs(s []qkd.SAEID) []qkd.SAEID {
	if s == nil {
		return nil
	}
	return append([]qkd.SAEID(nil), s...)
}

// Sync implements keystore.Store: memory holds nothing across a crash, so
// every completed operation is as durable as it will ever be.
func (s *Store) Sync(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}
