// Package coapxtest finds libcoap's coap-client for interoperability tests.
package coapxtest

import (
	"os/exec"
	"testing"
)

// clients are the names Debian's libcoap3-bin installs (one per TLS
// library; plain "coap-client" where an alternative is set up).
var clients = []string{"coap-client", "coap-client-openssl", "coap-client-gnutls", "coap-client-notls"}

// Client returns the path of a coap-client binary, or skips the test when
// none is installed (CI installs libcoap3-bin).
func Client(t testing.TB) string {
	t.Helper()
	for _, c := range clients {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Skip("coap-client not installed (apt-get install libcoap3-bin)")
	return ""
}
