package etsi014

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

// testKeys returns n random keys of the given byte sizes (cycled) and the
// buffers behind them.
func testKeys(t *testing.T, n int, sizes ...int) ([]kms.Key, [][]byte) {
	t.Helper()
	keys := make([]kms.Key, n)
	bufs := make([][]byte, n)
	for i := range keys {
		id, err := qkd.NewKeyID(nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := secret.Random(nil, sizes[i%len(sizes)])
		if err != nil {
			t.Fatal(err)
		}
		keys[i], bufs[i] = kms.Key{ID: id, Bytes: b}, b.Expose()
	}
	return keys, bufs
}

// TestKeyContainer checks the hand-written encoding against encoding/json.
func TestKeyContainer(t *testing.T) {
	type keyJSON struct {
		KeyID string `json:"key_ID"`
		Key   []byte `json:"key"` // encoding/json: padded standard base64
	}
	for _, n := range []int{0, 1, 2, 128} {
		keys, bufs := testKeys(t, n, 32, 1, 2, 3, 128)
		want := struct {
			Keys []keyJSON `json:"keys"`
		}{Keys: []keyJSON{}}
		for i, k := range keys {
			want.Keys = append(want.Keys, keyJSON{k.ID.String(), bufs[i]})
		}
		wantJSON, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got := appendKeyContainer(nil, keys)
		if !bytes.Equal(got, wantJSON) {
			t.Errorf("appendKeyContainer(%d keys) =\n%s\nwant\n%s", n, got, wantJSON)
		}
		if l := keyContainerLen(keys); l != len(got) {
			t.Errorf("keyContainerLen(%d keys) = %d, want %d", n, l, len(got))
		}
	}
}

func TestWriteKeysWipes(t *testing.T) {
	for _, start := range []int{0, 16, 4096} { // too small, far too small, big enough
		keys, bufs := testKeys(t, 5, 32)
		want := string(appendKeyContainer(nil, keys))
		buf := make([]byte, 0, start)
		rec := httptest.NewRecorder()
		if err := writeKeysBuf(rec, keys, &buf); err != nil {
			t.Fatal(err)
		}
		if len(buf) != 0 || slices.ContainsFunc(buf[:cap(buf)], func(c byte) bool { return c != 0 }) {
			t.Errorf("start cap %d: buffer not wiped after writeKeysBuf", start)
		}
		for i, b := range bufs {
			if slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) || keys[i].Bytes.Len() != 0 {
				t.Errorf("start cap %d: key %d not wiped", start, i)
			}
		}
		if rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("start cap %d: response %d %s, want 200 %s", start, rec.Code, rec.Body, want)
		}
	}
}

func TestStatusJSONFields(t *testing.T) {
	b, err := json.Marshal(newStatusJSON(kms.Status{}))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"key_size", "master_SAE_ID", "max_SAE_ID_count", "max_key_count", "max_key_per_request",
		"max_key_size", "min_key_size", "slave_SAE_ID", "source_KME_ID", "stored_key_count", "target_KME_ID",
	}
	if diff := cmp.Diff(want, slices.Sorted(maps.Keys(got))); diff != "" {
		t.Errorf("status fields (-want +got):\n%s", diff)
	}
}
