package qkd

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
)

// NodeID names a trusted node of the network (topology "id").
type NodeID string

// SAEID names a Secure Application Entity (ETSI GS QKD 014 §4.1); it is the
// subject CN of the SAE's client certificate.
type SAEID string

// KMEID names a node's Key Management Entity (ETSI GS QKD 014 §4.1).
type KMEID string

// LinkID names one QKD link between two neighbour nodes.
type LinkID string

// KMEOf returns the KME ID qkms gives to a node: "KME_" + node ID.
func KMEOf(n NodeID) KMEID { return KMEID("KME_" + string(n)) }

// KeyID is a UUID naming one key (ETSI GS QKD 014 §6.3: key_ID). qkms
// generates version 4 (random) UUIDs; any UUID is accepted on input.
type KeyID [16]byte

// NewKeyID returns a random version-4 UUID read from r (crypto/rand if nil).
func NewKeyID(r io.Reader) (KeyID, error) {
	if r == nil {
		r = rand.Reader
	}
	var id KeyID
	if _, err := io.ReadFull(r, id[:]); err != nil {
		return KeyID{}, err
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id, nil
}

// NewKeyIDs returns n version-4 UUIDs for the keys of one reservation: a
// random first ID (read from r, crypto/rand if nil) and its successors,
// counting in the last four bytes (modulo 2³², so n ≤ 2³² IDs are
// distinct). Key IDs are public names (ETSI GS QKD 014 §6.3 asks only for
// a UUID), and consecutive IDs are what make storing a reservation cheap:
// a B-tree index takes a run of neighbouring entries in a page or two,
// where random IDs touch one page per key. An SAE that learns one ID
// gains nothing from guessing its neighbours: a key is only ever given to
// its recipients.
func NewKeyIDs(r io.Reader, n int) ([]KeyID, error) {
	if n <= 0 {
		return nil, nil
	}
	first, err := NewKeyID(r)
	if err != nil {
		return nil, err
	}
	ids := make([]KeyID, n)
	base := binary.BigEndian.Uint32(first[12:])
	for i := range ids {
		ids[i] = first
		binary.BigEndian.PutUint32(ids[i][12:], base+uint32(i))
	}
	return ids, nil
}

// String returns the canonical 8-4-4-4-12 lower-case form.
func (id KeyID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// IsZero reports whether id is the nil UUID.
func (id KeyID) IsZero() bool { return id == KeyID{} }

// ErrBadKeyID is returned for text that is not a UUID.
var ErrBadKeyID = errors.New("qkd: malformed key ID")

// keyIDHexOffsets are the positions of the 16 hex pairs in 8-4-4-4-12 form.
var keyIDHexOffsets = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// ParseKeyID parses the canonical UUID text form (case-insensitive).
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, ErrBadKeyID
	}
	for j, i := range keyIDHexOffsets {
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return KeyID{}, ErrBadKeyID
		}
		id[j] = hi<<4 | lo
	}
	return id, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// MarshalText implements encoding.TextMarshaler.
func (id KeyID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *KeyID) UnmarshalText(b []byte) error {
	v, err := ParseKeyID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// MarshalBinary implements encoding.BinaryMarshaler: the 16 UUID bytes
// (RFC 4122 order). CBOR encodes a KeyID as a 16-byte byte string with it.
func (id KeyID) MarshalBinary() ([]byte, error) { return id[:], nil }

// UnmarshalBinary implements encoding.BinaryUnmarshaler; anything but
// exactly 16 bytes is an error (never padded or truncated).
func (id *KeyID) UnmarshalBinary(b []byte) error {
	if len(b) != len(id) {
		return ErrBadKeyID
	}
	copy(id[:], b)
	return nil
}

// PairName names an application pair (a master and its slaves) whatever
// the order of the slaves: "master>slave1,slave2" with the slaves sorted.
func PairName(master SAEID, slaves []SAEID) string {
	s := make([]string, len(slaves))
	for i, v := range slaves {
		s[i] = string(v)
	}
	slices.Sort(s)
	return string(master) + ">" + strings.Join(s, ",")
}
