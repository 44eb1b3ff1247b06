package streams

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/qkd"
)

// record is what is kept of a stream, also across restarts: no key
// material.
type record struct {
	KSID   etsi004.KSID `json:"ksid"`
	Source qkd.SAEID    `json:"source"` // master of the chunks; its node produces them
	Dest   qkd.SAEID    `json:"destination"`
	Link   qkd.LinkID   `json:"link"`
	QoS    etsi004.QoS  `json:"qos"`
	// SrcState and DstState: each end's state ("", open, closed).
	SrcState string `json:"source_state,omitempty"`
	DstState string `json:"destination_state,omitempty"`
	// Made: chunks reserved or relayed so far (at the source's node), or
	// relayed here (at the destination's node of a remote stream).
	Made spans `json:"made,omitempty"`
	// Remote: the ends are on nodes that are not neighbours (Link ""); the
	// source's node relays the chunks along the key stream Route, and
	// polls the destination by replaying its last step (Step, StepLink).
	// Want: the chunks below it were asked for by the destination's
	// application (both nodes).
	Remote   bool       `json:"remote,omitempty"`
	Route    string     `json:"route,omitempty"`
	Step     string     `json:"step,omitempty"`
	StepLink qkd.LinkID `json:"step_link,omitempty"`
	Want     uint32     `json:"want,omitempty"`
	// Registered: the source node registered Route for this stream with
	// QoSRouter.Stream004 and has not released it yet.
	Registered bool      `json:"registered,omitempty"`
	Changed    time.Time `json:"changed"`
	// Synced: the peer acknowledged this end's current state.
	Synced bool `json:"synced"`
}

func (r *record) localIsSource(local func(qkd.SAEID) bool) bool { return local(r.Source) }

// localApp is the application of this node's end.
func (r *record) localApp(local func(qkd.SAEID) bool) qkd.SAEID {
	if local(r.Source) {
		return r.Source
	}
	return r.Dest
}

func (r *record) localState(local func(qkd.SAEID) bool) string {
	if local(r.Source) {
		return r.SrcState
	}
	return r.DstState
}

func (r *record) setLocal(local func(qkd.SAEID) bool, st string) {
	if local(r.Source) {
		r.SrcState = st
	} else {
		r.DstState = st
	}
}

func (r *record) setPeer(local func(qkd.SAEID) bool, st string) {
	if local(r.Source) {
		r.DstState = st
	} else {
		r.SrcState = st
	}
}

func (r *record) peerState(local func(qkd.SAEID) bool) string {
	if local(r.Source) {
		return r.DstState
	}
	return r.SrcState
}

func (r *record) connected() bool {
	return r.SrcState == kmsproto.StreamOpen && r.DstState == kmsproto.StreamOpen
}

func (r *record) bothClosed() bool {
	return r.SrcState == kmsproto.StreamClosed && r.DstState == kmsproto.StreamClosed
}

// stream is a record with its runtime state.
type stream struct {
	rec     record        // guarded by Service.mu
	changed chan struct{} // guarded by Service.mu: closed and replaced on every change
	ver     uint64        // guarded by Service.mu: local changes so far

	prodMu sync.Mutex    // serialises production of chunks
	getSem chan struct{} // one GET_KEY at a time per stream (pacing)
	pace   pacer         // guarded by getSem
}

func newStream(r record) *stream {
	return &stream{rec: r, changed: make(chan struct{}), getSem: make(chan struct{}, 1)}
}

// notify wakes the waiters of st; call with Service.mu held.
func (st *stream) notify() {
	close(st.changed)
	st.changed = make(chan struct{})
}

const stateFile = "etsi004-streams.json"

// load reads the records saved in dir.
func load(dir string) ([]record, error) {
	if dir == "" {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	var recs []record
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("streams: %s: %w", stateFile, err)
	}
	return recs, nil
}

// save writes every record to the state file atomically (0600).
func (s *Service) save() error {
	if s.o.DataDir == "" {
		return nil
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	recs := make([]record, 0, len(s.streams))
	for _, st := range s.streams {
		recs = append(recs, st.rec)
	}
	s.mu.Unlock()
	b, err := json.MarshalIndent(recs, "", " ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(s.o.DataDir, stateFile), b); err != nil {
		return fmt.Errorf("streams: save: %w", err)
	}
	return nil
}

// writeAtomic replaces path with b: temporary file, fsync, rename, fsync
// of the directory.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".streams-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// persist saves and logs a failure (the state in memory stays right).
func (s *Service) persist() {
	if err := s.save(); err != nil {
		s.log.Error("key stream state not saved", "err", err)
	}
}
