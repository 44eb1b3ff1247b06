package node

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/hybrid"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/agentapi"
	"github.com/qkms/qkms/internal/relay"
)

// EventHybridRejected: this node, as the destination of a key stream,
// refused hybrid keys: a signed forwarding path that is not the configured
// route, a header that does not verify, or plain keys where hybrid ones
// are required (QUICKS notification/event code).
const EventHybridRejected = 1004

// ExtHybridPQC is the capabilities_extension entry of a node with a
// post-quantum identity: hybrid_pqc:<KEM>,<signature>,<combiner> (the
// algorithms this node offers, signs with and combines with).
const ExtHybridPQC = "hybrid_pqc"

// hybridOptions loads the node's post-quantum identity (if configured)
// and returns the relay engine's hybrid options: the identity, the
// algorithms, the policy of each stream and the report of rejected keys.
// Without an identity the options still carry the policy, so that a
// stream that requires hybrid keys fails closed.
func (n *Node) hybridOptions() (*relay.HybridOptions, error) {
	h := n.cfg.Hybrid
	if _, err := hybrid.KEMByName(h.KEM); err != nil {
		return nil, fmt.Errorf("node: hybrid.kem: %w", err)
	}
	if _, err := hybrid.CombinerByName(h.Combiner); err != nil {
		return nil, fmt.Errorf("node: hybrid.combiner: %w", err)
	}
	n.hybPol = newHybridPolicy(n.cfg)
	o := &relay.HybridOptions{KEM: h.KEM, Combiner: h.Combiner, OfferLifetime: h.OfferLifetime.D(),
		Require: n.hybridRequired, OnReject: n.hybridRejected,
		OnKeys: func(dest bool, c int) {
			end := "source"
			if dest {
				end = "destination"
			}
			n.metrics.AddHybridKeys(end, c)
		}}
	if !h.Configured() {
		return o, nil
	}
	id, err := pki.LoadPQIdentity(h.CAFile, h.CRLFile, h.CertFile, h.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("node: hybrid identity: %w", err)
	}
	if id.Node != string(n.cfg.NodeID) {
		id.Wipe()
		return nil, fmt.Errorf("node: hybrid identity: the certificate is for node %q, not %q", id.Node, n.cfg.NodeID)
	}
	o.Key, o.Cert, o.Verifier = id.Key, id.Cert, id.Verifier
	n.pq = id
	return o, nil
}

// hybridPolicy is the hybrid policy of key streams (docs/hybrid.md: per node and
// per application), read from the configuration once: an application's
// own setting (saes[].hybrid; the master's first, then any slave's "on")
// wins over the node's mode.
type hybridPolicy struct {
	on  bool                 // hybrid.mode
	app map[qkd.SAEID]string // saes[].hybrid, where set
}

func newHybridPolicy(c *config.Config) hybridPolicy {
	p := hybridPolicy{on: c.Hybrid.Mode == config.HybridOn, app: map[qkd.SAEID]string{}}
	for _, s := range c.SAEs {
		if s.Hybrid != "" {
			p.app[s.ID] = s.Hybrid
		}
	}
	return p
}

// wants reports whether keys of master for slaves must be hybrid.
func (p hybridPolicy) wants(master qkd.SAEID, slaves []qkd.SAEID) bool {
	if p.app[master] == config.HybridOn {
		return true
	}
	for _, s := range slaves {
		if p.app[s] == config.HybridOn {
			return true
		}
	}
	return p.on && p.app[master] != config.HybridOff
}

// hybridRequired is the relay engine's HybridOptions.Require.
func (n *Node) hybridRequired(en relay.Entry) bool { return n.hybPol.wants(en.Master, en.Slaves) }

// hybridSuite names the algorithms of this node's hybrid keys (KEM,
// signature, combiner); nil without a post-quantum identity.
func (n *Node) hybridSuite() []string {
	if n.pq == nil {
		return nil
	}
	return []string{n.cfg.Hybrid.KEM, n.pq.Key.Algorithm(), n.cfg.Hybrid.Combiner}
}

// hybridRejected reports keys this node refused as a destination to its
// SDN agent (notification/event, code EventHybridRejected). The reason
// names the stream and the check that failed, never key material.
func (n *Node) hybridRejected(stream string, err error) {
	n.metrics.AddHybridRejected()
	reason := fmt.Sprintf("hybrid keys of key stream %s rejected: %v", stream, err)
	n.notifyAgent(func(ctx context.Context, c *agentapi.Client) error {
		code := EventHybridRejected
		return c.NotifyEvent(ctx, quicks.Event{Level: quicks.LevelError, Code: &code, Reason: reason})
	})
}

// hybridExtension is the node's hybrid_pqc capability ("" without an
// identity).
func (n *Node) hybridExtension() string {
	if s := n.hybridSuite(); s != nil {
		return ExtHybridPQC + ":" + strings.Join(s, ",")
	}
	return ""
}

// crlWatch remembers the revocation list file last loaded.
type crlWatch struct {
	mod  time.Time
	size int64
}

// reloadCRL loads hybrid.crl_file again when it changed (an operator ran
// `qkms pki revoke-pq` and copied the list here): certificates revoked in
// it are refused from then on, without a restart. A list that does not
// verify, or is older than the one in use, is logged and ignored.
func (n *Node) reloadCRL(w *crlWatch) {
	path := n.cfg.Hybrid.CRLFile
	if n.pq == nil || path == "" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil || (fi.ModTime().Equal(w.mod) && fi.Size() == w.size) {
		return
	}
	first := w.mod.IsZero()
	w.mod, w.size = fi.ModTime(), fi.Size()
	if first {
		return // loaded at start
	}
	crl, err := pki.ReadPQRevocationList(path)
	if err == nil {
		err = n.pq.Verifier.SetRevocationList(crl)
	}
	if err != nil {
		n.log.Error("post-quantum revocation list not reloaded", "file", path, "err", err)
		return
	}
	n.log.Info("post-quantum revocation list reloaded", "file", path, "number", crl.Number, "revoked", len(crl.Revoked))
}
