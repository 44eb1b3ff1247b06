package etsi014_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/qkms/qkms/internal/etsi014"
	"github.com/qkms/qkms/internal/etsi014/etsi014test"
	"github.com/qkms/qkms/internal/qkd"
)

var _ etsi014.KMS = (*etsi014test.KMS)(nil)

// Test SAEs: A is the master, B its slave, C a third party.
const (
	saeA = "SAE_A"
	saeB = "SAE_B"
	saeC = "SAE_C"
)

// env is an etsi014 server on a real mTLS httptest server with a fake KMS.
type env struct {
	fake      *etsi014test.KMS
	ts        *httptest.Server
	pki       *testPKI
	delivered atomic.Int64
	logs      *syncBuffer

	mu      sync.Mutex
	clients map[string]*http.Client // by CN, guarded by mu
}

// newEnv starts a server; opts may adjust the options (KMS, Logger and
// OnDelivered are set by newEnv). auth is the TLS client auth policy.
func newEnv(t *testing.T, auth tls.ClientAuthType, opts func(*etsi014.Options)) *env {
	t.Helper()
	e := &env{
		fake:    etsi014test.New(),
		pki:     newTestPKI(t),
		logs:    new(syncBuffer),
		clients: make(map[string]*http.Client),
	}
	o := etsi014.Options{
		KMS:         e.fake,
		Logger:      slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnDelivered: func(n int) { e.delivered.Add(int64(n)) },
	}
	if opts != nil {
		opts(&o)
	}
	e.ts = httptest.NewUnstartedServer(etsi014.New(o).Handler())
	e.ts.TLS = e.pki.serverConfig(t, auth)
	e.ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes
	e.ts.StartTLS()
	t.Cleanup(e.ts.Close)
	return e
}

func (e *env) client(t *testing.T, cn string) *http.Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.clients[cn]
	if !ok {
		c = e.pki.client(t, cn)
		e.clients[cn] = c
	}
	return c
}

// response is a read HTTP response.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// do sends method target with body ("" for none) as SAE cn and reads the
// response; header is name, value pairs.
func (e *env) do(t *testing.T, cn, method, target, body string, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.client(t, cn).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// errorBody is the ETSI Error format.
type errorBody struct {
	Message string           `json:"message"`
	Details []map[string]any `json:"details,omitempty"`
}

func (r response) error(t *testing.T) errorBody {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return eb
}

// keyContainer is the ETSI Key container format.
type keyContainer struct {
	Keys []struct {
		KeyID string `json:"key_ID"`
		Key   string `json:"key"`
	} `json:"keys"`
}

// wireKey is one decoded key of a container.
type wireKey struct {
	ID    qkd.KeyID
	Bytes []byte
}

// keys decodes a strict key container: UUID key IDs, padded std base64.
func (r response) keys(t *testing.T) []wireKey {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	var kc keyContainer
	if err := dec.Decode(&kc); err != nil {
		t.Fatalf("key container %q: %v", r.body, err)
	}
	out := make([]wireKey, 0, len(kc.Keys))
	for _, k := range kc.Keys {
		id, err := qkd.ParseKeyID(k.KeyID)
		if err != nil {
			t.Fatalf("key_ID %q: %v", k.KeyID, err)
		}
		b, err := base64.StdEncoding.Strict().DecodeString(k.Key)
		if err != nil {
			t.Fatalf("key of %s is not padded standard base64: %v", k.KeyID, err)
		}
		out = append(out, wireKey{ID: id, Bytes: b})
	}
	return out
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
