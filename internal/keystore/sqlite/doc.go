// Package sqlite is the production keystore.Store: an embedded SQLite
// database (modernc.org/sqlite, pure Go, driver "sqlite") whose key-bearing
// columns are sealed under key-encryption keys kept in a separate file
// (SPEC §3: secure deletion, keys never on disk in the clear).
//
// # Durability
//
// The database runs in WAL mode with secure_delete=ON, one connection and
// one transaction (BEGIN IMMEDIATE) per operation, so a crash (kill -9,
// power loss with synchronous=full) leaves exactly the last committed state.
// Statements are prepared once (stmts.go).
//
// The exception is the fast path of TakeForPair (cache.go): keys of a pair
// are read and opened ahead into an in-memory cache, and a take pops them
// and appends one frame naming the keys and the caller (no key bytes) to
// the delivery journal, Path + ".journal", with a single write(2) (and an
// fsync with synchronous=full) before it returns: that write is the durable
// "delivered" mark. The journaled deliveries are applied to the database
// (the rows deleted, under secure_delete) in the transaction of the next
// operation of any other kind, by a background flush at most ~100 ms after
// the first of them, or when 1024 accumulate; then the journal is emptied.
// Open replays a journal a crash left before anything else. So after kill
// -9 at any instant a key that was returned is never returned again, and a
// key that was not returned is still there — except the keys of a take
// whose journal write completed but which had not returned yet, as with a
// commit that completes just before the crash. Every other operation sees
// the exact state, and evicts (wipes) the cached keys it may touch first.
//
// # Sealing
//
// Every column that holds key bytes — the unconsumed rest of a block, a
// key, a MAC slot — is stored as
//
//	[version 1][epoch uint32 BE][nonce 24][XChaCha20-Poly1305 ciphertext]
//
// under the KEK of that epoch. The associated data binds the row's identity
// (table; link and index plus the block's current offset; key ID with its
// link, master, slaves and size; link, sender and slot number) and the
// header, so rows cannot be swapped, replayed at another offset or
// re-addressed to another application: a tampered row fails to open with
// ErrSealed instead of yielding wrong bytes. Plaintext buffers are wiped
// after sealing and opening.
//
// Relay step records (ApplyRelayStep) hold no key bytes in the clear — a
// ciphertext under a pad that is consumed, or a done marker — but are
// sealed the same way (bound to the step ID and expiry): one AEAD pass
// over at most a few MiB, and RotateKEK and Zeroize put them out of reach
// like every other row.
//
// # Key-encryption keys
//
// The KEK file (Options.KEKFile, mode 0600, never inside the database, so an
// HSM or TPM can take its place later) holds the live epochs:
//
//	"QKMSKEK\x00" | version 1 | count uint16 BE | count × (epoch uint32 BE | key [32]) | SHA-256 of all before
//
// It is replaced atomically (temporary file, fsync, rename, fsync of the
// directory). RotateKEK adds a new epoch, re-seals every live row under it
// in one transaction, then rewrites the file without the old epochs and
// wipes them in memory: from then on a copy of the database taken earlier,
// and every row deleted before, cannot be opened even with the current KEK
// file. Open rotates once (which also authenticates every row); the node
// calls RotateKEK on a timer.
//
// # Zeroisation
//
// Zeroize destroys the KEK file first (overwrite with zeros, fsync, remove)
// — after that nothing in the database can be opened — then deletes every
// row, vacuums and truncates the WAL. ZeroizeFiles does the same offline
// for `qkms zeroize`. Overwriting a file is best effort on flash and
// copy-on-write file systems; the destroyed KEK is what makes the rows
// unrecoverable.
package sqlite
