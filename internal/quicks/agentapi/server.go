package agentapi

import (
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/rest"
)

// Options configure a Server: its Backend (required), Authorize (an agent allows its own KMS; nil
// refuses every client), TLSConfig (server certificate and ClientCAs),
// Logger (nil discards) and MaxBodyBytes (0 means 1 MiB).
type Options = rest.ServerOptions[Backend]

// Server is the QUICKS server an SDN agent hosts (kms_to_sdn_api.yaml).
// Its Handler serves the API under /api/v2/sdn.
type Server struct {
	*service // Handler, Serve, Addr, Shutdown
	backend  Backend
	maxBody  int64
}

type service = rest.Service

// New returns a server for opts. It panics if opts.Backend is nil.
func New(opts Options) *Server {
	s := &Server{backend: opts.Backend, maxBody: rest.BodyLimit(opts.MaxBodyBytes)}
	s.service = rest.NewService("agentapi", []string{quicks.BasePath}, opts, s.routes())
	return s
}
