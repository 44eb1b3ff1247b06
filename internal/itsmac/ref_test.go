package itsmac

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/qkms/qkms/internal/secret"
)

// Reference arithmetic with math/big, written from RFC 8439 §2.5.1 and
// independent of golang.org/x/crypto/poly1305.
var (
	refP     = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 130), big.NewInt(5))
	ref2_128 = new(big.Int).Lsh(big.NewInt(1), 128)
	refClamp = mustBig("0ffffffc0ffffffc0ffffffc0fffffff")
)

func mustBig(hexStr string) *big.Int {
	n, ok := new(big.Int).SetString(hexStr, 16)
	if !ok {
		panic(hexStr)
	}
	return n
}

// leInt reads b as a little-endian unsigned integer.
func leInt(b []byte) *big.Int {
	return new(big.Int).SetBytes(reversed(b))
}

// refHash returns h_r(m) = acc mod 2^128 with r clamped (s = 0).
func refHash(r, msg []byte) *big.Int {
	rr := new(big.Int).And(leInt(r), refClamp)
	acc := new(big.Int)
	for i := 0; i < len(msg); i += 16 {
		chunk := msg[i:min(i+16, len(msg))]
		n := new(big.Int).Add(leInt(chunk), new(big.Int).Lsh(big.NewInt(1), uint(8*len(chunk))))
		acc.Add(acc, n).Mul(acc, rr).Mod(acc, refP)
	}
	return acc.Mod(acc, ref2_128)
}

// refTag writes n mod 2^128 as 16 little-endian bytes.
func refTag(n *big.Int) Tag {
	var t Tag
	be := new(big.Int).Mod(n, ref2_128).FillBytes(make([]byte, TagSize))
	copy(t[:], reversed(be))
	return t
}

func reversed(b []byte) []byte {
	r := slices.Clone(b)
	slices.Reverse(r)
	return r
}

func refPoly1305(key, msg []byte) Tag {
	h := refHash(key[:16], msg)
	return refTag(h.Add(h, leInt(key[16:])))
}

// refWC returns (h_r(n ‖ msg) + pad) mod 2^128, n as 8 big-endian bytes.
func refWC(r, pad []byte, n uint64, msg []byte) Tag {
	h := refHash(r, append(binary.BigEndian.AppendUint64(nil, n), msg...))
	return refTag(h.Add(h, leInt(pad)))
}

// hexBytes is a []byte that decodes from a hex JSON string.
type hexBytes []byte

func (h *hexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	*h = v
	return err
}

type polyVector struct {
	Name string   `json:"name"`
	Key  hexBytes `json:"key"`
	Msg  hexBytes `json:"msg"`
	Tag  hexBytes `json:"tag"`
}

type wcVector struct {
	Name    string   `json:"name"`
	HashKey hexBytes `json:"hash_key"`
	Pad     hexBytes `json:"pad"`
	N       uint64   `json:"n"`
	Msg     hexBytes `json:"msg"`
	Tag     hexBytes `json:"tag"`
}

func loadJSON[T any](t testing.TB, name string) []T {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var v []T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("testdata/%s: %v", name, err)
	}
	if len(v) == 0 {
		t.Fatalf("testdata/%s: no vectors", name)
	}
	return v
}

func macKey(b []byte) secret.MACKey { return secret.MACKey{Bytes: secret.From(b)} }

// splits returns msg cut into parts in several ways, empty parts included, to
// check that the parts are absorbed exactly like their concatenation.
func splits(msg []byte) [][][]byte {
	out := [][][]byte{{msg}, {nil, msg, {}}}
	for _, at := range []int{1, 15, 16, 17, len(msg) / 2, len(msg) - 1} {
		if at > 0 && at < len(msg) {
			out = append(out, [][]byte{msg[:at], {}, msg[at:]})
		}
	}
	bytewise := make([][]byte, len(msg))
	for i := range msg {
		bytewise[i] = msg[i : i+1]
	}
	return append(out, bytewise)
}
