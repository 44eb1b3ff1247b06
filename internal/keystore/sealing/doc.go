// Package sealing seals key-store rows under key-encryption keys (KEKs)
// with epochs, and reads and writes the KEK file that holds those epochs.
// It knows nothing about any one store: a backend chooses which columns
// to seal and what row identity to bind, and owns the Keyring it gets.
// The SQLite store (internal/keystore/sqlite, its package doc sections
// Sealing and Key-encryption keys) is its first user; docs/architecture.md
// (Key life cycle, Crash safety) and docs/operations.md (KEK rotation,
// Zeroisation) describe what it is for.
//
// # Sealed values
//
// A sealed value is
//
//	[version 1][epoch uint32 BE][nonce 24][XChaCha20-Poly1305 ciphertext]
//
// under the KEK of that epoch, with a fresh random nonce for every Seal.
// The associated data is the 5-byte header (version and epoch) followed by
// the caller's AD, which should bind the row's identity: AD builds it
// from a table name and the row's identifying fields, every one length-
// prefixed (integers fixed-width), so no two different rows share an
// encoding. A value that was tampered with, moved to another row or table,
// or sealed under an epoch the keyring no longer holds fails to open with
// ErrSealed; Open never returns wrong bytes, and its errors carry no key
// or plaintext bytes.
//
// # Epochs
//
// A Keyring holds the live epochs, each a 32-byte KEK, and the current
// epoch (the one new values are sealed under; 0 means none yet). Epochs
// are numbered from 1 upwards. Rotation is the backend's job: add epoch
// Latest()+1, write the KEK file, re-seal every live value under it, make
// it current, then KeepOnly it and write the file again. From then on a
// copy of the data taken earlier cannot be opened even with the current
// KEK file. Wipe and KeepOnly wipe the KEKs they drop; the AEAD key
// schedule kept by golang.org/x/crypto cannot be wiped and is dropped
// with its epoch.
//
// # The KEK file
//
// The KEK file (mode 0600; a file readable by group or others is refused)
// holds every live epoch:
//
//	"QKMSKEK\x00" | version 1 | count uint16 BE | count × (epoch uint32 BE | key [32]) | SHA-256 of all before
//
// Epochs are written in increasing order; a file with no epoch, a zero or
// repeated epoch, a wrong length or a bad checksum is refused (ErrKEKFile
// from ReadFile). Parse makes the highest epoch current.
//
// WriteFile replaces the file atomically: it destroys any leftover
// path+".tmp", writes the temporary file (O_EXCL, 0600), fsyncs it,
// renames it over path and fsyncs the directory. A crash leaves either the
// old file or the new one, and at most a temporary file that the next
// WriteFile (or the backend at open) destroys. DestroyFile overwrites a
// file with zeros, fsyncs and removes it; it is how zeroisation destroys
// the KEKs. Overwriting is best effort on flash and copy-on-write file
// systems: the destroyed KEK is what makes sealed values unrecoverable.
package sealing
