// Package e2e holds end-to-end tests that start real nodes on loopback:
// real TLS, real CoAP, real SQLite stores, simulated QKD links. They are
// skipped under -short.
package e2e
