package peer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/kmsproto"
)

// coapClient finds libcoap's coap-client (Debian libcoap3-bin also installs
// it as coap-client-{notls,openssl,gnutls}).
func coapClient(t *testing.T) string {
	for _, name := range []string{"coap-client", "coap-client-notls", "coap-client-openssl", "coap-client-gnutls"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("coap-client (libcoap3-bin) not on PATH")
	return ""
}

// TestInteropLibcoap talks to the server with libcoap over UDP and TCP:
// discovery at /.well-known/core and POSTs to a resource.
func TestInteropLibcoap(t *testing.T) {
	bin := coapClient(t)
	s := startServer(t, echoHandler, nil, "127.0.0.1:0", "127.0.0.1:0")
	for _, tt := range []struct{ network, scheme string }{{"udp", "coap"}, {"tcp", "coap+tcp"}} {
		t.Run(tt.network, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			uri := tt.scheme + "://" + s.addr[tt.network] + "/.well-known/core"
			// -B: give up after 10 s instead of libcoap's default 90 s.
			out, err := exec.CommandContext(ctx, bin, "-B", "10", "-m", "get", uri).CombinedOutput()
			if err != nil {
				t.Fatalf("%s -m get %s = %v\n%s", bin, uri, err, out)
			}
			checkLinks(t, strings.TrimSpace(string(out)))

			// A CBOR POST is echoed (3 KiB: block-wise over UDP, both
			// ways); another content format gets 4.15.
			body := strings.Repeat("interop-", 384)
			file := filepath.Join(t.TempDir(), "payload")
			if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ ct, want string }{{"60", body}, {"50", "4.15"}} {
				uri := tt.scheme + "://" + s.addr[tt.network] + Path(kmsproto.GetStatus)
				out, err := exec.CommandContext(ctx, bin, "-B", "10", "-b", "1024", "-m", "post", "-t", c.ct, "-f", file, uri).CombinedOutput()
				if got := strings.TrimSpace(string(out)); err != nil || got != c.want {
					t.Errorf("%s -m post -t %s (%d bytes) %s = %.40q (%d bytes), %v; want %.40q", bin, c.ct, len(body), uri, got, len(got), err, c.want)
				}
			}
		})
	}
}
