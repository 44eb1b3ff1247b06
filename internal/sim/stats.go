package sim

import (
	"math"
	"slices"
	"time"
)

// Jain is Jain's fairness index of x, (Σx)² / (n·Σx²): 1 when every x is
// equal, 1/n when one takes everything. It is 0 for an empty x or one of
// zeros only.
func Jain(x []float64) float64 {
	var s, s2 float64
	for _, v := range x {
		s += v
		s2 += v * v
	}
	if len(x) == 0 || s2 == 0 {
		return 0
	}
	return s * s / (float64(len(x)) * s2)
}

// Percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of sorted:
// the smallest value with at least p % of the sample at or below it. It is
// 0 for an empty sample.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

// Latency is the p50 and p99 of a sample, in milliseconds.
type Latency struct {
	N     int     `json:"n"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
}

// latencyOf sorts d and summarises it.
func latencyOf(d []time.Duration) Latency {
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return math.Round(float64(x)/1e3) / 1e3 }
	return Latency{N: len(d), P50ms: ms(Percentile(d, 50)), P99ms: ms(Percentile(d, 99))}
}

// ratio is a/b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// round3 rounds to three decimals (JSON and tables).
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
