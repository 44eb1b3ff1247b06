package itsmac

import "testing"

// FuzzVerify feeds arbitrary keys, tags and messages to the verifiers: they
// must never panic, must accept their own tags and must agree with the
// reference arithmetic.
func FuzzVerify(f *testing.F) {
	for _, v := range loadJSON[polyVector](f, "poly1305_rfc8439.json") {
		f.Add([]byte(v.Key), []byte(v.Tag), []byte(v.Msg), uint8(7))
	}
	f.Add([]byte{}, []byte{}, []byte{}, uint8(0))
	f.Add(make([]byte, 31), make([]byte, 17), []byte("x"), uint8(1))
	f.Fuzz(func(t *testing.T, key, tag, msg []byte, cut uint8) {
		at := min(int(cut), len(msg))
		parts := [][]byte{msg[:at], msg[at:]}
		k := macKey(key)
		ok := Verify(k, tag, parts...)
		if len(key) != KeySize {
			if ok {
				t.Fatalf("Verify(%d-byte key) = true", len(key))
			}
		} else if want := refPoly1305(key, msg); ok != (len(tag) == TagSize && string(tag) == string(want[:])) {
			t.Fatalf("Verify(%x, %x, %x) = %v, reference tag %x", key, tag, msg, ok, want)
		}
		if got, err := Sum(k, parts...); err == nil && !Verify(k, got[:], msg) {
			t.Fatalf("Verify(Sum(%x, %x)) = false", key, msg)
		}
		half := len(key) / 2
		n := uint64(len(msg))<<8 | uint64(cut)
		r, pad := macKey(key[:half]), macKey(key[half:])
		wcOK := WCVerify(r, pad, n, tag, parts...)
		if got, err := WCSum(r, pad, n, parts...); err == nil {
			if !WCVerify(r, pad, n, got[:], msg) {
				t.Fatalf("WCVerify(WCSum(%x, %d, %x)) = false", key, n, msg)
			}
			if want := refWC(key[:half], key[half:], n, msg); got != want {
				t.Fatalf("WCSum(%x, %d, %x) = %x, reference %x", key, n, msg, got, want)
			}
			if ok := string(tag) == string(got[:]); wcOK != ok {
				t.Fatalf("WCVerify(%x, %d, %x, %x) = %v, want %v", key, n, tag, msg, wcOK, ok)
			}
		} else if wcOK {
			t.Fatalf("WCVerify with bad lengths (%d, %d) = true", half, len(key)-half)
		}
	})
}
