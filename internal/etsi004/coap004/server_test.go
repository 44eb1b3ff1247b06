package coap004_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/etsi004/coap004"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
)

var streamID = etsi004.KSID{0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44, 0x00, 0x00}

var metadata = []byte(`{"age":5,"hops":0}`)

// fakeService is a small etsi004.Service: one known stream, keys whose
// bytes are their index, and a few triggers:
// destination "SLOW" blocks for QoS.Timeout ms; index 999 fails, 998 is
// malformed.
type fakeService struct {
	mu      sync.Mutex
	callers []qkd.SAEID // guarded by mu
}

func (s *fakeService) record(c qkd.SAEID) {
	s.mu.Lock()
	s.callers = append(s.callers, c)
	s.mu.Unlock()
}

func (s *fakeService) lastCaller() qkd.SAEID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.callers) == 0 {
		return ""
	}
	return s.callers[len(s.callers)-1]
}

func (s *fakeService) OpenConnect(ctx context.Context, caller qkd.SAEID, req etsi004.OpenRequest) (etsi004.OpenResponse, error) {
	s.record(caller)
	if req.Destination == "SLOW" {
		select {
		case <-time.After(time.Duration(req.QoS.Timeout) * time.Millisecond): // the call's own blocking, not test synchronisation
		case <-ctx.Done():
			return etsi004.OpenResponse{}, ctx.Err()
		}
		return etsi004.OpenResponse{Status: etsi004.StatusTimeout, QoS: req.QoS}, nil
	}
	if !req.KeyStreamID.IsNull() && req.KeyStreamID != streamID {
		return etsi004.OpenResponse{Status: etsi004.StatusKSIDInUse, QoS: req.QoS}, nil
	}
	q := req.QoS
	q.KeyChunkSize = 32
	return etsi004.OpenResponse{Status: etsi004.StatusPeerNotConnected, QoS: q, KeyStreamID: streamID}, nil
}

func (s *fakeService) GetKey(_ context.Context, caller qkd.SAEID, req etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error) {
	s.record(caller)
	switch {
	case req.Index == 999:
		return etsi004.GetKeyResponse{}, errors.New("store gone")
	case req.Index == 998:
		return etsi004.GetKeyResponse{}, etsi004.ErrBadRequest
	case req.KeyStreamID != streamID:
		return etsi004.GetKeyResponse{Status: etsi004.StatusPeerNotConnectedGK, Index: req.Index}, nil
	case req.MetadataSize != 0 && int(req.MetadataSize) < len(metadata):
		return etsi004.GetKeyResponse{Status: etsi004.StatusMetadataTooSmall, Index: req.Index, MetadataSize: uint32(len(metadata))}, nil
	}
	r := etsi004.GetKeyResponse{Index: req.Index, Key: bytes.Repeat([]byte{byte(req.Index)}, 32)}
	if req.MetadataSize != 0 {
		r.Metadata = metadata
	}
	return r, nil
}

func (s *fakeService) Close(_ context.Context, caller qkd.SAEID, req etsi004.CloseRequest) (etsi004.CloseResponse, error) {
	s.record(caller)
	if req.KeyStreamID != streamID {
		return etsi004.CloseResponse{Status: etsi004.StatusPeerNotConnectedGK}, nil
	}
	return etsi004.CloseResponse{}, nil
}

// testServer serves a fakeService on loopback UDP, TCP and TLS.
type testServer struct {
	svc      *fakeService
	udp, tcp string
	tls      string
	dtls     string
	// dtlsOn: DTLS on a UDP socket bound before the server
	// (coapx.ListenDTLSOn, as qkms net up binds every port first).
	dtlsOn string
	ca     *pki.CA
}

