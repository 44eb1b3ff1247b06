package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/keystore/sealing"
	"github.com/qkms/qkms/internal/qkd"
)

// The delivery journal (Options.Path + ".journal", mode 0600) makes the
// fast path of TakeForPair durable without a database transaction per
// take: keys are leased in bulk. Before keys enter a pair cache (cache.go)
// one frame names them all and their caller — no key bytes — and is made
// durable (fsync, through the syncer) before any of them can be popped; a
// pop then does no I/O at all: the lease is the durable mark of the
// delivery. A key that leaves a cache without being popped (another
// operation touches it, it expired, a refill dropped it, the store closes)
// is given back by an unlease frame, appended later (not synced: see
// below). A later transaction applies the popped keys' deliveries to the
// database (the rows are deleted, under secure_delete).
//
// Frame:
//
//	kind (0xA7 lease, 0xA5 unlease) | count uint32 BE | caller length uint16 BE | caller | count × key ID [16] | CRC-32C of all before
//
// A frame is written with one write(2). Replay (Open) reads the frames in
// order up to the first torn or corrupt one: a lease marks its keys
// delivered to its caller, a later unlease of a key by the same caller
// takes that back, and what is leased at the end is applied to the
// database as delivered, in one transaction, made durable before the
// journal is emptied. So a crash — or power loss — burns what was leased
// but not popped, and never brings back a key that was popped:
//   - a lease is durable before any of its keys is popped (a torn lease
//     served nothing);
//   - an unlease that is lost (power loss before the next fsync of the
//     journal) leaves its keys leased: they are burnt, the safe direction;
//   - frames are written under the store's lock, and an unlease is written
//     before any later frame (cache.go), so replay in file order sees a
//     key's last lease after its earlier unleases;
//   - applying a delivery is idempotent (the caller leaves the key's
//     Pending list, the key is deleted when the list is empty, an absent
//     key is skipped), so the journal may keep leases of keys applied
//     long ago; it is rewritten with the live leases only (tidyJournal)
//     after a barrier made every delivery applied so far durable.
//
// Frames of earlier versions (0xA7, one per take, naming delivered keys)
// read as leases, which is what they meant.

