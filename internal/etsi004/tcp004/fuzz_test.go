package tcp004

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Every decoder: no panic on any input, and what decodes re-encodes to
// something that decodes to the same value.

func seeds(f *testing.F, wires ...[]byte) {
	for _, w := range wires {
		f.Add(w)
	}
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add(bytes.Repeat([]byte{0xff}, 40))
}

func FuzzParseHeader(f *testing.F) {
	seeds(f, hx(f, "01000102 00000010"), hx(f, "01000105 00100000"), hx(f, "02010102 00000000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		if h.Length > MaxPayload || h.Major != VersionMajor {
			t.Fatalf("ParseHeader(%x) accepted %+v", b, h)
		}
	})
}

func FuzzDecodeOpenRequest(f *testing.F) {
	seeds(f, cat(hx(f, "613a2f2f78 00 623a2f2f79 00"), qosBytes(f), ksidBytes(f)), hx(f, "00 00"))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeOpenRequest(p)
		if err != nil {
			return
		}
		b, err := AppendOpenRequest(nil, r)
		if err != nil {
			t.Fatalf("AppendOpenRequest(%+v) after decoding %x: %v", r, p, err)
		}
		if r2, err := DecodeOpenRequest(b); err != nil || !cmp.Equal(r, r2) {
			t.Fatalf("round trip of %+v = %+v, %v", r, r2, err)
		}
	})
}

func FuzzDecodeOpenResponse(f *testing.F) {
	seeds(f, cat(hx(f, "00000001"), qosBytes(f), ksidBytes(f)), hx(f, "00000005"))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeOpenResponse(p)
		if err != nil {
			return
		}
		b, err := AppendOpenResponse(nil, r)
		if err != nil {
			t.Fatalf("AppendOpenResponse(%+v) after decoding %x: %v", r, p, err)
		}
		if r2, err := DecodeOpenResponse(b); err != nil || r != r2 {
			t.Fatalf("round trip of %+v = %+v, %v", r, r2, err)
		}
	})
}

func FuzzDecodeGetKeyRequest(f *testing.F) {
	seeds(f, cat(ksidBytes(f), hx(f, "00000007 00000400")))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeGetKeyRequest(p)
		if err != nil {
			return
		}
		if b := AppendGetKeyRequest(nil, r); !bytes.Equal(b, p) {
			t.Fatalf("re-encoding %x gave %x", p, b)
		}
	})
}

func FuzzDecodeGetKeyResponse(f *testing.F) {
	seeds(f, hx(f, "00000000 00000007 00000004 deadbeef 00000002 7b7d"), hx(f, "00000008 00000020"),
		hx(f, "00000002"), hx(f, "00000000 00000001 ffffffff 01020304"))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeGetKeyResponse(p)
		if err != nil {
			return
		}
		b, err := AppendGetKeyResponse(nil, r)
		if err != nil {
			t.Fatalf("AppendGetKeyResponse after decoding %x: %v", p, err)
		}
		if !bytes.Equal(b, p) {
			t.Fatalf("re-encoding %x gave %x", p, b)
		}
	})
}

func FuzzDecodeCloseRequest(f *testing.F) {
	seeds(f, ksidBytes(f))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeCloseRequest(p)
		if err != nil {
			return
		}
		if b := AppendCloseRequest(nil, r); !bytes.Equal(b, p) {
			t.Fatalf("re-encoding %x gave %x", p, b)
		}
	})
}

func FuzzDecodeCloseResponse(f *testing.F) {
	seeds(f, hx(f, "00000003"))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeCloseResponse(p)
		if err != nil {
			return
		}
		if b := AppendCloseResponse(nil, r); !bytes.Equal(b, p) {
			t.Fatalf("re-encoding %x gave %x", p, b)
		}
	})
}