func startServer(t *testing.T, opts coap004.Options) *testServer {
	t.Helper()
	ts := &testServer{svc: &fakeService{}}
	r := coapx.NewRouter(nil)
	if err := coap004.Register(r, ts.svc, opts); err != nil {
		t.Fatal(err)
	}
	srv := coapx.NewServer(r.Mux(), nil)
	t.Cleanup(srv.Shutdown)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.ca, err = pki.InitCA(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ts.ca.IssueServer("kms-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ServerTLSConfig(ts.ca.CertFile(), sp.CertFile, sp.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dcfg, err := coapx.DTLSServerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := coapx.ListenDTLS("127.0.0.1:0", dcfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeUDP(pc) }()
	go func() { _ = srv.ServeTCP(tl) }()
	go func() { _ = srv.ServeTCP(tls.NewListener(sl, cfg)) }()
	prebound, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dlOn, err := coapx.ListenDTLSOn(prebound, dcfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeDTLS(dl) }()
	go func() { _ = srv.ServeDTLS(dlOn) }()
	ts.udp, ts.tcp, ts.tls, ts.dtls = pc.LocalAddr().String(), tl.Addr().String(), sl.Addr().String(), dl.Addr().String()
	ts.dtlsOn = dlOn.Addr().String()
	return ts
}

// dial connects a client of the given transport as caller sae.
func (ts *testServer) dial(t *testing.T, transport string, f coap004.Format, sae qkd.SAEID) *coap004.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	opts := coap004.ClientOptions{Format: f, InsecureCaller: sae}
	var c *coap004.Client
	var err error
	switch transport {
	case "udp":
		c, err = coap004.DialUDP(ctx, ts.udp, opts)
	case "tcp":
		c, err = coap004.DialTCP(ctx, ts.tcp, opts)
	case "tls", "dtls", "dtls-prebound":
		p, perr := ts.ca.IssueClient(string(sae))
		if perr != nil {
			t.Fatal(perr)
		}
		cfg, cerr := pki.ClientTLSConfig(ts.ca.CertFile(), p.CertFile, p.KeyFile, "localhost")
		if cerr != nil {
			t.Fatal(cerr)
		}
		opts.InsecureCaller = "MALLORY" // must be ignored: the certificate names the caller
		switch transport {
		case "tls":
			c, err = coap004.DialTLS(ctx, ts.tls, cfg, opts)
		case "dtls":
			c, err = coap004.DialDTLS(ctx, ts.dtls, cfg, opts)
		default:
			c, err = coap004.DialDTLS(ctx, ts.dtlsOn, cfg, opts)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Hangup() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCalls runs every call over UDP, TCP, TLS and DTLS in both formats.
func TestCalls(t *testing.T) {
	ts := startServer(t, coap004.Options{InsecureCallerQuery: true})
	for _, transport := range []string{"udp", "tcp", "tls", "dtls", "dtls-prebound"} {
		for _, f := range []coap004.Format{coap004.CBOR, coap004.JSON} {
			t.Run(transport+"/"+f.String(), func(t *testing.T) {
				ctx := testCtx(t)
				c := ts.dial(t, transport, f, "SAE_A")
				open, err := c.OpenConnect(ctx, etsi004.OpenRequest{Source: "sae://SAE_A", Destination: "sae://SAE_B", QoS: etsi004.QoS{Timeout: 500}})
				want := etsi004.OpenResponse{Status: etsi004.StatusPeerNotConnected, QoS: etsi004.QoS{KeyChunkSize: 32, Timeout: 500}, KeyStreamID: streamID}
				if err != nil || open != want {
					t.Fatalf("OpenConnect = %+v, %v, want %+v", open, err, want)
				}
				if got := ts.svc.lastCaller(); got != "SAE_A" {
					t.Errorf("service saw caller %q, want SAE_A", got)
				}
				open, err = c.OpenConnect(ctx, etsi004.OpenRequest{Source: "SAE_A", Destination: "SAE_B", KeyStreamID: etsi004.KSID{1}})
				if err != nil || open.Status != etsi004.StatusKSIDInUse {
					t.Errorf("OpenConnect(other KSID) = %+v, %v, want status 5", open, err)
				}
				gk, err := c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: streamID, Index: 7, MetadataSize: 1024})
				if err != nil || gk.Status != 0 || gk.Index != 7 || !bytes.Equal(gk.Key, bytes.Repeat([]byte{7}, 32)) || !bytes.Equal(gk.Metadata, metadata) {
					t.Errorf("GetKey = %+v, %v", gk, err)
				}
				gk, err = c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: streamID, Index: 8, MetadataSize: 4})
				if err != nil || gk.Status != etsi004.StatusMetadataTooSmall || gk.MetadataSize != uint32(len(metadata)) || gk.Key != nil {
					t.Errorf("GetKey(small buffer) = %+v, %v, want status 8 with size %d", gk, err, len(metadata))
				}
				gk, err = c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: etsi004.KSID{2}, Index: 8})
				if err != nil || gk.Status != etsi004.StatusPeerNotConnectedGK {
					t.Errorf("GetKey(unknown KSID) = %+v, %v, want status 3", gk, err)
				}
				cl, err := c.Close(ctx, etsi004.CloseRequest{KeyStreamID: streamID})
				if err != nil || cl.Status != 0 {
					t.Errorf("Close = %+v, %v", cl, err)
				}
			})
		}
	}
}

