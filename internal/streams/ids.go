package streams

import (
	"crypto/sha1"
	"encoding/binary"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/qkd"
)

// chunkNS is the UUID namespace of chunk key IDs (RFC 4122 §4.3).
var chunkNS = [16]byte{0x6b, 0x1f, 0x2e, 0x8a, 0x47, 0x0c, 0x4f, 0x3d, 0x9a, 0x52, 0x11, 0xe0, 0x7c, 0x3b, 0x90, 0x5d}

// chunkID is the key ID of chunk i of stream k: a version 5 (name-based,
// SHA-1) UUID of k‖i. Both are public; so is the ID.
func chunkID(k etsi004.KSID, i uint32) qkd.KeyID {
	h := sha1.New()
	h.Write(chunkNS[:])
	h.Write(k[:])
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], i)
	h.Write(b[:])
	var id qkd.KeyID
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x50
	id[8] = id[8]&0x3f | 0x80
	return id
}

// span is the chunks [From, To) of a stream.
type span struct {
	From uint32 `json:"from"`
	To   uint32 `json:"to"`
}

// spans is a sorted list of disjoint, non-adjacent spans.
type spans []span

func (ss spans) has(i uint32) bool {
	for _, s := range ss {
		if i >= s.From && i < s.To {
			return true
		}
	}
	return false
}

// gap returns the chunks from i on (at most n) not in ss: [i, end).
func (ss spans) gap(i uint32, n uint32) span {
	end := uint64(i) + uint64(n)
	for _, s := range ss {
		if s.From > i && uint64(s.From) < end {
			end = uint64(s.From)
		}
	}
	if end > 1<<32-1 {
		end = 1<<32 - 1
	}
	return span{i, uint32(end)}
}

// add merges s into ss.
func (ss spans) add(s span) spans {
	out := make(spans, 0, len(ss)+1)
	placed := false
	for _, x := range ss {
		switch {
		case x.To < s.From:
			out = append(out, x)
		case s.To < x.From:
			if !placed {
				out, placed = append(out, s), true
			}
			out = append(out, x)
		default:
			s = span{min(s.From, x.From), max(s.To, x.To)}
		}
	}
	if !placed {
		out = append(out, s)
	}
	return out
}

// remove takes s out of ss (s was added as one span).
func (ss spans) remove(s span) spans {
	var out spans
	for _, x := range ss {
		if x.To <= s.From || x.From >= s.To {
			out = append(out, x)
			continue
		}
		if x.From < s.From {
			out = append(out, span{x.From, s.From})
		}
		if x.To > s.To {
			out = append(out, span{s.To, x.To})
		}
	}
	return out
}

// ids lists the chunk IDs of ss.
func (ss spans) ids(k etsi004.KSID) []qkd.KeyID {
	var out []qkd.KeyID
	for _, s := range ss {
		for i := uint64(s.From); i < uint64(s.To); i++ {
			out = append(out, chunkID(k, uint32(i)))
		}
	}
	return out
}
