package sealing

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/qkms/qkms/internal/secret"
)

// Magic starts every KEK file.
const Magic = "QKMSKEK\x00"

// ErrKEKFile: the KEK file is malformed or readable by others.
var ErrKEKFile = errors.New("keystore/sealing: bad key-encryption key file")

// ReadFile reads and parses the KEK file at path. An absent file is an
// error wrapping fs.ErrNotExist; a file readable by group or others, or
// one that does not parse, is ErrKEKFile.
func ReadFile(path string) (*Keyring, error) {
	raw, err := secret.ReadFile(path, 0)
	switch {
	case errors.Is(err, secret.ErrExposedFile):
		return nil, fmt.Errorf("%w: %w", ErrKEKFile, err)
	case errors.Is(err, fs.ErrNotExist):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("keystore/sealing: %w", err)
	}
	defer secret.Wipe(raw)
	ring, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKEKFile, path, err)
	}
	return ring, nil
}

// Parse decodes a KEK file into a keyring whose current epoch is the
// highest one. It copies the keys out of raw; the caller wipes raw.
func Parse(raw []byte) (*Keyring, error) {
	const entry = 4 + KEKSize
	if len(raw) < len(Magic)+3+sha256.Size || string(raw[:len(Magic)]) != Magic || raw[len(Magic)] != 1 {
		return nil, errors.New("not a version 1 KEK file")
	}
	body, sum := raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:], sum) {
		return nil, errors.New("checksum mismatch")
	}
	n := int(binary.BigEndian.Uint16(body[len(Magic)+1:]))
	entries := body[len(Magic)+3:]
	if len(entries) != n*entry || n == 0 {
		return nil, errors.New("wrong length")
	}
	ring := New()
	for i := range n {
		e := entries[i*entry : (i+1)*entry]
		epoch := binary.BigEndian.Uint32(e)
		if epoch == 0 || ring.epochs[epoch] != nil {
			ring.Wipe()
			return nil, errors.New("zero or repeated epoch")
		}
		if err := ring.Add(epoch, secret.KEK{Bytes: secret.From(e[4:])}); err != nil {
			ring.Wipe()
			return nil, err
		}
	}
	ring.current = ring.Latest()
	return ring, nil
}

// Marshal encodes the epochs of ring as a KEK file; the caller wipes the
// result.
func Marshal(ring *Keyring) []byte {
	epochs := ring.Epochs()
	b := make([]byte, 0, len(Magic)+3+len(epochs)*(4+KEKSize)+sha256.Size)
	b = append(b, Magic...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(epochs)))
	for _, e := range epochs {
		b = binary.BigEndian.AppendUint32(b, e)
		b = append(b, ring.epochs[e].kek.Expose()...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// WriteFile replaces path atomically with the epochs of ring (mode 0600):
// temporary file path+".tmp", fsync, rename, fsync of the directory.
func WriteFile(path string, ring *Keyring) error {
	b := Marshal(ring)
	defer secret.Wipe(b)
	tmp := path + ".tmp"
	if err := DestroyFile(tmp); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keystore/sealing: KEK file: %w", err)
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
		_ = DestroyFile(tmp)
		return fmt.Errorf("keystore/sealing: write KEK file: %w", err)
	}
	return SyncDir(filepath.Dir(path))
}

// DestroyFile overwrites path with zeros, syncs and removes it, then syncs
// its directory. An absent file is not an error.
func DestroyFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keystore/sealing: destroy %s: %w", path, err)
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
		return fmt.Errorf("keystore/sealing: destroy %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs directory dir, making renames and removals in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keystore/sealing: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keystore/sealing: sync %s: %w", dir, err)
	}
	return nil
}
