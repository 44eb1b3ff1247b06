package sealing

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKEKFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db.kek")
	r := ring(t, 4, 1, 9)
	sealed, _ := r.Seal(rand.Reader, 4, []byte("pt"), rowAD(1))
	if err := WriteFile(path, r); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("KEK file: %v, %v; want mode 0600", fi, err)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Wipe()
	if !cmp.Equal(got.Epochs(), []uint32{1, 4, 9}) || got.Current() != 9 {
		t.Errorf("read back epochs %v, current %d; want [1 4 9], 9", got.Epochs(), got.Current())
	}
	if pt, err := got.Open(sealed, rowAD(1)); err != nil || string(pt) != "pt" {
		t.Errorf("Open with the keyring read back = %q, %v", pt, err)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Equal(raw, Marshal(r)) {
		t.Error("file differs from Marshal")
	}
}

// TestKEKFileFormat pins the on-disk layout.
func TestKEKFileFormat(t *testing.T) {
	r := ring(t, 2)
	raw := Marshal(r)
	want := []byte(Magic)
	want = append(want, 1, 0, 1, 0, 0, 0, 2)
	want = append(want, bytes.Repeat([]byte{2}, KEKSize)...)
	sum := sha256.Sum256(want)
	want = append(want, sum[:]...)
	if !bytes.Equal(raw, want) {
		// No bytes in the message: they are key material (a fixture's).
		t.Errorf("Marshal = %d bytes, differing from the %d-byte layout at offset %d", len(raw), len(want), firstDiff(raw, want))
	}
}

func TestParseRefuses(t *testing.T) {
	good := Marshal(ring(t, 1, 2))
	resum := func(b []byte) []byte {
		body := b[:len(b)-sha256.Size]
		s := sha256.Sum256(body)
		return append(bytes.Clone(body), s[:]...)
	}
	// entries returns a body with epochs, checksummed.
	entries := func(count uint16, epochs ...uint32) []byte {
		b := append([]byte(Magic), 1)
		b = binary.BigEndian.AppendUint16(b, count)
		for _, e := range epochs {
			b = binary.BigEndian.AppendUint32(b, e)
			b = append(b, make([]byte, KEKSize)...)
		}
		s := sha256.Sum256(b)
		return append(b, s[:]...)
	}
	tests := []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"magic only", []byte(Magic)},
		{"other magic", resum(append([]byte("QKMSKEY\x00"), good[len(Magic):]...))},
		{"version 2", resum(append(append([]byte(Magic), 2), good[len(Magic)+1:]...))},
		{"checksum flipped", func() []byte { c := bytes.Clone(good); c[len(c)-1] ^= 1; return c }()},
		{"key flipped", func() []byte { c := bytes.Clone(good); c[len(Magic)+10] ^= 1; return c }()},
		{"truncated", good[:len(good)-1]},
		{"no epochs", entries(0)},
		{"count too high", entries(3, 1, 2)},
		{"count too low", entries(1, 1, 2)},
		{"zero epoch", entries(1, 0)},
		{"repeated epoch", entries(2, 5, 5)},
		{"extra byte", resum(append(bytes.Clone(good[:len(good)-sha256.Size]), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := Parse(tt.raw); err == nil {
				r.Wipe()
				t.Errorf("Parse = nil error")
			}
		})
	}
	if r, err := Parse(entries(2, 5, 3)); err != nil || r.Current() != 5 {
		t.Errorf("Parse(epochs out of order) = %v; want it read with current 5", err)
	} else {
		r.Wipe()
	}
}

func TestReadFileRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadFile(filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(absent) = %v, want fs.ErrNotExist", err)
	}
	corrupt := filepath.Join(dir, "corrupt")
	raw := Marshal(ring(t, 1))
	raw[len(raw)-1] ^= 1
	if err := os.WriteFile(corrupt, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(corrupt); !errors.Is(err, ErrKEKFile) {
		t.Errorf("ReadFile(corrupt) = %v, want ErrKEKFile", err)
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, Marshal(ring(t, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(open); !errors.Is(err, ErrKEKFile) {
		t.Errorf("ReadFile(mode 0640) = %v, want ErrKEKFile", err)
	}
}

// TestWriteFileAtomic: WriteFile replaces the old file whole, clears a
// leftover temporary file, and on failure leaves the old file in place.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.db.kek")
	if err := WriteFile(path, ring(t, 1)); err != nil {
		t.Fatal(err)
	}
	// A crash during an earlier write left a temporary file.
	if err := os.WriteFile(path+".tmp", []byte("half a KEK file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, ring(t, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	got, err := ReadFile(path)
	if err != nil || !cmp.Equal(got.Epochs(), []uint32{1, 2}) {
		t.Fatalf("after replacing: %v, %v", got, err)
	}
	got.Wipe()

	// The rename fails (path is a non-empty directory): the old file is
	// untouched and no temporary file remains.
	blocked := filepath.Join(dir, "blocked")
	if err := os.MkdirAll(filepath.Join(blocked, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(blocked, ring(t, 3)); err == nil {
		t.Error("WriteFile over a directory = nil error")
	}
	if _, err := os.Stat(blocked + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary file left behind after a failed write: %v", err)
	}
}

func TestDestroyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Keep a descriptor: it sees the overwritten content after removal.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := DestroyFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DestroyFile left the file: %v", err)
	}
	buf := make([]byte, 6)
	if _, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, make([]byte, 6)) {
		t.Errorf("content before removal = %q, %v; want zeros", buf, err)
	}
	if err := DestroyFile(path); err != nil {
		t.Errorf("DestroyFile(absent) = %v", err)
	}
	if err := SyncDir(dir); err != nil {
		t.Errorf("SyncDir = %v", err)
	}
	if err := SyncDir(filepath.Join(dir, "absent")); err == nil {
		t.Error("SyncDir(absent) = nil error")
	}
}

// FuzzParse: parsing a KEK file never panics, and what parses marshals
// back to the same epochs.
func FuzzParse(f *testing.F) {
	r := New()
	if err := r.Add(7, kekOf(1)); err != nil {
		f.Fatal(err)
	}
	f.Add(Marshal(r))
	r.Wipe()
	f.Add([]byte(Magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Parse(raw)
		if err != nil {
			return
		}
		defer r.Wipe()
		again, err := Parse(Marshal(r))
		if err != nil || again.Current() != r.Current() || !cmp.Equal(again.Epochs(), r.Epochs()) {
			t.Fatalf("Parse(Marshal(x)) = %v, %v", again, err)
		}
		again.Wipe()
	})
}

// firstDiff returns the first offset where a and b differ.
func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
