package coapx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/options/config"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// DTLSIdleTimeout closes a DTLS session that has been silent this long
// (go-coap's default, 16 s, would make an application that asks for a
// key a minute re-handshake every time). Clients of qkms keep their
// sessions alive with CoAP pings well within it.
const DTLSIdleTimeout = 10 * time.Minute

// dtlsKeepAlive is how often a qkms DTLS client pings an idle session.
const dtlsKeepAlive = time.Minute

// dtlsHandshakeTimeout bounds a DTLS handshake (its flights are
// retransmitted within it).
const dtlsHandshakeTimeout = 15 * time.Second

// DTLSServerConfig turns a server TLS configuration (pki.ServerTLSConfig:
// certificate, client CAs, client authentication) into the DTLS 1.2
// options of the same identity: CoAP over DTLS (coaps://, RFC 7252 §9)
// with the same certificates as CoAP over TLS. Cipher suites are pion's
// defaults (ECDHE with AES-GCM for ECDSA certificates), extended master
// secret required.
func DTLSServerConfig(cfg *tls.Config) ([]piondtls.ServerOption, error) {
	if cfg == nil || len(cfg.Certificates) == 0 {
		return nil, errors.New("coapx: DTLS needs a server certificate")
	}
	auth := piondtls.NoClientCert
	switch cfg.ClientAuth {
	case tls.RequireAndVerifyClientCert:
		auth = piondtls.RequireAndVerifyClientCert
	case tls.VerifyClientCertIfGiven:
		auth = piondtls.VerifyClientCertIfGiven
	case tls.NoClientCert:
	default:
		return nil, fmt.Errorf("coapx: client authentication %v has no DTLS equivalent", cfg.ClientAuth)
	}
	opts := []piondtls.ServerOption{
		piondtls.WithCertificates(cfg.Certificates...),
		piondtls.WithClientAuth(auth),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
	}
	if cfg.ClientCAs != nil {
		opts = append(opts, piondtls.WithClientCAs(cfg.ClientCAs))
	}
	return opts, nil
}

// DTLSClientConfig is DTLSServerConfig's counterpart for a client
// configuration (pki.ClientTLSConfig: trusted CAs, server name, client
// certificate).
func DTLSClientConfig(cfg *tls.Config) ([]piondtls.ClientOption, error) {
	if cfg == nil || cfg.RootCAs == nil {
		return nil, errors.New("coapx: DTLS needs trusted CAs")
	}
	opts := []piondtls.ClientOption{
		piondtls.WithRootCAs(cfg.RootCAs),
		piondtls.WithServerName(cfg.ServerName),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
	}
	if len(cfg.Certificates) > 0 {
		opts = append(opts, piondtls.WithCertificates(cfg.Certificates...))
	}
	return opts, nil
}

// ListenDTLS binds a DTLS listener on the UDP address addr.
func ListenDTLS(addr string, opts []piondtls.ServerOption) (net.Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("coapx: dtls address: %w", err)
	}
	l, err := piondtls.ListenWithOptions("udp", ua, opts...)
	if err != nil {
		return nil, fmt.Errorf("coapx: dtls listen: %w", err)
	}
	return l, nil
}

// ServeDTLS serves CoAP over DTLS (coaps://) on l, a listener of
// ListenDTLS, until Shutdown. Requests are handled as over UDP (the same
// transmission rules; separate responses work alike).
func (s *Server) ServeDTLS(l net.Listener) error {
	srv := dtls.NewServer(
		options.WithMux(s.h),
		options.WithErrors(errorsTo(s.log)),
		options.WithMessagePool(NoPool()),
		options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second),
		options.WithDTLSHandshakeTimeout(dtlsHandshakeTimeout),
		options.WithInactivityMonitor(DTLSIdleTimeout, func(cc *udpclient.Conn) { _ = cc.Close() }),
		options.WithProcessReceivedMessageFunc(func(req *pool.Message, cc *udpclient.Conn, h config.HandlerFunc[*udpclient.Conn]) {
			s.concurrently(func() { cc.ProcessReceivedMessageWithHandler(req, h) })
		}),
	)
	if !s.track(srv.Stop) {
		return net.ErrClosed
	}
	defer s.wg.Done()
	err := srv.Serve(&listener{l: l})
	if errors.Is(err, net.ErrClosed) || isClosedListener(err) {
		return nil
	}
	return err
}

func isClosedListener(err error) bool {
	return err != nil && errors.Is(err, piondtls.ErrConnClosed)
}

// DialDTLS connects a CoAP-over-DTLS client (coaps://). ctx bounds the
// connection's lifetime.
func DialDTLS(ctx context.Context, addr string, cfg []piondtls.ClientOption, log *slog.Logger, extra ...udp.Option) (*udpclient.Conn, error) {
	opts := []udp.Option{
		options.WithContext(ctx),
		options.WithErrors(errorsTo(log)),
		options.WithMessagePool(NoPool()),
		options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second),
		options.WithKeepAlive(3, dtlsKeepAlive, func(cc *udpclient.Conn) { _ = cc.Close() }),
	}
	return dtls.Dial(addr, dtls.NewDTLSClientOptions(cfg...), append(opts, extra...)...)
}

// DTLSPeerCertificate returns the verified leaf certificate of the peer of
// a DTLS connection; ok is false if c is not a DTLS connection.
func DTLSPeerCertificate(c net.Conn) (leaf *x509.Certificate, ok bool, err error) {
	dc, isDTLS := c.(*piondtls.Conn)
	if !isDTLS {
		return nil, false, nil
	}
	st, done := dc.ConnectionState()
	if !done || len(st.PeerCertificates) == 0 {
		return nil, true, errors.New("coapx: DTLS peer presented no certificate")
	}
	leaf, err = x509.ParseCertificate(st.PeerCertificates[0])
	if err != nil {
		return nil, true, fmt.Errorf("coapx: DTLS peer certificate: %w", err)
	}
	return leaf, true, nil
}
