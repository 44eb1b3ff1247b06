// Package etsi014test provides a fake of the key service behind the ETSI
// GS QKD 014 server, for tests and benchmarks only. The fake keeps the keys
// it hands out in memory so that a dec_keys after an enc_keys works, records
// every call, and keeps a reference to every key buffer it returned so a
// test can check that the server wiped them.
package etsi014test

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// Call is one recorded call of the fake.
type Call struct {
	Method  string    // "Status", "EncKeys" or "DecKeys"
	Caller  qkd.SAEID // the SAE of the client certificate
	SAE     qkd.SAEID // the path element: slave (Status, EncKeys) or master (DecKeys)
	Request kms.KeyRequest
	IDs     []qkd.KeyID
}

// KMS is a fake key service. The zero value is not ready: use New.
type KMS struct {
	mu     sync.Mutex
	status kms.Status           // guarded by mu; Master and Slave are set per call
	known  map[qkd.SAEID]bool   // guarded by mu; nil: every SAE is known
	err    error                // guarded by mu
	calls  []Call               // guarded by mu
	keys   map[qkd.KeyID]record // guarded by mu
	handed [][]byte             // guarded by mu: buffers given to the caller
}

// record is a key kept for dec_keys.
type record struct {
	master qkd.SAEID
	slaves []qkd.SAEID
	bytes  secret.Bytes
}

// New returns a fake whose status has key size 256 bits, at most 128 keys
// per request and sizes 64..1024 bits, and that knows every SAE.
func New() *KMS {
	return &KMS{
		status: kms.Status{
			SourceKME:        "KME_A",
			TargetKME:        "KME_B",
			KeySize:          256,
			StoredKeyCount:   25000,
			MaxKeyCount:      100000,
			MaxKeyPerRequest: 128,
			MaxKeySize:       1024,
			MinKeySize:       64,
			MaxSAEIDCount:    0,
		},
		keys: make(map[qkd.KeyID]record),
	}
}

// SetStatus sets the status answered (Master and Slave are filled in per call).
func (f *KMS) SetStatus(st kms.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = st
}

// SetKnown restricts the known SAEs; any other caller gets qkd.ErrUnknownSAE.
func (f *KMS) SetKnown(ids ...qkd.SAEID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.known = make(map[qkd.SAEID]bool, len(ids))
	for _, id := range ids {
		f.known[id] = true
	}
}

// SetErr makes every later call fail with err (nil: succeed again).
func (f *KMS) SetErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// Calls returns the calls so far, oldest first.
func (f *KMS) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Reset forgets the recorded calls and handed-out buffers (not the keys).
func (f *KMS) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.handed = nil, nil
}

// Handed returns how many key buffers the fake has returned.
func (f *KMS) Handed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.handed)
}

// CheckWiped returns an error if any key buffer the fake returned still
// holds a non-zero byte (the error never shows the bytes).
func (f *KMS) CheckWiped() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	dirty := 0
	for _, b := range f.handed {
		if slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
			dirty++
		}
	}
	if dirty > 0 {
		return fmt.Errorf("etsi014test: %d of %d returned key buffers not wiped", dirty, len(f.handed))
	}
	return nil
}

// begin records a call and returns the injected error, if any.
func (f *KMS) begin(c Call) error {
	f.calls = append(f.calls, c)
	if f.err != nil {
		return f.err
	}
	if f.known != nil && !f.known[c.Caller] {
		return fmt.Errorf("fake kms: caller %q: %w", c.Caller, qkd.ErrUnknownSAE)
	}
	return nil
}

// hand returns a copy of b for the caller and remembers its buffer.
func (f *KMS) hand(id qkd.KeyID, b secret.Bytes) kms.Key {
	c := b.Clone()
	f.handed = append(f.handed, c.Expose())
	return kms.Key{ID: id, Bytes: c}
}

// Status implements etsi014.KMS.
func (f *KMS) Status(_ context.Context, caller, slave qkd.SAEID) (kms.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(Call{Method: "Status", Caller: caller, SAE: slave}); err != nil {
		return kms.Status{}, err
	}
	st := f.status
	st.Master, st.Slave = caller, slave
	return st, nil
}

// EncKeys implements etsi014.KMS: Number (default 1) fresh random keys of
// Size bits (default the status key size), kept for DecKeys by the slave
// and the additional slaves. It enforces no limits.
func (f *KMS) EncKeys(_ context.Context, caller, slave qkd.SAEID, req kms.KeyRequest) ([]kms.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(Call{Method: "EncKeys", Caller: caller, SAE: slave, Request: req}); err != nil {
		return nil, err
	}
	n, size := max(req.Number, 1), req.Size
	if size == 0 {
		size = f.status.KeySize
	}
	keys := make([]kms.Key, 0, n)
	for range n {
		id, err := qkd.NewKeyID(nil)
		if err != nil {
			return nil, err
		}
		b, err := secret.Random(nil, size/8)
		if err != nil {
			return nil, err
		}
		slaves := append([]qkd.SAEID{slave}, req.AdditionalSlaves...)
		f.keys[id] = record{master: caller, slaves: slaves, bytes: b}
		keys = append(keys, f.hand(id, b))
	}
	return keys, nil
}

// DecKeys implements etsi014.KMS: the kept keys, each once, to a slave of
// the key under its master; qkd.ErrNotFound for an unknown ID or another
// master, qkd.ErrUnauthorized for a caller that is not a slave.
func (f *KMS) DecKeys(_ context.Context, caller, master qkd.SAEID, ids []qkd.KeyID) ([]kms.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(Call{Method: "DecKeys", Caller: caller, SAE: master, IDs: slices.Clone(ids)}); err != nil {
		return nil, err
	}
	for _, id := range ids {
		rec, ok := f.keys[id]
		if !ok || rec.master != master {
			return nil, qkd.ErrNotFound
		}
		if !slices.Contains(rec.slaves, caller) {
			return nil, qkd.ErrUnauthorized
		}
	}
	keys := make([]kms.Key, 0, len(ids))
	for _, id := range ids {
		rec := f.keys[id]
		delete(f.keys, id)
		keys = append(keys, f.hand(id, rec.bytes))
		rec.bytes.Wipe()
	}
	return keys, nil
}
