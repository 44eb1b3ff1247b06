package sqlite

import (
	"github.com/qkms/qkms/internal/keystore/sealing"
	"github.com/qkms/qkms/internal/qkd"
)

// The associated data of each sealed column: the row's identity, built
// with sealing.AD (see doc.go, Sealing).

func adBlock(link qkd.LinkID, idx uint64, off int) []byte {
	return sealing.AD("blocks").Str(string(link)).U64(idx).U64(uint64(off))
}

func adKey(id qkd.KeyID, link qkd.LinkID, master qkd.SAEID, slaves string, sizeBits int) []byte {
	return sealing.AD("keys").Bytes(id[:]).Str(string(link)).Str(string(master)).Str(slaves).U64(uint64(sizeBits))
}

func adSlot(link qkd.LinkID, sender qkd.NodeID, seq uint64) []byte {
	return sealing.AD("slots").Str(string(link)).Str(string(sender)).U64(seq)
}

// adRelay binds a relay record to its step ID and its stored expiry.
func adRelay(id string, expires int64) []byte {
	return sealing.AD("relay").Str(id).U64(uint64(expires))
}
