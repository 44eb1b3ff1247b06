package etsi014

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/secret"
)

// Header values, shared read-only by every response.
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
	noCache         = []string{"no-cache"}
)

// statusJSON is the Status format of clause 6.1 (status_extension omitted).
type statusJSON struct {
	SourceKMEID      string `json:"source_KME_ID"`
	TargetKMEID      string `json:"target_KME_ID"`
	MasterSAEID      string `json:"master_SAE_ID"`
	SlaveSAEID       string `json:"slave_SAE_ID"`
	KeySize          int    `json:"key_size"`
	StoredKeyCount   int    `json:"stored_key_count"`
	MaxKeyCount      int    `json:"max_key_count"`
	MaxKeyPerRequest int    `json:"max_key_per_request"`
	MaxKeySize       int    `json:"max_key_size"`
	MinKeySize       int    `json:"min_key_size"`
	MaxSAEIDCount    int    `json:"max_SAE_ID_count"`
}

func newStatusJSON(st kms.Status) statusJSON {
	return statusJSON{
		SourceKMEID:      string(st.SourceKME),
		TargetKMEID:      string(st.TargetKME),
		MasterSAEID:      string(st.Master),
		SlaveSAEID:       string(st.Slave),
		KeySize:          st.KeySize,
		StoredKeyCount:   st.StoredKeyCount,
		MaxKeyCount:      st.MaxKeyCount,
		MaxKeyPerRequest: st.MaxKeyPerRequest,
		MaxKeySize:       st.MaxKeySize,
		MinKeySize:       st.MinKeySize,
		MaxSAEIDCount:    st.MaxSAEIDCount,
	}
}

// errorJSON is the Error format of clause 6.5.
type errorJSON struct {
	Message string           `json:"message"`
	Details []map[string]any `json:"details,omitempty"`
}

// writeJSON writes v (never key material) as the JSON body of a response.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only error details of unexpected types can fail; keep the message.
		if e, ok := v.(errorJSON); ok {
			b, _ = json.Marshal(errorJSON{Message: e.Message})
		} else {
			code, b = http.StatusServiceUnavailable, []byte(`{"message":"internal error"}`)
		}
	}
	writeBody(w, code, b)
}

// writeStatusError writes an Error body for a status outside the domain
// error mapping (404, 405).
func writeStatusError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorJSON{Message: msg})
}

func writeBody(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// Key containers are built in pooled buffers that are wiped after every
// use; buffers that grew past maxPooledKeys are wiped and dropped.
const maxPooledKeys = 64 << 10

var keyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeKeys writes the Key container of clause 6.3 and wipes the keys.
func writeKeys(w http.ResponseWriter, keys []kms.Key) error {
	bp := keyBufPool.Get().(*[]byte)
	err := writeKeysBuf(w, keys, bp)
	if cap(*bp) <= maxPooledKeys {
		keyBufPool.Put(bp)
	}
	return err
}

// writeKeysBuf encodes keys into *bp (grown once to the exact size, so no
// copy of key bytes is left behind by append), wipes the keys, writes the
// response and wipes the buffer.
func writeKeysBuf(w http.ResponseWriter, keys []kms.Key, bp *[]byte) error {
	n := keyContainerLen(keys)
	if cap(*bp) < n {
		*bp = make([]byte, 0, n)
	}
	buf := appendKeyContainer((*bp)[:0], keys)
	wipeKeys(keys)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	h["Pragma"] = noCache
	h["Content-Length"] = []string{strconv.Itoa(len(buf))}
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf)
	secret.Wipe(buf)
	*bp = buf[:0]
	return err
}

// Fixed parts of the key container.
const (
	containerHead = `{"keys":[`
	containerTail = `]}`
	keyIDHead     = `{"key_ID":"`
	keyHead       = `","key":"`
	keyTail       = `"}`
	uuidLen       = len("550e8400-e29b-41d4-a716-446655440000")
)

// keyContainerLen is the exact length appendKeyContainer appends.
func keyContainerLen(keys []kms.Key) int {
	n := len(containerHead) + len(containerTail)
	for i, k := range keys {
		if i > 0 {
			n++ // comma
		}
		n += len(keyIDHead) + uuidLen + len(keyHead) + base64.StdEncoding.EncodedLen(k.Bytes.Len()) + len(keyTail)
	}
	return n
}

// appendKeyContainer appends {"keys":[{"key_ID":"<uuid>","key":"<base64>"},...]}.
// Key IDs are hex and base64 is padded standard alphabet: nothing to escape.
func appendKeyContainer(dst []byte, keys []kms.Key) []byte {
	dst = append(dst, containerHead...)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, keyIDHead...)
		dst = append(dst, k.ID.String()...)
		dst = append(dst, keyHead...)
		dst = base64.StdEncoding.AppendEncode(dst, k.Bytes.Expose())
		dst = append(dst, keyTail...)
	}
	return append(dst, containerTail...)
}

func wipeKeys(keys []kms.Key) {
	for i := range keys {
		keys[i].Bytes.Wipe()
	}
}
