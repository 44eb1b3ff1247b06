// Package sqlite is the production keystore.Store: an embedded SQLite
// database (modernc.org/sqlite, pure Go, driver "sqlite") whose key-bearing
// columns are sealed under key-encryption keys kept in a separate file
// (secure deletion, keys never on disk in the clear).
//
// # Durability
//
// The database runs in WAL mode with secure_delete=ON, one connection and
// one transaction (BEGIN IMMEDIATE) per operation, so a crash of the
// process (kill -9) leaves exactly the last committed state. Statements
// are prepared once (stmts.go).
//
// Power loss is covered too, at the price of one fsync shared by
// concurrent callers (group commit) where it matters, not one per commit:
//   - Ordering. With synchronous=normal (the default) a commit is written
//     to the WAL with write(2) and not synced: power loss may lose a
//     suffix of the commits, never reorder them or keep a later one
//     without an earlier one (WAL replay stops at the first frame whose
//     checksum fails).
//   - Barrier before anything leaves. Store.Sync (durable.go) fsyncs the
//     WAL and the delivery journal; once it returns, every operation that
//     returned before it survives power loss. One-time material is marked
//     used by a committed operation before it is handed out: the caller
//     (the link layer) calls Sync after TakeSlot, UseSlot or
//     ApplyRelayStep and before any tag or ciphertext made with the
//     material is sent, so power loss cannot bring back a MAC slot or a
//     pad whose use left the node. TakeByID and the slow path of
//     TakeForPair call the barrier themselves before they return keys.
//   - Leases fsynced before pops. The fast path of TakeForPair (cache.go,
//     journal.go) keeps the first keys of a pair opened in memory; before
//     they enter the cache, one frame of the delivery journal
//     (Path + ".journal") leases them all to the caller and is fsynced
//     (through the same syncer); a take then pops keys with no I/O at
//     all. The popped keys' deliveries are applied to the database (the
//     rows deleted) by the next operation of any other kind, by a
//     background flush at most ~100 ms after the first of them, or when
//     1024 accumulate. Keys that leave a cache without being popped are
//     unleased by a later frame. Open replays the journal in order before
//     anything else: what is leased at the end is applied as delivered —
//     the keys a crash or power loss caught leased but not popped are
//     burnt (at most about a cache's fill per pair), never served twice;
//     a lost unlease only burns its keys too. The journal is rewritten
//     with the live leases only after a barrier made the deliveries
//     applied so far durable, and Close removes it only once everything
//     is applied and durable.
//
// With synchronous=full every commit is also durable on its own (and Sync
// costs little more than the journal's fsync). Every other operation sees
// the exact state: it applies the popped deliveries first and evicts
// (unleases, wipes) the cached keys it may touch.
//
// # Statistics
//
// Stats reads no table (stats.go): per-link counters are loaded by one
// scan at Open and changed by each transaction's delta once it commits (a
// rollback discards it); keys popped by the fast path and not yet applied
// are discounted. Stats does not wait for the store's lock.
//
// # Sealing
//
// The sealing layer — the sealed format, the keyring of KEK epochs and
// the KEK file — is package internal/keystore/sealing; this package
// chooses what to seal and binds each row's identity (seal.go).
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
// directory; sealing.WriteFile). RotateKEK adds a new epoch, re-seals every live row under it
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
