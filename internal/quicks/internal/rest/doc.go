// Package rest is the HTTP plumbing the two QUICKS servers and clients
// share: a router that authenticates the client certificate, routes under
// the base paths, answers 404/405 as RFC 9457 problems and maps a handler's
// error to a problem in one place; the TLS 1.3 server lifecycle (Serve,
// Addr, Shutdown); body, query and path parameter helpers; and a client
// core that turns non-2xx answers into *quicks.Problem errors.
package rest
