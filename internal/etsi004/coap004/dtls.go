package coap004

import "github.com/plgd-dev/go-coap/v3/mux"

// dtlsCN is certCN for DTLS connections (none yet).
func dtlsCN(mux.Conn) (string, bool, error) { return "", false, nil }
