package itsmac

import (
	"fmt"
	"testing"
)

var benchSizes = []int{32, 1 << 10, 64 << 10}

func BenchmarkSum(b *testing.B) {
	key := macKey(make([]byte, KeySize))
	for _, n := range benchSizes {
		msg := make([]byte, n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Sum(key, msg)
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	key := macKey(make([]byte, KeySize))
	for _, n := range benchSizes {
		msg := make([]byte, n)
		tag, _ := Sum(key, msg)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if !Verify(key, tag[:], msg) {
					b.Fatal("Verify = false")
				}
			}
		})
	}
}

func BenchmarkWCSum(b *testing.B) {
	r, pad := macKey(make([]byte, HashKeySize)), macKey(make([]byte, PadSize))
	for _, n := range benchSizes {
		msg := make([]byte, n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = WCSum(r, pad, 7, msg)
			}
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
