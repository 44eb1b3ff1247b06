package streams

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestMetadataJSON: GET_KEY's metadata is JSON with age, hops and, for
// hybrid chunks, their suite; never longer than metaMax.
func TestMetadataJSON(t *testing.T) {
	for _, tt := range []struct {
		age   uint32
		hops  uint8
		suite string
		want  string
	}{
		{5, 0, "", `{"age":5,"hops":0}`},
		{7, 1, "ML-KEM-768+ML-DSA-65+xor-shake256", `{"age":7,"hops":1,"hybrid":"ML-KEM-768+ML-DSA-65+xor-shake256"}`},
		{1, 2, strings.Repeat("x", maxSuite+1), `{"age":1,"hops":2}`}, // too long: left out
	} {
		got := metadata(tt.age, tt.hops, tt.suite)
		if string(got) != tt.want || !json.Valid(got) || uint32(len(got)) > metaMax {
			t.Errorf("metadata(%d, %d, %q) = %s, want %s (at most %d bytes)", tt.age, tt.hops, tt.suite, got, tt.want, metaMax)
		}
	}
}
