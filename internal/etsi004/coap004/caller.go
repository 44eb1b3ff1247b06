package coap004

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
)

// CallerQuery is the Uri-Query parameter naming the caller in the
// test-only InsecureCallerQuery mode: sae=<SAE ID>.
const CallerQuery = "sae"

// caller names the application behind a request: the CN of its verified
// TLS (or DTLS) client certificate, or, only with InsecureCallerQuery and
// no certificate, the sae= query parameter.
func (s *server) caller(c mux.Conn, req *mux.Message) (qkd.SAEID, error) {
	if cn, ok, err := certCN(c); ok || err != nil {
		return qkd.SAEID(cn), err
	}
	if !s.opts.InsecureCallerQuery {
		return "", errUnauthenticated
	}
	qs, err := req.Queries()
	if err != nil {
		return "", fmt.Errorf("%w: query names no caller (sae=<SAE ID>)", errUnauthenticated)
	}
	for _, q := range qs {
		if v, ok := strings.CutPrefix(q, CallerQuery+"="); ok {
			id, err := etsi004.AppID(v)
			if err != nil || string(id) != v {
				return "", fmt.Errorf("%w: sae= is not an SAE ID", etsi004.ErrBadRequest)
			}
			return id, nil
		}
	}
	return "", fmt.Errorf("%w: query names no caller (sae=<SAE ID>)", errUnauthenticated)
}

// certCN returns the peer certificate's CN if c is a TLS or DTLS
// connection; ok is false for plain connections. A secure connection
// without a verified certificate is an error. (The DTLS listener verifies
// the chain and the client-auth usage during the handshake, so its leaf
// is a verified one.)
func certCN(c mux.Conn) (cn string, ok bool, err error) {
	nc := c.NetConn()
	if tc, isTLS := nc.(*tls.Conn); isTLS {
		cs := tc.ConnectionState()
		if cn, ok := pki.PeerCN(&cs); ok {
			return cn, true, nil
		}
		return "", true, errUnauthenticated
	}
	leaf, isDTLS, err := coapx.DTLSPeerCertificate(nc)
	switch {
	case !isDTLS:
		return "", false, nil
	case err != nil || leaf.Subject.CommonName == "":
		return "", true, errUnauthenticated
	}
	return leaf.Subject.CommonName, true, nil
}
