package e2e

import (
	"crypto/tls"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/pki"
)

// TestTLSListenersPreferHybridKeyExchange connects to every TLS listener
// of a running node (ETSI 014, QUICKS, ETSI 004 over CoAP/TLS and over the
// reference TCP/TLS framing) and to the controller: with a client that
// offers X25519MLKEM768 (what Go clients do by default) the server
// negotiates it, and with a client that lists X25519 first the server
// still picks the hybrid post-quantum group (its own preference),
// at the cost of a HelloRetryRequest. A client without it gets
// X25519.
func TestTLSListenersPreferHybridKeyExchange(t *testing.T) {
	n := startNet(t, "line2.json", nil, nil)
	info := n.Info
	a := nodeOf(info, "A")
	s := saeOf(info, "SAE_A1")
	host := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
	}
	listeners := []struct{ name, addr, cert, key string }{
		{"etsi014", host(a.ETSI014URL), s.Cert, s.Key},
		{"quicks", host(a.KMSSDNURL), info.Operator.Cert, info.Operator.Key},
		{"etsi004 coaps+tcp", a.ETSI004Addr, s.Cert, s.Key},
		{"etsi004 tcp/tls", a.ETSI004TCPAddr, s.Cert, s.Key},
		{"controller", host(info.Controller.URL), info.Operator.Cert, info.Operator.Key},
	}
	for _, l := range listeners {
		for _, tt := range []struct {
			client []tls.CurveID
			want   tls.CurveID
		}{
			{nil, tls.X25519MLKEM768}, // Go's default client
			{[]tls.CurveID{tls.X25519, tls.X25519MLKEM768}, tls.X25519MLKEM768},
			{[]tls.CurveID{tls.X25519, tls.CurveP256}, tls.X25519},
		} {
			cfg, err := pki.ClientTLSConfig(info.CA, l.cert, l.key, "")
			if err != nil {
				t.Fatal(err)
			}
			cfg.CurvePreferences = tt.client
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", l.addr, cfg)
			if err != nil {
				t.Errorf("%s: %v", l.name, err)
				continue
			}
			st := c.ConnectionState()
			_ = c.Close()
			if st.Version != tls.VersionTLS13 || st.CurveID != tt.want {
				t.Errorf("%s, client groups %v: TLS %x, group %v; want TLS 1.3, %v", l.name, tt.client, st.Version, st.CurveID, tt.want)
			}
		}
	}
}
