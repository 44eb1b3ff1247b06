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
	"github.com/qkms/qkms/internal/qkd"
)

// The delivery journal (Options.Path + ".journal", mode 0600) makes the
// fast path of TakeForPair durable without a database commit: before keys
// taken from a pair cache are returned, one write(2) appends a frame that
// names them and their caller — no key bytes — and that write is the
// durable "delivered" mark (the page cache outlives the process; with
// synchronous=full the file is also fsynced). A later transaction applies
// the journaled deliveries to the database (the rows are deleted, under
// secure_delete) and the journal is emptied; Open replays what a crash left.
//
// Frame:
//
//	magic 0xA7 | count uint32 BE | caller length uint16 BE | caller | count × key ID [16] | CRC-32C of all before
//
// One frame is one take, written with one write(2): replay applies a frame
// whole or, if it is torn or corrupt, not at all (that take never
// returned). Applying a delivery is idempotent (the caller leaves the key's
// Pending list; the key is deleted when the list is empty; an absent key is
// skipped), so a journal may hold deliveries that were applied already.

const (
	frameMagic  = 0xA7
	frameHead   = 1 + 4 + 2
	frameTail   = 4
	maxCaller   = 1<<16 - 1
	idSize      = len(qkd.KeyID{})
	journalTidy = 64 << 10 // rewrite a journal that grows past this while deliveries stay unapplied
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// delivery is one journaled delivery of key id to caller.
type delivery struct {
	id     qkd.KeyID
	caller qkd.SAEID
}

// appendFrame appends the frame of caller taking ids.
func appendFrame(b []byte, caller qkd.SAEID, ids []qkd.KeyID) []byte {
	start := len(b)
	b = append(b, frameMagic)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(caller)))
	b = append(b, caller...)
	for i := range ids {
		b = append(b, ids[i][:]...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// parseFrames returns the deliveries of the whole, valid frames at the
// start of b and how many bytes they cover; it stops at the first torn or
// corrupt frame.
func parseFrames(b []byte) ([]delivery, int) {
	var out []delivery
	off := 0
	for {
		rest := b[off:]
		if len(rest) < frameHead+frameTail || rest[0] != frameMagic {
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
		for ids := body[frameHead+cl:]; len(ids) > 0; ids = ids[idSize:] {
			out = append(out, delivery{id: qkd.KeyID(ids[:idSize]), caller: caller})
		}
		off += int(size)
	}
}

// journal is the open journal file. Its owner (Store, under cmu) serialises
// every call. f is replaced and closed under fmu (the syncer's), which a
// flush holds while it syncs f.
type journal struct {
	path string
	fmu  *sync.Mutex
	f    *os.File
	size int64
	sync bool
	buf  []byte
}

func journalPath(db string) string { return db + ".journal" }

// openJournal opens (creating) the journal at path, which must be empty
// (replayed) or absent.
// fmu guards replacing and closing the file (nil: a mutex of its own).
func openJournal(path string, full bool, fmu *sync.Mutex) (*journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore/sqlite: journal: %w", err)
	}
	if fmu == nil {
		fmu = new(sync.Mutex)
	}
	j := &journal{path: path, fmu: fmu, f: f, sync: full}
	if err := f.Truncate(0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("keystore/sqlite: journal: %w", err)
	}
	if full {
		if err := syncDir(filepath.Dir(path)); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	return j, nil
}

// append writes the frame of caller taking ids with one write(2) (and an
// fsync with synchronous=full). On error the file is cut back to where it
// was; if even that fails the journal may end in a torn frame and must not
// be appended to again (the caller stops using it).
func (j *journal) append(caller qkd.SAEID, ids []qkd.KeyID) error {
	j.buf = appendFrame(j.buf[:0], caller, ids)
	n, err := j.f.Write(j.buf)
	if err == nil && j.sync {
		err = j.f.Sync()
	}
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

// applied is called when every delivery the journal holds but rest has
// reached the database: it empties the journal, or, if rest is not empty
// and the file has grown past journalTidy, replaces it atomically by a
// journal of rest alone. Otherwise the file keeps applied frames, which
// replay skips.
func (j *journal) applied(rest []delivery) error {
	if len(rest) == 0 {
		if j.size == 0 {
			return nil
		}
		if err := j.f.Truncate(0); err != nil {
			return fmt.Errorf("keystore/sqlite: journal: %w", err)
		}
		j.size = 0
		return nil
	}
	if j.size < journalTidy {
		return nil
	}
	var b []byte
	for i := 0; i < len(rest); {
		k := i
		ids := make([]qkd.KeyID, 0, 64)
		for ; k < len(rest) && rest[k].caller == rest[i].caller; k++ {
			ids = append(ids, rest[k].id)
		}
		b = appendFrame(b, rest[i].caller, ids)
		i = k
	}
	tmp := j.path + ".tmp"
	err := writeFileSync(tmp, b, j.sync)
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err == nil && j.sync {
		err = syncDir(filepath.Dir(j.path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("keystore/sqlite: journal rewrite: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		// The renamed file is in place and complete; the old descriptor
		// now points at an unlinked file, so stop appending.
		return fmt.Errorf("keystore/sqlite: journal reopen: %w", err)
	}
	j.fmu.Lock()
	_ = j.f.Close()
	j.f, j.size = f, int64(len(b))
	j.fmu.Unlock()
	return nil
}

func writeFileSync(path string, b []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// close closes the file and removes it if remove is set (every delivery
// it holds was applied).
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

// replayJournal applies the deliveries a previous run journaled but did not
// apply, in one transaction, before anything else reads the keys. It then
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
	recs, used := parseFrames(raw)
	if used < len(raw) {
		s.log.Warn("delivery journal ends in a torn or corrupt frame; ignored (that take never returned)",
			"bytes", len(raw)-used)
	}
	if len(recs) == 0 {
		return nil
	}
	if err := s.inTx(ctx, func(tx *txn) error { return s.applyDeliveries(ctx, tx, recs) }); err != nil {
		return fmt.Errorf("keystore/sqlite: journal replay: %w", err)
	}
	s.log.Info("delivery journal replayed", "deliveries", len(recs))
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
		res, err := tx.ExecContext(ctx, "DELETE FROM keys WHERE "+inIDs+" AND pending = ?",
			idsJSON(ids), encSAEs([]qkd.SAEID{caller}))
		if err != nil {
			return fmt.Errorf("keystore/sqlite: apply deliveries: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || int(n) != k-i {
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
	var pending string
	err := tx.QueryRowContext(ctx, "SELECT seq, pending FROM keys WHERE id = ?", d.id[:]).Scan(&seq, &pending)
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
	} else {
		_, err = tx.ExecContext(ctx, "UPDATE keys SET pending = ? WHERE seq = ?", encSAEs(k.Pending), seq)
	}
	if err != nil {
		return fmt.Errorf("keystore/sqlite: apply delivery: %w", err)
	}
	return nil
}
