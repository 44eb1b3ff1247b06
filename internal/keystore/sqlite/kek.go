package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/qkms/qkms/internal/secret"
)

const kekMagic = "QKMSKEK\x00"

// loadKeyring reads the KEK file, or starts an empty keyring if neither the
// file nor sealed rows exist (the first rotation creates the file).
func (s *Store) loadKeyring(ctx context.Context) (*keyring, error) {
	if err := destroyFile(s.kekFile + ".tmp"); err != nil {
		return nil, err
	}
	ring, err := readKEKFile(s.kekFile)
	if !errors.Is(err, fs.ErrNotExist) {
		return ring, err
	}
	epoch, err := metaEpoch(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if epoch != 0 {
		return nil, fmt.Errorf("%w: %s (rows are sealed under epoch %d)", ErrKEKMissing, s.kekFile, epoch)
	}
	return newKeyring(), nil
}

// readKEKFile parses the KEK file; fs.ErrNotExist if it is absent.
func readKEKFile(path string) (*keyring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v, want 0600", ErrKEKFile, path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keystore/sqlite: %w", err)
	}
	defer secret.Wipe(raw)
	ring, err := parseKEK(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKEKFile, path, err)
	}
	return ring, nil
}

func parseKEK(raw []byte) (*keyring, error) {
	const entry = 4 + kekSize
	if len(raw) < len(kekMagic)+3+sha256.Size || string(raw[:len(kekMagic)]) != kekMagic || raw[len(kekMagic)] != 1 {
		return nil, errors.New("not a version 1 KEK file")
	}
	body, sum := raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:], sum) {
		return nil, errors.New("checksum mismatch")
	}
	n := int(binary.BigEndian.Uint16(body[len(kekMagic)+1:]))
	entries := body[len(kekMagic)+3:]
	if len(entries) != n*entry || n == 0 {
		return nil, errors.New("wrong length")
	}
	ring := newKeyring()
	for i := range n {
		e := entries[i*entry : (i+1)*entry]
		epoch := binary.BigEndian.Uint32(e)
		if epoch == 0 || ring.epochs[epoch] != nil {
			ring.wipe()
			return nil, errors.New("zero or repeated epoch")
		}
		if err := ring.add(epoch, secret.KEK{Bytes: secret.From(e[4:])}); err != nil {
			ring.wipe()
			return nil, err
		}
	}
	ring.current = ring.latest()
	return ring, nil
}

// marshalKEK encodes the epochs of ring; the caller wipes the result.
func marshalKEK(ring *keyring) []byte {
	epochs := make([]uint32, 0, len(ring.epochs))
	for e := range ring.epochs {
		epochs = append(epochs, e)
	}
	slices.Sort(epochs)
	b := make([]byte, 0, len(kekMagic)+3+len(epochs)*(4+kekSize)+sha256.Size)
	b = append(b, kekMagic...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(epochs)))
	for _, e := range epochs {
		b = binary.BigEndian.AppendUint32(b, e)
		b = append(b, ring.epochs[e].kek.Expose()...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// writeKEKFile replaces path atomically with the epochs of ring (0600).
func writeKEKFile(path string, ring *keyring) error {
	b := marshalKEK(ring)
	defer secret.Wipe(b)
	tmp := path + ".tmp"
	if err := destroyFile(tmp); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keystore/sqlite: KEK file: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = destroyFile(tmp)
		return fmt.Errorf("keystore/sqlite: write KEK file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// destroyFile overwrites path with zeros, syncs and removes it. An absent
// file is not an error.
func destroyFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keystore/sqlite: destroy %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil {
		_, err = f.WriteAt(make([]byte, fi.Size()), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(path); err == nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("keystore/sqlite: destroy %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keystore/sqlite: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keystore/sqlite: sync %s: %w", dir, err)
	}
	return nil
}
