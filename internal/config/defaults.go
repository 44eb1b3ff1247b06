package config

import (
	"path/filepath"
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// Default returns the defaults of every setting that has a fixed one. The
// settings derived from others (kme_id, store paths) and the defaults of
// list elements (links[].transport, ...) are filled by applyDefaults.
// Parse decodes the file over Default(), so a setting absent from the file
// keeps its default and one set to "" is empty (a listener turned off).
func Default() Config {
	return Config{
		Listen: Listen{
			ETSI014: "127.0.0.1:8443",
			PeerUDP: "127.0.0.1:5683",
			PeerTCP: "127.0.0.1:5683",
			Metrics: "127.0.0.1:9090",
			QUICKS:  "127.0.0.1:8444",
			Agent:   "127.0.0.1:8445",
		},
		SDN:        SDN{ControllerCN: "controller", ReportInterval: Duration(time.Second)},
		OperatorCN: "operator",
		Keys: Keys{
			DefaultSize:     256,
			MinSize:         64,
			MaxSize:         8192,
			MaxPerRequest:   128,
			MaxKeyCount:     100000,
			TTL:             Duration(time.Hour),
			Prereserve:      1024,
			RelayAhead:      Duration(2 * time.Second),
			RelayAheadMax:   4096,
			Multipath:       MultipathSpread,
			BatchBlocks:     16,
			MaxLinkMaterial: 64 * MiB,
		},
		Store: Store{Synchronous: "normal", KEKRotation: Duration(time.Hour)},
		Log:   Log{Level: "info", Format: FormatJSON},
		Hybrid: Hybrid{Mode: HybridOff, KEM: "ML-KEM-768", Combiner: "xor-shake256",
			OfferLifetime: Duration(time.Hour)},
	}
}

// applyDefaults fills the settings whose defaults depend on other settings,
// and normalises empty lists to nil. It is idempotent.
func (c *Config) applyDefaults() {
	if c.KMEID == "" && c.NodeID != "" {
		c.KMEID = qkd.KMEOf(c.NodeID)
	}
	if c.Store.Path == "" && c.DataDir != "" {
		c.Store.Path = filepath.Join(c.DataDir, "keys.db")
	}
	if c.Store.KEKFile == "" && c.Store.Path != "" {
		c.Store.KEKFile = c.Store.Path + ".kek"
	}
	for i := range c.Links {
		l := &c.Links[i]
		if l.Transport == "" {
			l.Transport = TransportTCP
		}
		if l.MAC == "" {
			l.MAC = MACPoly1305
		}
		if l.MAC == MACWegmanCarter && l.MACEpoch == 0 {
			l.MACEpoch = DefaultMACEpoch
		}
		if l.Device.Transport == "" {
			l.Device.Transport = TransportTCP
		}
	}
	if len(c.SAEs) == 0 {
		c.SAEs = nil
	}
	if len(c.Links) == 0 {
		c.Links = nil
	}
}

// resolvePaths makes every relative path in c relative to dir instead.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.TLS.CAFile)
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.Store.Path)
	abs(&c.Store.KEKFile)
	for i := range c.Links {
		abs(&c.Links[i].PSKFile)
	}
	abs(&c.Hybrid.CAFile)
	abs(&c.Hybrid.CRLFile)
	abs(&c.Hybrid.CertFile)
	abs(&c.Hybrid.KeyFile)
}
