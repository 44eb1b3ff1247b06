package sqlite

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/internal/rules"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// ApplyRelayStep implements keystore.Store in one transaction, like
// Allocate: the pieces are consumed (In, then Out), build runs, and its
// keys, outbox entry and record are stored; any error rolls all of it
// back. New keys take the next seq numbers, behind every cached key, so
// the pair caches stay prefixes of the database and nothing is evicted (as
// with Allocate); an ID of a cached key is still in the database, so
// reusing it is a conflict.
//
// The record is sealed under the KEK like key material (bound to the step
// ID and expiry), although it holds no key bytes in the clear: it costs one
// AEAD pass, and keeps records out of reach after RotateKEK and Zeroize.
func (s *Store) ApplyRelayStep(ctx context.Context, st keystore.RelayStep, build func(in, out secret.Bytes) (keystore.RelayResult, error)) error {
	inLen, outLen, err := rules.CheckRelayStep(&st)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx *txn) error {
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM relay WHERE id = ?", st.ID).Scan(&one)
		if err == nil {
			return fmt.Errorf("keystore: relay step %q: %w", st.ID, keystore.ErrApplied)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("keystore/sqlite: relay: %w", err)
		}
		in, err := s.takePieces(ctx, tx, st.InLink, st.In, inLen)
		if err != nil {
			return err
		}
		out, err := s.takePieces(ctx, tx, st.OutLink, st.Out, outLen)
		if err != nil {
			secret.Wipe(in)
			return err
		}
		if len(st.Combine) > 0 {
			if out, err = s.takeShares(ctx, tx, st.Combine); err != nil {
				secret.Wipe(in)
				return err
			}
		}
		res, err := rules.RunBuild(build, in, out)
		if err != nil {
			return err
		}
		defer rules.WipeRelayKeys(&res)
		if err := rules.CheckRelayResult(&st, &res); err != nil {
			return err
		}
		if err := checkNewKeys(ctx, tx, res.Keys); err != nil {
			return err
		}
		if err := checkNewOutbox(ctx, tx, res.Outbox); err != nil {
			return err
		}
		now := s.now()
		defaultCreated(res.Keys, now)
		if err := s.insertKeys(ctx, tx, res.Keys); err != nil {
			return err
		}
		if err := insertOutbox(ctx, tx, res.Outbox, rules.RelayKeyLink(&st), now); err != nil {
			return err
		}
		expires := encTime(st.Expires)
		data, err := s.ring.Seal(s.rand, s.ring.Current(), res.Record, adRelay(st.ID, expires))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO relay (id, expires, data) VALUES (?, ?, ?)", st.ID, expires, data); err != nil {
			return fmt.Errorf("keystore/sqlite: relay: %w", err)
		}
		s.expiresBy(expires)
		return nil
	})
}

// RelayRecord implements keystore.Store. A record is there until
// ExpireKeys deletes it.
func (s *Store) RelayRecord(ctx context.Context, id string) ([]byte, error) {
	var out []byte
	err := s.tx(ctx, func(tx *txn) error {
		var expires int64
		var sealed []byte
		err := tx.QueryRowContext(ctx, "SELECT expires, data FROM relay WHERE id = ?", id).Scan(&expires, &sealed)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("keystore: relay step %q: %w", id, qkd.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("keystore/sqlite: relay: %w", err)
		}
		if out, err = s.ring.Open(sealed, adRelay(id, expires)); err != nil {
			return fmt.Errorf("keystore/sqlite: relay record %q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// expireRelays deletes the relay records with Expires <= now.
func expireRelays(ctx context.Context, tx *txn, now time.Time) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM relay WHERE expires != 0 AND expires <= ?", encTime(now)); err != nil {
		return fmt.Errorf("keystore/sqlite: expire relay records: %w", err)
	}
	return nil
}

// takeShares deletes the share rows ids (RelayStep.Combine) and returns
// the XOR of their bytes.
func (s *Store) takeShares(ctx context.Context, tx *txn, ids []qkd.KeyID) ([]byte, error) {
	var acc []byte
	for _, id := range ids {
		row, err := scanKey(tx.QueryRowContext(ctx, "SELECT "+keyCols+" FROM keys WHERE id = ?", id[:]))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			secret.Wipe(acc)
			return nil, fmt.Errorf("keystore: share %s: not here (yet): %w", id, keystore.ErrConflict)
		case err != nil:
			secret.Wipe(acc)
			return nil, fmt.Errorf("keystore/sqlite: relay: %w", err)
		case row.key.Stream != keystore.ShareStream || acc != nil && row.key.SizeBits/8 != len(acc):
			secret.Wipe(acc)
			return nil, fmt.Errorf("keystore: key %s is not a share of this step: %w", id, keystore.ErrConflict)
		}
		data, err := s.openKey(ctx, tx, &row)
		if err != nil {
			secret.Wipe(acc)
			return nil, err
		}
		if acc == nil {
			acc = make([]byte, data.Len())
		}
		subtle.XORBytes(acc, acc, data.Expose())
		data.Wipe()
		if _, err := tx.ExecContext(ctx, "DELETE FROM keys WHERE seq = ?", row.seq); err != nil {
			secret.Wipe(acc)
			return nil, fmt.Errorf("keystore/sqlite: relay: %w", err)
		}
		tx.keys(row.key.Link, row.key.State, -1)
	}
	return acc, nil
}