// TestFailures: requests that are not carried out get a CoAP error code.
func TestFailures(t *testing.T) {
	ts := startServer(t, coap004.Options{InsecureCallerQuery: true})
	c := ts.dial(t, "tcp", coap004.JSON, "SAE_A")
	ctx := testCtx(t)
	_, err := c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: streamID, Index: 999})
	wantCode(t, "service error", err, codes.InternalServerError)
	_, err = c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: streamID, Index: 998})
	wantCode(t, "service ErrBadRequest", err, codes.BadRequest)
	if !errors.Is(err, etsi004.ErrBadRequest) {
		t.Errorf("4.00 error %v is not etsi004.ErrBadRequest", err)
	}
	_, err = c.Close(ctx, etsi004.CloseRequest{})
	wantCode(t, "NULL KSID on close", err, codes.BadRequest)

	anon := ts.dial(t, "tcp", coap004.CBOR, "")
	_, err = anon.Close(ctx, etsi004.CloseRequest{KeyStreamID: streamID})
	wantCode(t, "no sae=", err, codes.Unauthorized)

	raw, err := coapx.DialTCP(ctx, ts.tcp, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	q := message.Option{ID: message.URIQuery, Value: []byte("sae=SAE_A")}
	for _, tt := range []struct {
		name    string
		cf      message.MediaType
		body    string
		opts    []message.Option
		want    codes.Code
		diagnos string
	}{
		{"malformed JSON", message.AppJSON, `{"key_stream_id":`, nil, codes.BadRequest, "malformed"},
		{"unknown field", message.AppJSON, `{"key_stream_id":"550e8400-e29b-41d4-a716-446655440000","x":1}`, nil, codes.BadRequest, "unknown field"},
		{"malformed CBOR", message.AppCBOR, "\xa1", nil, codes.BadRequest, "malformed"},
		{"text/plain", message.TextPlain, `{}`, nil, codes.UnsupportedMediaType, "content-format"},
		{"accept octet-stream", message.AppJSON, `{"key_stream_id":"550e8400-e29b-41d4-a716-446655440000"}`, []message.Option{{ID: message.Accept, Value: []byte{42}}}, codes.NotAcceptable, "accept"},
		{"too large", message.AppJSON, strings.Repeat(" ", coap004.MaxRequestSize+1), nil, codes.RequestEntityTooLarge, "4096"},
		{"bad sae", message.AppJSON, `{}`, []message.Option{{ID: message.URIQuery, Value: []byte("sae=a b")}}, codes.BadRequest, "sae"},
	} {
		opts := tt.opts
		if !hasQuery(opts) {
			opts = append(opts, q)
		}
		resp, err := raw.Post(ctx, coap004.PathClose, tt.cf, strings.NewReader(tt.body), opts...)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		body, _ := resp.ReadBody()
		if resp.Code() != tt.want || !strings.Contains(string(body), tt.diagnos) {
			t.Errorf("%s: answer %v %q, want %v with %q", tt.name, resp.Code(), body, tt.want, tt.diagnos)
		}
	}
	resp, err := raw.Get(ctx, coap004.PathGetKey, q)
	if err != nil || resp.Code() != codes.MethodNotAllowed {
		t.Errorf("GET %s = %v, %v, want 4.05", coap004.PathGetKey, resp, err)
	}
}

func hasQuery(opts []message.Option) bool {
	for _, o := range opts {
		if o.ID == message.URIQuery {
			return true
		}
	}
	return false
}

func wantCode(t *testing.T, name string, err error, code codes.Code) {
	t.Helper()
	var se *coap004.StatusError
	if !errors.As(err, &se) || se.Code != code {
		t.Errorf("%s: error %v, want CoAP %v", name, err, code)
	}
}

