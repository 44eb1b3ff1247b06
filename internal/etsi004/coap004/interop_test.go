package coap004_test

import (
	"encoding/hex"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/coapx/coapxtest"
	"github.com/qkms/qkms/internal/etsi004/coap004"
)

// TestSeparateResponseOnTheWire sends a hand-made confirmable POST over UDP
// for a call that blocks 3 s: the server must first acknowledge it with an
// empty ACK, then send the answer as a confirmable 2.04 with the request's
// token (RFC 7252 §5.2.2).
func TestSeparateResponseOnTheWire(t *testing.T) {
	ts := startServer(t, coap004.Options{InsecureCallerQuery: true})
	conn, err := net.Dial("udp", ts.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"source":"SAE_A","destination":"SLOW","qos":{"timeout":3000}}`
	req := []byte{0x41, 0x02, 0x12, 0x34, 0x7a} // CON POST, MID 0x1234, token 7a
	req = append(req, 0xb7)                     // Uri-Path (11), 7 bytes
	req = append(req, "etsi004"...)
	req = append(req, 0x0c) // Uri-Path, 12 bytes
	req = append(req, "open_connect"...)
	req = append(req, 0x11, 50) // Content-Format (12): application/json
	req = append(req, 0x39)     // Uri-Query (15), 9 bytes
	req = append(req, "sae=SAE_A"...)
	req = append(req, 0xff)
	req = append(req, body...)
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(buf[:n]); got != "60001234" {
		t.Fatalf("first datagram = %s, want an empty ACK 60001234", got)
	}
	n, err = conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := buf[:n]
	if n < 5 || m[0] != 0x41 || m[1] != 0x44 || m[4] != 0x7a {
		t.Fatalf("second datagram = %x, want a CON 2.04 with token 7a", m)
	}
	if !strings.Contains(string(m), `"status":6`) {
		t.Errorf("separate response %q lacks status 6", m)
	}
	if _, err := conn.Write([]byte{0x60, 0x00, m[2], m[3]}); err != nil { // ACK it
		t.Fatal(err)
	}
}

// TestLibcoapInterop runs open_connect, get_key and close with libcoap's
// coap-client, JSON payloads, over plain CoAP/UDP and CoAP/TCP in the
// test-only sae= mode, including a call that blocks 3 s.
func TestLibcoapInterop(t *testing.T) {
	client := coapxtest.Client(t)
	ts := startServer(t, coap004.Options{InsecureCallerQuery: true})
	const ks = "550e8400-e29b-41d4-a716-446655440000"
	for _, base := range []string{"coap://" + ts.udp, "coap+tcp://" + ts.tcp} {
		for _, tt := range []struct{ path, body, want string }{
			{"open_connect", `{"source":"sae://SAE_A","destination":"sae://SAE_B","qos":{"timeout":1000}}`,
				`{"status":1,"qos":{"key_chunk_size":32,"max_bps":0,"min_bps":0,"jitter":0,"priority":0,"timeout":1000,"ttl":0,"metadata_mimetype":""},"key_stream_id":"` + ks + `"}`},
			{"get_key", `{"key_stream_id":"` + ks + `","index":1,"metadata_size":64}`,
				`{"status":0,"index":1,"key_buffer":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","metadata":{"age":5,"hops":0}}`},
			{"get_key", `{"key_stream_id":"` + ks + `","index":1,"metadata_size":4}`, `{"status":8,"index":1,"metadata_size":18}`},
			{"close", `{"key_stream_id":"` + ks + `"}`, `{"status":0}`},
			{"close", `{"key_stream_id":"nope"}`, `4.00`},
			{"open_connect", `{"source":"SAE_A","destination":"SLOW","qos":{"timeout":3000}}`, `{"status":6,`}, // blocks 3 s: separate response over UDP
		} {
			uri := base + "/etsi004/" + tt.path + "?sae=SAE_A"
			out, err := exec.Command(client, "-B", "10", "-m", "post", "-t", "50", "-e", tt.body, uri).CombinedOutput()
			if err != nil && tt.want != "4.00" {
				t.Errorf("coap-client POST %s: %v, %s", uri, err, out)
				continue
			}
			t.Logf("coap-client -m post -t 50 -e %q %s\n%s", tt.body, uri, out)
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("coap-client POST %s %s = %s, want %s", uri, tt.body, out, tt.want)
			}
		}
	}
	if ts.svc.lastCaller() != "SAE_A" {
		t.Errorf("caller = %q, want SAE_A", ts.svc.lastCaller())
	}
}

// TestLibcoapTLS: libcoap's OpenSSL client over coaps+tcp with a client
// certificate; the caller is the certificate's CN.
func TestLibcoapTLS(t *testing.T) {
	client, err := exec.LookPath("coap-client-openssl")
	if err != nil {
		t.Skip("coap-client-openssl not installed")
	}
	ts := startServer(t, coap004.Options{})
	p, err := ts.ca.IssueClient("SAE_C")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ts.tls)
	uri := "coaps+tcp://localhost:" + port + "/etsi004/close"
	out, err := exec.Command(client, "-B", "10", "-m", "post", "-t", "50", "-c", p.CertFile, "-j", p.KeyFile, "-R", ts.ca.CertFile(),
		"-e", `{"key_stream_id":"550e8400-e29b-41d4-a716-446655440000"}`, uri).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `{"status":0}`) {
		t.Fatalf("coap-client-openssl POST %s = %s, %v", uri, out, err)
	}
	if got := ts.svc.lastCaller(); got != "SAE_C" {
		t.Errorf("caller = %q, want SAE_C", got)
	}
}

// TestLibcoapDTLS: libcoap's OpenSSL client over coaps:// (DTLS 1.2) with
// a client certificate: the caller is the certificate's CN, and a call
// that blocks 3 s is answered by a separate response.
func TestLibcoapDTLS(t *testing.T) {
	client, err := exec.LookPath("coap-client-openssl")
	if err != nil {
		t.Skip("coap-client-openssl not installed")
	}
	ts := startServer(t, coap004.Options{})
	p, err := ts.ca.IssueClient("SAE_D")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ts.dtls)
	for _, tt := range []struct{ path, body, want string }{
		{"close", `{"key_stream_id":"550e8400-e29b-41d4-a716-446655440000"}`, `{"status":0}`},
		{"open_connect", `{"source":"SAE_D","destination":"SLOW","qos":{"timeout":3000}}`, `{"status":6,`},
	} {
		uri := "coaps://localhost:" + port + "/etsi004/" + tt.path
		out, err := exec.Command(client, "-B", "15", "-m", "post", "-t", "50", "-c", p.CertFile, "-j", p.KeyFile, "-R", ts.ca.CertFile(),
			"-e", tt.body, uri).CombinedOutput()
		if err != nil || !strings.Contains(string(out), tt.want) {
			t.Fatalf("coap-client-openssl POST %s = %s, %v", uri, out, err)
		}
		if got := ts.svc.lastCaller(); got != "SAE_D" {
			t.Errorf("caller = %q, want SAE_D", got)
		}
	}
}
