package rules

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// maxResizeKeys bounds each side of a resize.
const maxResizeKeys = 1 << 14

// CheckResize validates the shape of a resize (keystore.Store.ResizeKeys).
func CheckResize(r *keystore.Resize) error {
	switch {
	case r.ID == "" || r.Link == "" || r.Master == "":
		return bad("resize without ID, link or master")
	case len(r.Old) == 0 || len(r.New) == 0 || len(r.Old)+len(r.New) < 3:
		return bad("resize %q: %d keys into %d", r.ID, len(r.Old), len(r.New))
	case len(r.Old) > maxResizeKeys || len(r.New) > maxResizeKeys:
		return bad("resize %q: too many keys", r.ID)
	case r.Outbox != nil && r.Outbox.ID == "":
		return bad("outbox entry without ID")
	}
	seen := make(map[qkd.KeyID]bool, len(r.Old)+len(r.New))
	for _, id := range append(slices.Clone(r.Old), r.New...) {
		if id.IsZero() || seen[id] {
			return bad("resize %q: missing or repeated key ID", r.ID)
		}
		seen[id] = true
	}
	return nil
}

// CheckResizeOld checks the stored old keys of r (nil: absent), in r.Old's
// order, at now: see keystore.Store.ResizeKeys for the errors.
func CheckResizeOld(r *keystore.Resize, old []*keystore.Key, now time.Time) error {
	total := 0
	for i, k := range old {
		if k == nil || k.Stream != "" || Expired(k, now) || k.Link != r.Link || k.Master != r.Master || !slices.Equal(k.Slaves, r.Slaves) {
			return fmt.Errorf("keystore: resize %q: key %s: %w", r.ID, r.Old[i], qkd.ErrNotFound)
		}
		if k.State != keystore.KeyReady {
			return fmt.Errorf("keystore: resize %q: key %s is not ready: %w", r.ID, k.ID, keystore.ErrConflict)
		}
		if !slices.Equal(k.Pending, old[0].Pending) {
			return bad("resize %q: keys wait for different SAEs", r.ID)
		}
		if total > math.MaxInt32-k.SizeBits/8 {
			return bad("resize %q: too large", r.ID)
		}
		total += k.SizeBits / 8
	}
	if total%len(r.New) != 0 {
		return bad("resize %q: %d bytes do not make %d keys", r.ID, total, len(r.New))
	}
	return nil
}

// ResizedKeys returns the new keys of r made of the old keys' bytes
// (CheckResizeOld passed; old hold their Data). The new keys own fresh
// copies of the bytes: the caller wipes them once stored.
func ResizedKeys(r *keystore.Resize, old []*keystore.Key) []keystore.Key {
	total := 0
	created, expires := old[0].Created, time.Time{}
	for _, k := range old {
		total += k.Data.Len()
		if k.Created.Before(created) {
			created = k.Created
		}
		if !k.Expires.IsZero() && (expires.IsZero() || k.Expires.Before(expires)) {
			expires = k.Expires
		}
	}
	buf := make([]byte, 0, total)
	for _, k := range old {
		buf = append(buf, k.Data.Expose()...)
	}
	defer secret.Wipe(buf)
	state := keystore.KeyPending
	if r.Ready {
		state = keystore.KeyReady
	}
	size := total / len(r.New)
	out := make([]keystore.Key, len(r.New))
	for i, id := range r.New {
		out[i] = keystore.Key{ID: id, Link: r.Link, State: state, Master: r.Master,
			Slaves: slices.Clone(r.Slaves), Pending: slices.Clone(old[0].Pending), SizeBits: 8 * size,
			Data: secret.From(buf[i*size : (i+1)*size]), Created: created, Expires: expires}
	}
	return out
}

// MatchesFilter reports whether ListKeys returns k for f (never a key of a
// key stream).
func MatchesFilter(k *keystore.Key, f *keystore.KeyFilter) bool {
	return k.State == keystore.KeyReady && k.Stream == "" && !Expired(k, f.Now) && k.Master == f.Master &&
		(f.Link == "" || k.Link == f.Link) && (f.SizeBits == 0 || k.SizeBits == f.SizeBits) &&
		slices.Equal(k.Slaves, f.Slaves) && (f.Caller == "" || slices.Contains(k.Pending, f.Caller))
}
