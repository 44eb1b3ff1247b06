package sealing

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/qkms/qkms/internal/secret"
)

// Sizes of the sealed format.
const (
	// Version is the first byte of every sealed value.
	Version = 1
	// KEKSize is the size of one epoch's key.
	KEKSize = chacha20poly1305.KeySize
	// NonceSize is the size of the nonce in the header.
	NonceSize = chacha20poly1305.NonceSizeX
	// HeaderSize is the size of the header: version, epoch, nonce.
	HeaderSize = 1 + 4 + NonceSize
	// Overhead is what sealing adds to a plaintext: header and tag.
	Overhead = HeaderSize + chacha20poly1305.Overhead
)

// ErrSealed: a sealed value failed to open: tampered, swapped, of an
// unknown format, or sealed under a key epoch that is not held.
var ErrSealed = errors.New("keystore/sealing: sealed record cannot be opened")

// Keyring holds the live KEK epochs. It is not safe for concurrent use;
// its owner guards it and wipes it (Wipe) when done.
type Keyring struct {
	current uint32 // the epoch new values are sealed under (0: none yet)
	epochs  map[uint32]*epochKey
}

type epochKey struct {
	kek secret.KEK
	// aead keeps its own copy of the key schedule, which the x/crypto
	// package gives no way to wipe; it is dropped with the epoch.
	aead cipher.AEAD
}

// New returns an empty keyring (no epoch, current 0).
func New() *Keyring { return &Keyring{epochs: make(map[uint32]*epochKey)} }

// Add takes ownership of kek as epoch e, replacing (and wiping) any KEK
// held for e. It does not change the current epoch. On error kek is wiped.
func (r *Keyring) Add(e uint32, kek secret.KEK) error {
	aead, err := chacha20poly1305.NewX(kek.Expose())
	if err != nil {
		kek.Wipe()
		return fmt.Errorf("keystore/sealing: KEK of epoch %d: %w", e, err)
	}
	if old := r.epochs[e]; old != nil {
		old.kek.Wipe()
	}
	r.epochs[e] = &epochKey{kek: kek, aead: aead}
	return nil
}

// Has reports whether epoch e is held.
func (r *Keyring) Has(e uint32) bool { return r.epochs[e] != nil }

// Epochs returns the epochs held, in increasing order.
func (r *Keyring) Epochs() []uint32 { return slices.Sorted(maps.Keys(r.epochs)) }

// Latest returns the highest epoch held (0 if none).
func (r *Keyring) Latest() uint32 {
	if len(r.epochs) == 0 {
		return 0
	}
	return slices.Max(slices.Collect(maps.Keys(r.epochs)))
}

// Current returns the epoch new values are sealed under (0: none yet).
func (r *Keyring) Current() uint32 { return r.current }

// SetCurrent makes e the epoch new values are sealed under. The caller
// makes sure e is held; Seal under an epoch not held fails.
func (r *Keyring) SetCurrent(e uint32) { r.current = e }

// KeepOnly wipes and forgets every epoch but e. The current epoch is left
// as it is.
func (r *Keyring) KeepOnly(e uint32) {
	for n, k := range r.epochs {
		if n != e {
			k.kek.Wipe()
			delete(r.epochs, n)
		}
	}
}

// Wipe wipes and forgets every epoch and resets the current epoch to 0.
func (r *Keyring) Wipe() {
	for n, k := range r.epochs {
		k.kek.Wipe()
		delete(r.epochs, n)
	}
	r.current = 0
}

// Seal seals plaintext under epoch e with a nonce read from rnd:
// [version][epoch][nonce][ciphertext], with the header and ad as
// associated data. The caller wipes plaintext.
func (r *Keyring) Seal(rnd io.Reader, e uint32, plaintext, ad []byte) ([]byte, error) {
	k := r.epochs[e]
	if k == nil {
		return nil, fmt.Errorf("keystore/sealing: no KEK for epoch %d", e)
	}
	out := make([]byte, HeaderSize, HeaderSize+len(plaintext)+k.aead.Overhead())
	out[0] = Version
	binary.BigEndian.PutUint32(out[1:5], e)
	if _, err := io.ReadFull(rnd, out[5:HeaderSize]); err != nil {
		return nil, fmt.Errorf("keystore/sealing: nonce: %w", err)
	}
	return k.aead.Seal(out, out[5:HeaderSize], plaintext, withHeader(out[:5], ad)), nil
}

// Open returns the plaintext of a sealed value; the caller wipes it. Every
// failure wraps ErrSealed.
func (r *Keyring) Open(sealed, ad []byte) ([]byte, error) {
	e, err := Epoch(sealed)
	if err != nil {
		return nil, err
	}
	k := r.epochs[e]
	if k == nil {
		return nil, fmt.Errorf("%w: key epoch %d is not held (destroyed or from another store)", ErrSealed, e)
	}
	pt, err := k.aead.Open(nil, sealed[5:HeaderSize], sealed[HeaderSize:], withHeader(sealed[:5], ad))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrSealed)
	}
	return pt, nil
}

// Epoch returns the epoch a sealed value names in its header, unverified.
// A value too short for a header or of another version is ErrSealed.
func Epoch(sealed []byte) (uint32, error) {
	if len(sealed) < HeaderSize || sealed[0] != Version {
		return 0, fmt.Errorf("%w: unknown format", ErrSealed)
	}
	return binary.BigEndian.Uint32(sealed[1:5]), nil
}

func withHeader(h, ad []byte) []byte {
	return append(append(make([]byte, 0, len(h)+len(ad)), h...), ad...)
}

// ADBuilder builds associated data: a table name and each field, every
// one length-prefixed (integers fixed-width) so that no two different
// rows share an encoding. Its methods append and return the result.
type ADBuilder []byte

// AD starts the associated data of a row of table.
func AD(table string) ADBuilder { return ADBuilder(nil).Str(table) }

// Bytes appends b, prefixed by its length (uvarint).
func (a ADBuilder) Bytes(b []byte) ADBuilder {
	a = binary.AppendUvarint(a, uint64(len(b)))
	return append(a, b...)
}

// Str appends s, prefixed by its length (uvarint).
func (a ADBuilder) Str(s string) ADBuilder { return a.Bytes([]byte(s)) }

// U64 appends u as 8 bytes big-endian.
func (a ADBuilder) U64(u uint64) ADBuilder { return binary.BigEndian.AppendUint64(a, u) }