// TestNoCertificateNoCaller: without the test-only query mode a plain
// connection has no caller.
func TestNoCertificateNoCaller(t *testing.T) {
	ts := startServer(t, coap004.Options{})
	ctx := testCtx(t)
	for _, transport := range []string{"udp", "tcp"} {
		c := ts.dial(t, transport, coap004.CBOR, "SAE_A")
		_, err := c.Close(ctx, etsi004.CloseRequest{KeyStreamID: streamID})
		wantCode(t, transport, err, codes.Unauthorized)
	}
	for _, transport := range []string{"tls", "dtls"} {
		c := ts.dial(t, transport, coap004.CBOR, qkd.SAEID("SAE_B_"+transport))
		if r, err := c.Close(ctx, etsi004.CloseRequest{KeyStreamID: streamID}); err != nil || r.Status != 0 {
			t.Errorf("Close over %s = %+v, %v", transport, r, err)
		}
		if got, want := ts.svc.lastCaller(), qkd.SAEID("SAE_B_"+transport); got != want {
			t.Errorf("caller over %s = %q, want %s (the certificate's CN)", transport, got, want)
		}
	}
}

// TestDTLSNeedsClientCertificate: a DTLS client without a certificate, or
// with one of another CA, never completes the handshake.
func TestDTLSNeedsClientCertificate(t *testing.T) {
	ts := startServer(t, coap004.Options{InsecureCallerQuery: true})
	other, err := pki.InitCA(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.IssueClient("SAE_A")
	if err != nil {
		t.Fatal(err)
	}
	for name, files := range map[string][2]string{"no certificate": {"", ""}, "foreign CA": {foreign.CertFile, foreign.KeyFile}} {
		cfg, err := pki.ClientTLSConfig(ts.ca.CertFile(), files[0], files[1], "localhost")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := coap004.DialDTLS(ctx, ts.dtls, cfg, coap004.ClientOptions{InsecureCaller: "SAE_A"})
		if err == nil {
			_, err = c.Close(ctx, etsi004.CloseRequest{KeyStreamID: streamID})
			_ = c.Hangup()
		}
		cancel()
		if err == nil {
			t.Errorf("%s: DTLS call succeeded, want the handshake refused", name)
		}
	}
	if got := ts.svc.lastCaller(); got != "" {
		t.Errorf("service was called by %q", got)
	}
}

// TestWellKnownCore: the three resources are listed with rt, if and ct.
func TestWellKnownCore(t *testing.T) {
	ts := startServer(t, coap004.Options{})
	ctx := testCtx(t)
	raw, err := coapx.DialUDP(ctx, ts.udp, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	resp, err := raw.Get(ctx, coapx.WellKnownCore)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := resp.ReadBody()
	for _, call := range []string{"close", "get_key", "open_connect"} {
		want := `</etsi004/` + call + `>;rt="etsi.qkd.004.` + call + `";if="qkms.etsi004.app";ct="60 50"`
		if !strings.Contains(string(body), want) {
			t.Errorf("/.well-known/core = %s, want it to list %s", body, want)
		}
	}
}

// TestSlowCallOverUDP: a call that blocks 3 s (beyond CoAP's 2 s ACK
// timeout) still gets its answer (a separate response), over UDP and DTLS,
// in both formats and concurrently with a quick call on another
// connection.
func TestSlowCallOverUDP(t *testing.T) {
	ts := startServer(t, coap004.Options{InsecureCallerQuery: true})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for _, tf := range []struct {
		transport string
		f         coap004.Format
	}{{"udp", coap004.CBOR}, {"udp", coap004.JSON}, {"dtls", coap004.CBOR}, {"dtls", coap004.JSON}} {
		f := tf.f
		c := ts.dial(t, tf.transport, f, "SAE_A")
		wg.Go(func() {
			r, err := c.OpenConnect(ctx, etsi004.OpenRequest{Source: "SAE_A", Destination: "SLOW", QoS: etsi004.QoS{Timeout: 3000}})
			if err != nil || r.Status != etsi004.StatusTimeout {
				t.Errorf("%v: slow OpenConnect = %+v, %v, want status 6", f, r, err)
			}
		})
	}
	c := ts.dial(t, "udp", coap004.CBOR, "SAE_A")
	if r, err := c.Close(ctx, etsi004.CloseRequest{KeyStreamID: streamID}); err != nil || r.Status != 0 {
		t.Errorf("Close during slow calls = %+v, %v", r, err)
	}
	wg.Wait()
}
