package sqlite

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

const (
	sealVersion = 1
	kekSize     = chacha20poly1305.KeySize
	nonceSize   = chacha20poly1305.NonceSizeX
	headerSize  = 1 + 4 + nonceSize
)

// keyring holds the live KEK epochs. Its owner (Store, under mu) wipes it.
type keyring struct {
	current uint32 // the epoch new rows are sealed under (0: none yet)
	epochs  map[uint32]*epochKey
}

type epochKey struct {
	kek secret.KEK
	// aead keeps its own copy of the key schedule, which the x/crypto
	// package gives no way to wipe; it is dropped with the epoch.
	aead cipher.AEAD
}

func newKeyring() *keyring { return &keyring{epochs: make(map[uint32]*epochKey)} }

// add takes ownership of kek as epoch e.
func (r *keyring) add(e uint32, kek secret.KEK) error {
	aead, err := chacha20poly1305.NewX(kek.Expose())
	if err != nil {
		kek.Wipe()
		return fmt.Errorf("keystore/sqlite: KEK of epoch %d: %w", e, err)
	}
	if old := r.epochs[e]; old != nil {
		old.kek.Wipe()
	}
	r.epochs[e] = &epochKey{kek: kek, aead: aead}
	return nil
}

// latest returns the highest epoch held (0 if none).
func (r *keyring) latest() uint32 {
	if len(r.epochs) == 0 {
		return 0
	}
	return slices.Max(slices.Collect(maps.Keys(r.epochs)))
}

// keepOnly wipes and forgets every epoch but e.
func (r *keyring) keepOnly(e uint32) {
	for n, k := range r.epochs {
		if n != e {
			k.kek.Wipe()
			delete(r.epochs, n)
		}
	}
}

// wipe wipes and forgets every epoch.
func (r *keyring) wipe() {
	for n, k := range r.epochs {
		k.kek.Wipe()
		delete(r.epochs, n)
	}
	r.current = 0
}

// seal seals pt under epoch e: [version][epoch][nonce][ciphertext], with
// the header and ad as associated data.
func (r *keyring) seal(rnd io.Reader, e uint32, pt, ad []byte) ([]byte, error) {
	k := r.epochs[e]
	if k == nil {
		return nil, fmt.Errorf("keystore/sqlite: no KEK for epoch %d", e)
	}
	out := make([]byte, headerSize, headerSize+len(pt)+k.aead.Overhead())
	out[0] = sealVersion
	binary.BigEndian.PutUint32(out[1:5], e)
	if _, err := io.ReadFull(rnd, out[5:headerSize]); err != nil {
		return nil, fmt.Errorf("keystore/sqlite: nonce: %w", err)
	}
	return k.aead.Seal(out, out[5:headerSize], pt, withHeader(out[:5], ad)), nil
}

// open returns the plaintext of a sealed value; the caller wipes it.
func (r *keyring) open(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < headerSize || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: unknown format", ErrSealed)
	}
	e := binary.BigEndian.Uint32(sealed[1:5])
	k := r.epochs[e]
	if k == nil {
		return nil, fmt.Errorf("%w: key epoch %d is not held (destroyed or from another store)", ErrSealed, e)
	}
	pt, err := k.aead.Open(nil, sealed[5:headerSize], sealed[headerSize:], withHeader(sealed[:5], ad))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrSealed)
	}
	return pt, nil
}

func withHeader(h, ad []byte) []byte {
	return append(append(make([]byte, 0, len(h)+len(ad)), h...), ad...)
}

// adBuilder builds associated data: the table name and each field, every
// one length-prefixed so that no two different rows share an encoding.
type adBuilder []byte

func ad(table string) adBuilder { return adBuilder(nil).str(table) }

func (a adBuilder) bytes(b []byte) adBuilder {
	a = binary.AppendUvarint(a, uint64(len(b)))
	return append(a, b...)
}

func (a adBuilder) str(s string) adBuilder { return a.bytes([]byte(s)) }

func (a adBuilder) u64(u uint64) adBuilder { return binary.BigEndian.AppendUint64(a, u) }

func adBlock(link qkd.LinkID, idx uint64, off int) []byte {
	return ad("blocks").str(string(link)).u64(idx).u64(uint64(off))
}

func adKey(id qkd.KeyID, link qkd.LinkID, master qkd.SAEID, slaves string, sizeBits int) []byte {
	return ad("keys").bytes(id[:]).str(string(link)).str(string(master)).str(slaves).u64(uint64(sizeBits))
}

func adSlot(link qkd.LinkID, sender qkd.NodeID, seq uint64) []byte {
	return ad("slots").str(string(link)).str(string(sender)).u64(seq)
}

// adRelay binds a relay record to its step ID and its stored expiry.
func adRelay(id string, expires int64) []byte {
	return ad("relay").str(id).u64(uint64(expires))
}