const (
	frameLease   = 0xA7
	frameUnlease = 0xA5
	frameHead    = 1 + 4 + 2
	frameTail    = 4
	maxCaller    = 1<<16 - 1
	idSize       = len(qkd.KeyID{})
	journalTidy  = 64 << 10 // rewrite a journal that grows past this (and past twice its live leases)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// delivery is the delivery of key id to caller: popped from a lease and
// not yet applied to the database (pend), or replayed.
type delivery struct {
	id     qkd.KeyID
	caller qkd.SAEID
	link   qkd.LinkID // the key's link, for Stats (pend only; not journaled)
}

// entry is one key of a journal frame.
type entry struct {
	id      qkd.KeyID
	caller  qkd.SAEID
	unlease bool
}

// appendFrame appends the frame of kind (frameLease, frameUnlease) naming
// ids and caller.
func appendFrame(b []byte, kind byte, caller qkd.SAEID, ids []qkd.KeyID) []byte {
	start := len(b)
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(caller)))
	b = append(b, caller...)
	for i := range ids {
		b = append(b, ids[i][:]...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// frameSize is the size of a frame naming n keys for caller.
func frameSize(caller qkd.SAEID, n int) int64 {
	return int64(frameHead + len(caller) + n*idSize + frameTail)
}

// parseFrames returns the entries of the whole, valid frames at the start
// of b and how many bytes they cover; it stops at the first torn or
// corrupt frame.
func parseFrames(b []byte) ([]entry, int) {
	var out []entry
	off := 0
	for {
		rest := b[off:]
		if len(rest) < frameHead+frameTail || (rest[0] != frameLease && rest[0] != frameUnlease) {
			return out, off
		}
		n := uint64(binary.BigEndian.Uint32(rest[1:]))
		cl := uint64(binary.BigEndian.Uint16(rest[5:]))
		size := frameHead + cl + n*uint64(idSize) + frameTail
		if size > uint64(len(rest)) {
			return out, off
		}
		body := rest[:size-frameTail]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(rest[size-frameTail:]) {
			return out, off
		}
		caller := qkd.SAEID(body[frameHead : frameHead+cl])
		unlease := rest[0] == frameUnlease
		for ids := body[frameHead+cl:]; len(ids) > 0; ids = ids[idSize:] {
			out = append(out, entry{id: qkd.KeyID(ids[:idSize]), caller: caller, unlease: unlease})
		}
		off += int(size)
	}
}

// leased replays entries in order and returns the keys leased at the end,
// as deliveries, in the order of their last lease.
func leased(es []entry) []delivery {
	at := make(map[qkd.KeyID]int) // index in out of a key leased now
	var out []delivery
	for _, e := range es {
		i, ok := at[e.id]
		switch {
		case e.unlease:
			if ok && out[i].caller == e.caller {
				out[i].caller = "" // dropped below
				delete(at, e.id)
			}
		case ok:
			out[i].caller = ""
			fallthrough
		default:
			at[e.id] = len(out)
			out = append(out, delivery{id: e.id, caller: e.caller})
		}
	}
	out = slices.DeleteFunc(out, func(d delivery) bool { return d.caller == "" })
	if len(out) == 0 {
		return nil
	}
	return out
}

// journal is the open journal file. Its owner (Store, under mu) serialises
// every call. f is replaced and closed under fmu (the syncer's), which a
// flush holds while it syncs f.
type journal struct {
	path string
	fmu  *sync.Mutex
	f    *os.File
	size int64
	buf  []byte
	// onRewritten: test hook, called when a rewrite is durable.
	onRewritten func()
}

func journalPath(db string) string { return db + ".journal" }

// openJournal opens (creating) the journal at path, which must be empty
// (replayed) or absent, and syncs its directory, so that leases synced
// into it survive power loss. fmu guards replacing and closing the file
// (nil: a mutex of its own).
func openJournal(path string, fmu *sync.Mutex) (*journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore/sqlite: journal: %w", err)
	}
	if fmu == nil {
		fmu = new(sync.Mutex)
	}
	j := &journal{path: path, fmu: fmu, f: f}
	if err := f.Truncate(0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("keystore/sqlite: journal: %w", err)
	}
	if err := sealing.SyncDir(filepath.Dir(path)); err != nil {
		_ = f.Close()
		return nil, err
	}
	return j, nil
}

// append writes the frame of kind naming ids and caller with one
// write(2), not synced. On error the file is cut back to where it was; if
// even that fails the journal may end in a torn frame and must not be
// appended to again (the caller stops using it).
func (j *journal) append(kind byte, caller qkd.SAEID, ids []qkd.KeyID) error {
	j.buf = appendFrame(j.buf[:0], kind, caller, ids)
	n, err := j.f.Write(j.buf)
	if err != nil {
		if n > 0 {
			if terr := j.f.Truncate(j.size); terr != nil {
				return fmt.Errorf("keystore/sqlite: journal write: %w (and cutting it back: %v)", err, terr)
			}
		}
		return fmt.Errorf("keystore/sqlite: journal write: %w", err)
	}
	j.size += int64(n)
	return nil
}

// errJournalReplaced: a rewrite failed after its rename; the descriptor
// may point at the unlinked old file, or the rename may not be durable.
var errJournalReplaced = errors.New("keystore/sqlite: journal rewritten but not reopened")

// rewrite replaces the journal atomically by frames b and keeps appending
// to the new file: temporary file, fsync, rename, fsync of the directory.
// An error wrapping errJournalReplaced means the journal must not be used
// again; any other leaves the old journal in place and usable.
func (j *journal) rewrite(b []byte) error {
	tmp := j.path + ".tmp"
	err := writeFileSync(tmp, b)
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("keystore/sqlite: journal rewrite: %w", err)
	}
	derr := sealing.SyncDir(filepath.Dir(j.path))
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", errJournalReplaced, err)
	}
	j.fmu.Lock()
	old := j.f
	j.f, j.size = f, int64(len(b))
	j.fmu.Unlock()
	_ = old.Close()
	if derr != nil {
		return fmt.Errorf("%w: %w", errJournalReplaced, derr)
	}
	if j.onRewritten != nil {
		j.onRewritten()
	}
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// close closes the file and removes it if remove is set (every delivery
// it holds is durable in the database and no lease is live).
func (j *journal) close(remove bool) error {
	j.fmu.Lock()
	err := j.f.Close()
	j.fmu.Unlock()
	if err == nil && remove {
		if rerr := os.Remove(j.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
		}
	}
	return err
}

