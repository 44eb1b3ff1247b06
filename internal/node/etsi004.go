package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/etsi004/coap004"
	"github.com/qkms/qkms/internal/etsi004/tcp004"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
	"github.com/qkms/qkms/internal/streams"
	"github.com/qkms/qkms/internal/telemetry"
)

// app004 is the node's ETSI 004 side: the key stream service and its two
// bindings (nil fields: off).
type app004 struct {
	svc  *streams.Service
	tcp  *tcp004.Server
	coap *coapx.Server
	dtls net.Listener // CoAP over DTLS, served by coap too
}

// newStreams builds the ETSI 004 key stream service over the node's links.
func (n *Node) newStreams() error {
	links := make([]streams.Link, len(n.links))
	for i, l := range n.links {
		links[i] = l.Link
	}
	st, err := streams.New(streams.Options{Node: n.cfg.NodeID, SAEs: n.directory(), Links: links, Store: n.store,
		DataDir: n.cfg.DataDir, MaxChunkBytes: n.cfg.Keys.MaxSize / 8,
		LinkRate: func(id qkd.LinkID) (float64, bool) { r := n.LinkRates()[id]; return r, r > 0 },
		Logger:   n.log.With("component", "etsi004"),
		Router:   n.router, Relay: n.relay,
		Hybrid: func(src, dst qkd.SAEID) string {
			if !n.hybPol.wants(src, []qkd.SAEID{dst}) {
				return ""
			}
			return strings.Join(n.hybridSuite(), "+") // "" without an identity
		},
		Hops: func(route string) int {
			if en, ok := n.relay.Lookup(route); ok && len(en.Route) > 2 {
				return len(en.Route) - 2 // the trusted nodes between the ends
			}
			return 0
		},
		OnDelivered: func(api string, c int) {
			n.metrics.AddKeysDelivered(telemetry.API(api), c)
		},
		OnUnderrun: func(k etsi004.KSID, why string) {
			reason := fmt.Sprintf("ETSI 004 key stream %s cannot keep up: %s", k, why)
			n.notifyAgent(func(ctx context.Context, c *agentapi.Client) error {
				code := EventStreamUnderrun
				return c.NotifyEvent(ctx, quicks.Event{Level: quicks.LevelWarning, Code: &code, Reason: reason})
			})
		}})
	if err != nil {
		return fmt.Errorf("node: etsi004 streams: %w", err)
	}
	n.relay.SetOnStream(st.Relayed) // the destination's side of remote streams
	n.metrics.SetOpenStreams(st.OpenStreams)
	n.app004 = &app004{svc: st}
	return nil
}

// gated004 answers "no QKD connection available" while the node is out of
// service (QUICKS control/status) or zeroised.
type gated004 struct{ n *Node }

func (g gated004) down() bool { return g.n.State() != quicks.StateOnline || !g.n.svc.Active() }

func (g gated004) OpenConnect(ctx context.Context, caller qkd.SAEID, req etsi004.OpenRequest) (etsi004.OpenResponse, error) {
	if g.down() {
		return etsi004.OpenResponse{Status: etsi004.StatusNoQKDConnection, QoS: req.QoS, KeyStreamID: req.KeyStreamID}, nil
	}
	return g.n.app004.svc.OpenConnect(ctx, caller, req)
}

func (g gated004) GetKey(ctx context.Context, caller qkd.SAEID, req etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error) {
	if g.down() {
		return etsi004.GetKeyResponse{Status: etsi004.StatusNoQKDConnection, Index: req.Index}, nil
	}
	return g.n.app004.svc.GetKey(ctx, caller, req)
}

func (g gated004) Close(ctx context.Context, caller qkd.SAEID, req etsi004.CloseRequest) (etsi004.CloseResponse, error) {
	return g.n.app004.svc.Close(ctx, caller, req)
}

