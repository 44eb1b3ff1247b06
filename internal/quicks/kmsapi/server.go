package kmsapi

import (
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/rest"
)

// Options configure a Server: its Backend (required), Authorize (a node
// allows the operator and its own SDN agent; nil refuses every client),
// TLSConfig (server certificate and ClientCAs),
// Logger (nil discards) and MaxBodyBytes (0 means 1 MiB).
type Options = rest.ServerOptions[Backend]

// Server is the QUICKS server a KMS hosts (sdn_to_kms_api.yaml).
// Its Handler serves the API under /api/v2/sdn and /api/v2/kms.
type Server struct {
	*service // Handler, Serve, Addr, Shutdown
	backend  Backend
	maxBody  int64
}

type service = rest.Service

// New returns a server for opts. It panics if opts.Backend is nil.
func New(opts Options) *Server {
	s := &Server{backend: opts.Backend, maxBody: rest.BodyLimit(opts.MaxBodyBytes)}
	s.service = rest.NewService("kmsapi", []string{quicks.BasePath, quicks.KMSBasePath}, opts, s.routes())
	return s
}
