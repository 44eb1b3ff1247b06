package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// Validate reports every problem of c, joined with errors.Join, or nil. Each
// message starts with the setting's path in the file (links[0].psk_file).
// It expects defaults applied (Load and Parse do that). It reads the file
// system for one thing only: PSK files must exist and be private.
func (c *Config) Validate() error {
	v := &validator{}
	c.validateNode(v)
	c.validateListen(v)
	c.validateSAEs(v)
	c.validateLinks(v)
	c.Keys.validate(v)
	c.Store.validate(v, c.DataDir)
	c.Log.validate(v)
	c.Hybrid.validate(v, c.SAEs)
	return errors.Join(v.errs...)
}

// validator collects problems.
type validator struct{ errs []error }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (v *validator) required(field, value string) bool {
	if value == "" {
		v.add(field, "required")
		return false
	}
	return true
}

// id checks a node, SAE or KME ID.
func (v *validator) id(field, value string) {
	if v.required(field, value) && !topology.ValidID(value) {
		v.add(field, "invalid ID %q: want 1-64 characters from [A-Za-z0-9_.-]", value)
	}
}

// addr checks a host:port; a listen address may use port 0.
func (v *validator) addr(field, value string, listen bool) {
	_, port, err := net.SplitHostPort(value)
	if err != nil {
		v.add(field, "invalid address %q: want host:port", value)
		return
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (p == 0 && !listen) {
		v.add(field, "invalid port in %q: want 1-65535", value)
	}
}

func (v *validator) oneOf(field, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.add(field, "unknown value %q: want one of %q", value, allowed)
}

func (v *validator) positive(field string, d Duration) {
	if d <= 0 {
		v.add(field, "must be > 0, got %s", d)
	}
}

func (c *Config) validateNode(v *validator) {
	v.id("node_id", string(c.NodeID))
	v.id("kme_id", string(c.KMEID))
	v.required("data_dir", c.DataDir)
	v.required("tls.ca_file", c.TLS.CAFile)
	v.required("tls.cert_file", c.TLS.CertFile)
	v.required("tls.key_file", c.TLS.KeyFile)
	v.required("operator_cn", c.OperatorCN)
	if c.SDN.ControllerURL != "" {
		if !strings.HasPrefix(c.SDN.ControllerURL, "https://") {
			v.add("sdn.controller_url", "must be an https URL")
		}
		v.required("sdn.controller_cn", c.SDN.ControllerCN)
		v.required("listen.quicks", c.Listen.QUICKS)
		v.required("listen.agent", c.Listen.Agent)
		if c.SDN.ReportInterval.D() <= 0 {
			v.add("sdn.report_interval", "must be positive")
		}
	}
}

func (c *Config) validateListen(v *validator) {
	l := c.Listen
	v.required("listen.etsi014", l.ETSI014)
	tcp := map[string]string{} // address -> field, among TCP listeners
	for _, a := range []struct {
		field, value string
		tcp          bool
	}{
		{"listen.etsi014", l.ETSI014, true},
		{"listen.peer_udp", l.PeerUDP, false},
		{"listen.peer_tcp", l.PeerTCP, true},
		{"listen.metrics", l.Metrics, true},
		{"listen.quicks", l.QUICKS, true},
		{"listen.agent", l.Agent, true},
		{"listen.etsi004", l.ETSI004, true},
		{"listen.etsi004_tcp", l.ETSI004TCP, true},
	} {
		if a.value == "" {
			continue
		}
		v.addr(a.field, a.value, true)
		if !a.tcp {
			continue
		}
		if other, dup := tcp[a.value]; dup && !portZero(a.value) {
			v.add(a.field, "address %q already used by %s", a.value, other)
		}
		tcp[a.value] = a.field
	}
	if d := l.ETSI004DTLS; d != "" && d != DTLSOff {
		v.addr("listen.etsi004_dtls", d, true)
	}
}

// DTLSOff as listen.etsi004_dtls turns the DTLS binding of ETSI 004 off.
const DTLSOff = "off"

// portZero reports whether addr asks for any free port (never a clash).
func portZero(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

func (c *Config) validateSAEs(v *validator) {
	seen := map[qkd.SAEID]int{}
	for i, s := range c.SAEs {
		at := fmt.Sprintf("saes[%d]", i)
		v.id(at+".id", string(s.ID))
		v.id(at+".node", string(s.Node))
		if j, dup := seen[s.ID]; dup && s.ID != "" {
			v.add(at+".id", "duplicate SAE %q (also saes[%d])", s.ID, j)
		}
		seen[s.ID] = i
	}
}

func (k Keys) validate(v *validator) {
	for _, s := range []struct {
		field string
		bits  int
	}{{"keys.default_size", k.DefaultSize}, {"keys.min_size", k.MinSize}, {"keys.max_size", k.MaxSize}} {
		if s.bits <= 0 || s.bits%8 != 0 {
			v.add(s.field, "must be a positive multiple of 8 bits, got %d", s.bits)
		}
	}
	if k.MinSize > k.DefaultSize || k.DefaultSize > k.MaxSize {
		v.add("keys", "want min_size <= default_size <= max_size, got %d, %d, %d", k.MinSize, k.DefaultSize, k.MaxSize)
	}
	if k.MaxPerRequest < 1 {
		v.add("keys.max_per_request", "must be >= 1, got %d", k.MaxPerRequest)
	}
	if k.MaxKeyCount < 1 {
		v.add("keys.max_key_count", "must be >= 1, got %d", k.MaxKeyCount)
	}
	v.positive("keys.ttl", k.TTL)
	if k.Prereserve < 0 {
		v.add("keys.prereserve", "must be >= 0, got %d", k.Prereserve)
	}
	if k.RelayAhead < 0 {
		v.add("keys.relay_ahead", "must be >= 0, got %s", k.RelayAhead.D())
	}
	v.oneOf("keys.multipath", k.Multipath, MultipathSpread, MultipathSplit, MultipathOff)
	if k.RelayAheadMax < 0 {
		v.add("keys.relay_ahead_max", "must be >= 0, got %d", k.RelayAheadMax)
	}
	if k.BatchBlocks < 1 {
		v.add("keys.batch_blocks", "must be >= 1, got %d", k.BatchBlocks)
	}
	if k.MaxLinkMaterial <= 0 {
		v.add("keys.max_link_material", "must be > 0, got %s", k.MaxLinkMaterial)
	}
}

func (s Store) validate(v *validator, dataDir string) {
	if dataDir != "" { // else data_dir is reported, and these follow from it
		v.required("store.path", s.Path)
		v.required("store.kek_file", s.KEKFile)
	}
	if s.Path != "" && s.Path == s.KEKFile {
		v.add("store.kek_file", "must differ from store.path")
	}
	v.oneOf("store.synchronous", s.Synchronous, "normal", "full")
	v.positive("store.kek_rotation", s.KEKRotation)
}

func (l Log) validate(v *validator) {
	v.oneOf("log.level", l.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", l.Format, FormatJSON, FormatText)
}

// validate checks the hybrid section and the per-SAE overrides. Algorithm
// names are checked by the node against what it implements.
func (h Hybrid) validate(v *validator, saes []SAE) {
	v.oneOf("hybrid.mode", h.Mode, HybridOn, HybridOff)
	v.required("hybrid.kem", h.KEM)
	v.required("hybrid.combiner", h.Combiner)
	v.positive("hybrid.offer_lifetime", h.OfferLifetime)
	files := map[string]string{"hybrid.ca_file": h.CAFile, "hybrid.cert_file": h.CertFile, "hybrid.key_file": h.KeyFile}
	set := 0
	for _, f := range files {
		if f != "" {
			set++
		}
	}
	if set != 0 && set != len(files) {
		v.add("hybrid", "ca_file, cert_file and key_file go together")
	}
	if h.CRLFile != "" && set == 0 {
		v.add("hybrid.crl_file", "needs ca_file, cert_file and key_file")
	}
	if h.Mode == HybridOn && set == 0 {
		v.add("hybrid.mode", "on needs the node's post-quantum identity (ca_file, cert_file, key_file)")
	}
	for i, s := range saes {
		if s.Hybrid != "" {
			v.oneOf(fmt.Sprintf("saes[%d].hybrid", i), s.Hybrid, HybridOn, HybridOff)
		}
		if s.Multipath != "" {
			v.oneOf(fmt.Sprintf("saes[%d].multipath", i), s.Multipath, MultipathSpread, MultipathSplit, MultipathOff)
		}
	}
}