// newApp004Servers binds and builds the 004 bindings that are configured.
func (n *Node) newApp004Servers(tlsCfg *tls.Config) error {
	l := n.cfg.Listen
	var err error
	if n.ln.ETSI004TCP == nil && l.ETSI004TCP != "" {
		if n.ln.ETSI004TCP, err = net.Listen("tcp", l.ETSI004TCP); err != nil {
			return fmt.Errorf("node: etsi004_tcp listener: %w", err)
		}
	}
	if n.ln.ETSI004 == nil && l.ETSI004 != "" {
		if n.ln.ETSI004, err = net.Listen("tcp", l.ETSI004); err != nil {
			return fmt.Errorf("node: etsi004 listener: %w", err)
		}
	}
	svc := gated004{n}
	log := n.log.With("component", "etsi004")
	if n.ln.ETSI004TCP != nil {
		n.addrs.ETSI004TCP = n.ln.ETSI004TCP.Addr().String()
		if n.app004.tcp, err = tcp004.New(tcp004.Options{Service: svc, TLS: tlsCfg.Clone(), Log: log}); err != nil {
			return err
		}
	}
	if n.ln.ETSI004 != nil {
		n.addrs.ETSI004 = n.ln.ETSI004.Addr().String()
		r := coapx.NewRouter(log)
		if err := coap004.Register(r, svc, coap004.Options{Log: log}); err != nil {
			return err
		}
		n.app004.coap = coapx.NewServer(r.Mux(), log)
	}
	return n.bindDTLS004(tlsCfg)
}

// bindDTLS004 binds the DTLS side of the CoAP binding: by default the
// UDP port of the same number as the TLS one (as CoAP's 5684 serves both).
//
// A UDP socket bound beforehand (Listeners.ETSI004UDP, as qkms net up binds
// every port before any node starts) is used if it has that address.
func (n *Node) bindDTLS004(tlsCfg *tls.Config) error {
	addr := n.cfg.Listen.ETSI004DTLS
	switch {
	case addr == config.DTLSOff, addr == "" && n.ln.ETSI004 == nil && n.ln.ETSI004UDP == nil:
		return nil
	case addr == "" && n.ln.ETSI004 != nil:
		addr = n.ln.ETSI004.Addr().String()
	case addr == "":
		addr = n.ln.ETSI004UDP.LocalAddr().String()
	}
	dc, err := coapx.DTLSServerConfig(tlsCfg.Clone())
	if err != nil {
		return fmt.Errorf("node: etsi004 dtls: %w", err)
	}
	if pc := n.ln.ETSI004UDP; pc != nil && sameUDPAddr(pc.LocalAddr(), addr) {
		n.ln.ETSI004UDP = nil // the listener owns it (and closes it on error)
		n.app004.dtls, err = coapx.ListenDTLSOn(pc, dc)
	} else {
		n.app004.dtls, err = coapx.ListenDTLS(addr, dc)
	}
	if err != nil {
		return fmt.Errorf("node: etsi004 dtls listener: %w", err)
	}
	n.addrs.ETSI004DTLS = n.app004.dtls.Addr().String()
	if n.app004.coap == nil {
		r := coapx.NewRouter(n.log.With("component", "etsi004"))
		if err := coap004.Register(r, gated004{n}, coap004.Options{Log: n.log.With("component", "etsi004")}); err != nil {
			return err
		}
		n.app004.coap = coapx.NewServer(r.Mux(), n.log.With("component", "etsi004"))
	}
	return nil
}

// startApp004 runs the key stream service and the bindings.
func (n *Node) startApp004(goRun func(func(context.Context) error), tlsCfg *tls.Config) {
	a := n.app004
	goRun(a.svc.Run)
	if a.tcp != nil {
		goRun(func(ctx context.Context) error { return a.tcp.Serve(ctx, n.ln.ETSI004TCP) })
	}
	if a.coap != nil {
		goRun(func(ctx context.Context) error {
			<-ctx.Done()
			a.coap.Shutdown()
			return nil
		})
	}
	if a.coap != nil && n.ln.ETSI004 != nil {
		ln := tls.NewListener(n.ln.ETSI004, tlsCfg.Clone())
		goRun(func(context.Context) error { return a.coap.ServeTCP(ln) })
	}
	if a.dtls != nil {
		goRun(func(context.Context) error { return a.coap.ServeDTLS(a.dtls) })
	}
}

// EventStreamUnderrun: an ETSI 004 key stream cannot keep its rate
// (QUICKS notification/event code).
const EventStreamUnderrun = 1003

// sameUDPAddr reports whether a bound UDP address is addr (host:port).
func sameUDPAddr(bound net.Addr, addr string) bool {
	ua, err := net.ResolveUDPAddr("udp", addr)
	b, ok := bound.(*net.UDPAddr)
	return err == nil && ok && ua.Port == b.Port && ua.IP.Equal(b.IP)
}