// replayJournal applies the leases a previous run left (popped or not) as
// deliveries, in one transaction, before anything else reads the keys. It then
// leaves the file to openJournal, which empties it.
func (s *Store) replayJournal(ctx context.Context) error {
	path := journalPath(s.path)
	if err := os.Remove(path + ".tmp"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keystore/sqlite: journal: %w", err)
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keystore/sqlite: journal: %w", err)
	}
	entries, used := parseFrames(raw)
	if used < len(raw) {
		s.log.Warn("delivery journal ends in a torn or corrupt frame; ignored (no key of it was served)",
			"bytes", len(raw)-used)
	}
	recs := leased(entries)
	if len(recs) == 0 {
		return nil
	}
	if err := s.inTx(ctx, 0, func(tx *txn) error { return s.applyDeliveries(ctx, tx, recs) }); err != nil {
		return fmt.Errorf("keystore/sqlite: journal replay: %w", err)
	}
	// openJournal empties the journal next: the deliveries must be durable
	// in the database first.
	if err := s.durable.sync(ctx); err != nil {
		return fmt.Errorf("keystore/sqlite: journal replay: sync: %w", err)
	}
	s.log.Info("delivery journal replayed (leased keys are delivered or burnt)", "keys", len(recs))
	return nil
}

// applyDeliveries records deliveries in the database: each caller leaves
// its key's Pending list and a key whose list empties is deleted. Keys that
// are gone, or whose Pending no longer holds the caller, are skipped, so a
// delivery applied twice does no harm.
//
// Deliveries made by the fast path concern keys whose only pending
// recipient was the caller: they are deleted in one statement per caller;
// whatever that statement does not match goes the general way.
func (s *Store) applyDeliveries(ctx context.Context, tx *txn, recs []delivery) error {
	for i := 0; i < len(recs); {
		caller := recs[i].caller
		k := i
		var ids []qkd.KeyID
		for ; k < len(recs) && recs[k].caller == caller; k++ {
			ids = append(ids, recs[k].id)
		}
		n, err := eachRow(ctx, tx, func(rows *sql.Rows) error {
			var link string
			var state keystore.KeyState
			if err := rows.Scan(&link, &state); err != nil {
				return err
			}
			tx.keys(qkd.LinkID(link), state, -1)
			return nil
		}, "DELETE FROM keys WHERE "+inIDs+" AND pending = ? RETURNING link, state",
			idsJSON(ids), encSAEs([]qkd.SAEID{caller}))
		if err != nil {
			return fmt.Errorf("keystore/sqlite: apply deliveries: %w", err)
		}
		if n != k-i {
			for _, d := range recs[i:k] {
				if err := applyDelivery(ctx, tx, d); err != nil {
					return err
				}
			}
		}
		i = k
	}
	return nil
}

// applyDelivery records one delivery the general way.
func applyDelivery(ctx context.Context, tx *txn, d delivery) error {
	var seq int64
	var pending, link string
	var state keystore.KeyState
	err := tx.QueryRowContext(ctx, "SELECT seq, pending, link, state FROM keys WHERE id = ?", d.id[:]).Scan(&seq, &pending, &link, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keystore/sqlite: apply delivery: %w", err)
	}
	list, err := decSAEs(pending)
	if err != nil {
		return err
	}
	if !slices.Contains(list, d.caller) {
		return nil
	}
	k := keystore.Key{Pending: list}
	if rules.Served(&k, d.caller) {
		_, err = tx.ExecContext(ctx, "DELETE FROM keys WHERE seq = ?", seq)
		tx.keys(qkd.LinkID(link), state, -1)
	} else {
		_, err = tx.ExecContext(ctx, "UPDATE keys SET pending = ? WHERE seq = ?", encSAEs(k.Pending), seq)
	}
	if err != nil {
		return fmt.Errorf("keystore/sqlite: apply delivery: %w", err)
	}
	return nil
}
