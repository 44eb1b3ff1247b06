package config

import (
	"log/slog"
	"slices"

	"github.com/qkms/qkms/internal/qkd"
)

// Config is one node's configuration. Load or Parse return it with defaults
// applied and validated.
type Config struct {
	NodeID     qkd.NodeID `yaml:"node_id"`     // required
	KMEID      qkd.KMEID  `yaml:"kme_id"`      // default "KME_" + node_id
	DataDir    string     `yaml:"data_dir"`    // required
	Listen     Listen     `yaml:"listen"`      //
	TLS        TLS        `yaml:"tls"`         // required
	OperatorCN string     `yaml:"operator_cn"` // client cert CN allowed on admin endpoints
	SAEs       []SAE      `yaml:"saes,omitempty"`
	Links      []Link     `yaml:"links,omitempty"`
	Keys       Keys       `yaml:"keys"`
	Store      Store      `yaml:"store"`
	Log        Log        `yaml:"log"`
	SDN        SDN        `yaml:"sdn"`
	Hybrid     Hybrid     `yaml:"hybrid"`
}

// Hybrid configures post-quantum hybrid keys (docs/hybrid.md):
// the two end KMSes of a relayed key stream run an ML-KEM exchange
// authenticated with their ML-DSA keys and give applications
// combine(relayed key, KEM-protected secret, transcript); every KMS on the
// route signs its forwarding step. The identity files (made by
// `qkms pki init --pq-node`) let this node take part, also as an
// intermediate node; Mode says whether its own streams require it.
type Hybrid struct {
	// Mode is the node's default for key streams of its SAEs: HybridOn
	// (every relayed key hybrid; a stream whose other end cannot do it
	// fails) or HybridOff. saes[].hybrid overrides it per application.
	Mode string `yaml:"mode"`
	// KEM of the offers this node makes as a destination; Combiner it
	// uses as a source. Names as in the capability hybrid_pqc.
	KEM      string `yaml:"kem"`
	Combiner string `yaml:"combiner"`
	// The network's PQ CA certificate and revocation list (optional), and
	// this node's ML-DSA certificate and key (0600).
	CAFile   string `yaml:"ca_file"`
	CRLFile  string `yaml:"crl_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// OfferLifetime of this node's KEM offers (a new ML-KEM key pair per
	// stream and lifetime).
	OfferLifetime Duration `yaml:"offer_lifetime"`
}

// Configured reports whether the node has a post-quantum identity.
func (h Hybrid) Configured() bool { return h.KeyFile != "" }

// SDN configures the node's SDN agent (docs/sdn.md). With an empty
// controller_url the node runs no agent and serves SAEs of neighbouring
// nodes only.
type SDN struct {
	ControllerURL string `yaml:"controller_url"` // https://host:port of `qkms controller`
	ControllerCN  string `yaml:"controller_cn"`  // CN of the controller's certificate (default "controller")
	// AgentURL is where the controller reaches this node's agent (default
	// https:// + the bound listen.agent address).
	AgentURL string `yaml:"agent_url"`
	// ReportInterval between the agent's reports to the controller.
	ReportInterval Duration `yaml:"report_interval"`
}

// Listen holds the node's listen addresses (host:port; port 0 picks a free
// port). An empty address turns that listener off (etsi014 is required).
type Listen struct {
	ETSI014 string `yaml:"etsi014"`  // HTTPS with mTLS (ETSI GS QKD 014)
	PeerUDP string `yaml:"peer_udp"` // KMS<->KMS CoAP over UDP (RFC 7252)
	PeerTCP string `yaml:"peer_tcp"` // KMS<->KMS CoAP over TCP (RFC 8323)
	Metrics string `yaml:"metrics"`  // plain HTTP /metrics, /healthz, /readyz
	QUICKS  string `yaml:"quicks"`   // HTTPS with mTLS, TLS 1.3: the QUICKS KMS API for the SDN agent
	Agent   string `yaml:"agent"`    // HTTPS with mTLS: the node's SDN agent (QUICKS agent API, controller pushes); used when sdn.controller_url is set
	// ETSI004 is the CoAP binding of ETSI 004 for applications over TLS
	// (coaps+tcp, RFC 8323, client certificates); ETSI004DTLS the same
	// binding over DTLS 1.2 (coaps, RFC 7252 §9): empty means the same
	// host:port as ETSI004 but UDP, "off" none. ETSI004TCP is the binary
	// TCP/TLS framing of ETSI's reference implementation. Empty: off.
	ETSI004     string `yaml:"etsi004"`
	ETSI004DTLS string `yaml:"etsi004_dtls"`
	ETSI004TCP  string `yaml:"etsi004_tcp"`
}

// TLS names the node's PKI files (PEM).
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// SAE is an SAE of the network and the node it is attached to; it is local
// when Node is the configured node.
type SAE struct {
	ID   qkd.SAEID  `yaml:"id"`
	Node qkd.NodeID `yaml:"node"`
	// Hybrid overrides hybrid.mode for key streams of this application
	// (as master or slave): HybridOn, HybridOff, or "" for the node's mode.
	Hybrid string `yaml:"hybrid,omitempty"`
	// Multipath overrides keys.multipath for key streams this application
	// starts (as master): MultipathSpread, MultipathSplit, MultipathOff,
	// or "" for the node's setting.
	Multipath string `yaml:"multipath,omitempty"`
}

// Link is one QKD link from this node to a neighbour.
type Link struct {
	ID        qkd.LinkID `yaml:"id"`
	Peer      qkd.NodeID `yaml:"peer"`
	PeerAddr  string     `yaml:"peer_addr"`           // the peer KMS's peer_tcp or peer_udp address
	Transport string     `yaml:"transport"`           // TransportTCP (default) or TransportUDP
	PSKFile   string     `yaml:"psk_file"`            // pre-shared key authenticating the first exchanges; mode 0600
	MAC       string     `yaml:"mac"`                 // MACPoly1305 (default) or MACWegmanCarter; both ends must agree
	MACEpoch  int        `yaml:"mac_epoch,omitempty"` // mac: wegman_carter only: messages per hash key (DefaultMACEpoch)
	Device    Device     `yaml:"device"`
}

// Device is the local QKD module of a link, which pushes keys over CoAP
// (ETSI GS QKD 004).
type Device struct {
	Addr        string `yaml:"addr"`
	Transport   string `yaml:"transport"`     // TransportTCP (default) or TransportUDP
	KeyStreamID string `yaml:"key_stream_id"` // optional UUID
}

// Keys holds key sizes and pool settings. Sizes are in bits.
type Keys struct {
	DefaultSize   int      `yaml:"default_size"`
	MinSize       int      `yaml:"min_size"`
	MaxSize       int      `yaml:"max_size"`
	MaxPerRequest int      `yaml:"max_per_request"`
	MaxKeyCount   int      `yaml:"max_key_count"`
	TTL           Duration `yaml:"ttl"`
	Prereserve    int      `yaml:"prereserve"`      // default-size keys kept ready per local-master SAE pair
	RelayAhead    Duration `yaml:"relay_ahead"`     // seconds of a remote pair's demand relayed ahead (0: off)
	RelayAheadMax int      `yaml:"relay_ahead_max"` // cap on the keys relayed ahead per remote pair
	// Multipath is how the key streams of this node's SAEs to non-neighbour
	// nodes use the network (docs/relay-design.md "Multipath relay"):
	// MultipathSpread (the default: each key along one of the paths of a
	// max-flow, rate up to the max-flow), MultipathSplit (every key XOR-split
	// over two node-disjoint paths: no single intermediate node learns it;
	// the rate of the narrower path) or MultipathOff (one route).
	// saes[].multipath overrides it per application (as master).
	Multipath       string   `yaml:"multipath"`
	BatchBlocks     int      `yaml:"batch_blocks"`      // blocks per new_key_batch
	MaxLinkMaterial ByteSize `yaml:"max_link_material"` // cap on unused link key material per link
}

// Store configures the key store.
type Store struct {
	Path        string   `yaml:"path"`        // default data_dir/keys.db
	KEKFile     string   `yaml:"kek_file"`    // default path + ".kek"
	Synchronous string   `yaml:"synchronous"` // SQLite PRAGMA synchronous: off, normal, full, extra
	KEKRotation Duration `yaml:"kek_rotation"`
}

// Log configures the node's slog handler.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json, text
}

// Values of Link.Transport, Device.Transport, Link.MAC, Log.Format.
const (
	TransportTCP    = "tcp"
	TransportUDP    = "udp"
	MACPoly1305     = "poly1305"
	MACWegmanCarter = "wegman_carter"
	FormatJSON      = "json"
	FormatText      = "text"
	MultipathSpread = "spread"
	MultipathSplit  = "split"
	MultipathOff    = "off"
	HybridOn        = "on"
	HybridOff       = "off"
)

// Limits of Link.MACEpoch: an even number of messages (two messages' pads
// fill one 64-byte MAC slot of the key store).
const (
	DefaultMACEpoch = 1024
	MinMACEpoch     = 16
	MaxMACEpoch     = 1 << 20
)

// SlogLevel returns the slog level named by l.Level (info if unknown).
func (l Log) SlogLevel() slog.Level {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return slog.LevelInfo
	}
	return lv
}

// LocalSAEs returns the SAEs attached to this node, in file order.
func (c *Config) LocalSAEs() []qkd.SAEID {
	var out []qkd.SAEID
	for _, s := range c.SAEs {
		if s.Node == c.NodeID {
			out = append(out, s.ID)
		}
	}
	return out
}

// NodeOf returns the node of a configured SAE.
func (c *Config) NodeOf(sae qkd.SAEID) (qkd.NodeID, bool) {
	for _, s := range c.SAEs {
		if s.ID == sae {
			return s.Node, true
		}
	}
	return "", false
}

// Sanitized returns a deep copy of c that is safe to log. No field holds a
// secret today (secrets are only named by *_file paths); a field added with
// secret content must be redacted here.
func (c *Config) Sanitized() *Config {
	s := *c
	s.SAEs = slices.Clone(c.SAEs)
	s.Links = slices.Clone(c.Links)
	return &s
}
