package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"
)

// handshakeResult is what the server side of one connection saw.
type handshakeResult struct {
	state tls.ConnectionState
	err   error
}

// handshake runs one TLS connection over loopback: the server completes the
// handshake and writes "ok"; the client reads it, which in TLS 1.3 is where a
// rejected client certificate shows up on the client side.
func handshake(t *testing.T, server, client *tls.Config) (handshakeResult, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()

	done := make(chan handshakeResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- handshakeResult{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		tc := tls.Server(c, server)
		if err := tc.HandshakeContext(ctx); err != nil {
			done <- handshakeResult{err: err}
			return
		}
		_, err = tc.Write([]byte("ok"))
		done <- handshakeResult{state: tc.ConnectionState(), err: err}
	}()

	d := tls.Dialer{Config: client}
	c, clientErr := d.DialContext(ctx, "tcp", ln.Addr().String())
	if clientErr == nil {
		_ = c.SetDeadline(deadline)
		buf := make([]byte, 2)
		_, clientErr = io.ReadFull(c, buf)
		c.Close()
	}
	return <-done, clientErr
}

func TestTLSHandshake(t *testing.T) {
	ca, _ := newCA(t, Options{})
	srv, err := ca.IssueServer("node-A", nil)
	must(t, err)
	sae, err := ca.IssueClient("SAE_A1")
	must(t, err)
	other, _ := newCA(t, Options{})
	alien, err := other.IssueClient("SAE_A1")
	must(t, err)
	alienSrv, err := other.IssueServer("node-A", nil)
	must(t, err)

	serverCfg, err := ServerTLSConfig(ca.CertFile(), srv.CertFile, srv.KeyFile)
	must(t, err)
	clientCfg := func(caFile, cert, key, name string) *tls.Config {
		cfg, err := ClientTLSConfig(caFile, cert, key, name)
		must(t, err)
		return cfg
	}
	alienServerCfg, err := ServerTLSConfig(ca.CertFile(), alienSrv.CertFile, alienSrv.KeyFile)
	must(t, err)

	tests := []struct {
		name      string
		server    *tls.Config
		client    *tls.Config
		wantCN    string // "" = the handshake must fail on the server
		clientErr bool
	}{
		{"SAE client", serverCfg, clientCfg(ca.CertFile(), sae.CertFile, sae.KeyFile, "localhost"), "SAE_A1", false},
		{"node as client", serverCfg, clientCfg(ca.CertFile(), srv.CertFile, srv.KeyFile, "127.0.0.1"), "node-A", false},
		{"no client certificate", serverCfg, clientCfg(ca.CertFile(), "", "", "localhost"), "", true},
		{"client certificate of another CA", serverCfg, clientCfg(ca.CertFile(), alien.CertFile, alien.KeyFile, "localhost"), "", true},
		{"server certificate of another CA", alienServerCfg, clientCfg(ca.CertFile(), sae.CertFile, sae.KeyFile, "localhost"), "", true},
		{"wrong server name", serverCfg, clientCfg(ca.CertFile(), sae.CertFile, sae.KeyFile, "kms.example"), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, clientErr := handshake(t, tt.server, tt.client)
			if (clientErr != nil) != tt.clientErr {
				t.Errorf("client error = %v, want error %v", clientErr, tt.clientErr)
			}
			if tt.wantCN == "" {
				if res.err == nil {
					t.Fatal("server accepted the connection, want refused")
				}
				t.Logf("refused: server %v; client %v", res.err, clientErr)
				return
			}
			if res.err != nil {
				t.Fatalf("server handshake: %v", res.err)
			}
			if cn, ok := PeerCN(&res.state); !ok || cn != tt.wantCN {
				t.Errorf("PeerCN = %q, %v; want %q, true", cn, ok, tt.wantCN)
			}
			if res.state.Version != tls.VersionTLS13 {
				t.Errorf("version = %x, want TLS 1.3", res.state.Version)
			}
			if res.state.CurveID != tls.X25519MLKEM768 {
				t.Errorf("CurveID = %v, want X25519MLKEM768", res.state.CurveID)
			}
		})
	}
}

func TestTLSConfig(t *testing.T) {
	ca, _ := newCA(t, Options{})
	srv, err := ca.IssueServer("node-A", nil)
	must(t, err)
	s, err := ServerTLSConfig(ca.CertFile(), srv.CertFile, srv.KeyFile)
	must(t, err)
	c, err := ClientTLSConfig(ca.CertFile(), srv.CertFile, srv.KeyFile, "localhost")
	must(t, err)
	for _, cfg := range []*tls.Config{s, c} {
		if cfg.MinVersion != tls.VersionTLS12 || len(cfg.CurvePreferences) == 0 || cfg.CurvePreferences[0] != tls.X25519MLKEM768 {
			t.Errorf("MinVersion %x, CurvePreferences %v; want TLS 1.2, X25519MLKEM768 first", cfg.MinVersion, cfg.CurvePreferences)
		}
	}
	if s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil {
		t.Errorf("server ClientAuth = %v, ClientCAs set %v", s.ClientAuth, s.ClientCAs != nil)
	}
	s.CurvePreferences[0] = tls.CurveP384
	if c.CurvePreferences[0] != tls.X25519MLKEM768 {
		t.Error("configs share one CurvePreferences slice")
	}

	bad := []struct {
		name string
		err  error
	}{
		{"missing CA", func() error { _, err := ServerTLSConfig("/nonexistent/ca.pem", srv.CertFile, srv.KeyFile); return err }()},
		{"CA file without certificate", func() error { _, err := ClientTLSConfig(srv.KeyFile, "", "", "x"); return err }()},
		{"key without cert", func() error { _, err := ClientTLSConfig(ca.CertFile(), "", srv.KeyFile, "x"); return err }()},
		{"missing server key", func() error { _, err := ServerTLSConfig(ca.CertFile(), srv.CertFile, "/nonexistent"); return err }()},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: no error", b.name)
		}
	}
}

func TestPeerCN(t *testing.T) {
	if cn, ok := PeerCN(nil); ok || cn != "" {
		t.Errorf("PeerCN(nil) = %q, %v", cn, ok)
	}
	ca, _ := newCA(t, Options{})
	p, err := ca.IssueClient("SAE_A1")
	must(t, err)
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{p.Cert}}
	if cn, ok := PeerCN(unverified); ok || cn != "" {
		t.Errorf("PeerCN(unverified peer certificate) = %q, %v; want \"\", false", cn, ok)
	}
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{p.Cert, ca.Cert()}}}
	if cn, ok := PeerCN(verified); !ok || cn != "SAE_A1" {
		t.Errorf("PeerCN(verified) = %q, %v; want SAE_A1, true", cn, ok)
	}
}
