package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/etsi014"
	"github.com/qkms/qkms/internal/peer"
	"github.com/qkms/qkms/internal/pki"
)

// newServers binds the listeners (unless given) and builds the servers.
func (n *Node) newServers() error {
	l := n.cfg.Listen
	var err error
	if n.ln.ETSI014 == nil {
		if n.ln.ETSI014, err = net.Listen("tcp", l.ETSI014); err != nil {
			return fmt.Errorf("node: etsi014 listener: %w", err)
		}
	}
	if n.ln.PeerTCP == nil && l.PeerTCP != "" {
		if n.ln.PeerTCP, err = net.Listen("tcp", l.PeerTCP); err != nil {
			return fmt.Errorf("node: peer_tcp listener: %w", err)
		}
	}
	if n.ln.PeerUDP == nil && l.PeerUDP != "" {
		addr, err := net.ResolveUDPAddr("udp", l.PeerUDP)
		if err != nil {
			return fmt.Errorf("node: peer_udp: %w", err)
		}
		if n.ln.PeerUDP, err = net.ListenUDP("udp", addr); err != nil {
			return fmt.Errorf("node: peer_udp listener: %w", err)
		}
	}
	if n.ln.Metrics == nil && l.Metrics != "" {
		if n.ln.Metrics, err = net.Listen("tcp", l.Metrics); err != nil {
			return fmt.Errorf("node: metrics listener: %w", err)
		}
	}
	if n.ln.QUICKS == nil && l.QUICKS != "" {
		if n.ln.QUICKS, err = net.Listen("tcp", l.QUICKS); err != nil {
			return fmt.Errorf("node: quicks listener: %w", err)
		}
	}
	n.addrs = Addrs{ETSI014: n.ln.ETSI014.Addr().String()}
	if n.ln.PeerTCP != nil {
		n.addrs.PeerTCP = n.ln.PeerTCP.Addr().String()
	}
	if n.ln.PeerUDP != nil {
		n.addrs.PeerUDP = n.ln.PeerUDP.LocalAddr().String()
	}
	if n.ln.Metrics != nil {
		n.addrs.Metrics = n.ln.Metrics.Addr().String()
	}
	if n.ln.QUICKS != nil {
		n.addrs.QUICKS = n.ln.QUICKS.Addr().String()
	}
	tlsCfg, err := pki.ServerTLSConfig(n.cfg.TLS.CAFile, n.cfg.TLS.CertFile, n.cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("node: TLS: %w", err)
	}
	n.etsi = etsi014.New(etsi014.Options{KMS: gatedKMS{n}, Logger: n.log, TLSConfig: tlsCfg, Admin: n.adminHandler(),
		SupportedExtensions: map[string]bool{etsi014.ExtHybrid: true}})
	if n.ln.QUICKS != nil {
		n.newQUICKS(tlsCfg, n.version)
	}
	n.tlsCfg = tlsCfg
	if err := n.newApp004Servers(tlsCfg); err != nil {
		return err
	}
	router := coapx.NewRouter(n.log)
	mux := n.linkMux()
	if err := peer.Register(router, peerHandler(mux), n.log); err != nil {
		return err
	}
	n.coap = coapx.NewServer(router.Mux(), n.log)
	return nil
}

func (n *Node) startServers(goRun func(func(context.Context) error)) {
	goRun(func(ctx context.Context) error { return n.etsi.Serve(ctx, n.ln.ETSI014) })
	if n.ln.PeerTCP != nil {
		goRun(func(context.Context) error { return n.coap.ServeTCP(n.ln.PeerTCP) })
	}
	if n.ln.PeerUDP != nil {
		goRun(func(context.Context) error { return n.coap.ServeUDP(n.ln.PeerUDP) })
	}
	if n.quicks != nil {
		goRun(func(ctx context.Context) error { return n.quicks.Serve(ctx, n.ln.QUICKS) })
	}
	if n.ln.Metrics != nil {
		srv := &http.Server{Handler: n.opsHandler(), ReadHeaderTimeout: 5 * time.Second}
		goRun(func(ctx context.Context) error {
			go func() { <-ctx.Done(); _ = srv.Close() }()
			if err := srv.Serve(n.ln.Metrics); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
}

func (n *Node) shutdownServers() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.etsi.Shutdown(ctx)
	if n.quicks != nil {
		_ = n.quicks.Shutdown(ctx)
	}
	n.coap.Shutdown()
	if a := n.app004; a != nil {
		if a.tcp != nil {
			_ = a.tcp.Shutdown(ctx)
		}
		if a.coap != nil {
			a.coap.Shutdown()
		}
		a.svc.Shutdown()
	}
}

// opsHandler serves /metrics, /healthz and /readyz (plain HTTP, no secrets).
func (n *Node) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", n.metrics.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !n.svc.Active() {
			http.Error(w, "inactive", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !n.Ready(r.Context()) {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

func jsonReply(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body + "\n"))
}

// adminHandler serves POST /admin/zeroize to the operator certificate only.
func (n *Node) adminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, err := etsi014.Caller(r)
		switch {
		case err != nil || string(caller) != n.cfg.OperatorCN || n.cfg.OperatorCN == "":
			jsonReply(w, http.StatusUnauthorized, `{"message":"unauthorized"}`)
		case r.URL.Path != "/admin/zeroize":
			jsonReply(w, http.StatusNotFound, `{"message":"not found"}`)
		case r.Method != http.MethodPost:
			w.Header().Set("Allow", http.MethodPost)
			jsonReply(w, http.StatusMethodNotAllowed, `{"message":"method not allowed"}`)
		default:
			n.log.Warn("zeroisation requested through the admin API", "operator", string(caller))
			if err := n.Zeroize(r.Context()); err != nil {
				n.log.Error("zeroisation failed", "err", err)
				jsonReply(w, http.StatusInternalServerError, `{"message":"zeroisation failed"}`)
				return
			}
			jsonReply(w, http.StatusOK, `{"status":"inactive"}`)
		}
	})
}
