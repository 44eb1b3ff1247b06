package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// link is a valid links entry whose fields the tests override.
const link = `
links:
  - id: A-B
    peer: B
    peer_addr: 127.0.0.1:5684
    psk_file: psk/A-B.psk
    device: {addr: 127.0.0.1:6000}
`

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		text string // appended to minimal unless it replaces a key of it
		want []string
	}{
		{"unknown top-level field", "colour: blue\n", []string{`line 5: unknown field "colour" at the top level`}},
		{"unknown nested field", "listen: {etsi014: 127.0.0.1:1, grpc: x}\n", []string{`line 5: unknown field "grpc" in listen`}},
		{"unknown link field", link + "    speed: 3\n", []string{`line 12: unknown field "speed" in links`}},
		{"unknown device field", strings.Replace(link, "{addr:", "{port: 1, addr:", 1), []string{`line 11: unknown field "port" in links[].device`}},
		{"null value", "operator_cn:\n", []string{`line 5: "operator_cn" has no value`}},
		{"wrong type", "keys: {default_size: big}\n", []string{"line 5: cannot unmarshal !!str `big` into int"}},
		{"bad duration", "keys: {ttl: 1 hour}\n", []string{`line 5: invalid duration "1 hour"`}},
		{"integer duration", "keys: {ttl: 3600}\n", []string{"line 5: want a duration string"}},
		{"bad byte size", "keys: {max_link_material: 64MB/s}\n", []string{`invalid size "64MB/s"`}},
		{"zero duration", "keys: {ttl: 0s}\n", []string{"keys.ttl: must be > 0"}},
		{"negative rotation", "store: {kek_rotation: -1h}\n", []string{"store.kek_rotation: must be > 0"}},
		{"duplicate key", "log: {level: info}\nlog: {level: debug}\n", []string{`mapping key "log" already defined`}},
		{"two documents", "---\nnode_id: B\n", []string{"more than one YAML document"}},
		{"size not multiple of 8", "keys: {default_size: 100}\n", []string{"keys.default_size: must be a positive multiple of 8"}},
		{"min above default", "keys: {min_size: 512}\n", []string{"keys: want min_size <= default_size <= max_size, got 512, 256, 8192"}},
		{"default above max", "keys: {default_size: 16384}\n", []string{"want min_size <= default_size <= max_size"}},
		{"max_per_request", "keys: {max_per_request: 0}\n", []string{"keys.max_per_request: must be >= 1"}},
		{"max_key_count", "keys: {max_key_count: -1}\n", []string{"keys.max_key_count: must be >= 1"}},
		{"prereserve", "keys: {prereserve: -1}\n", []string{"keys.prereserve: must be >= 0"}},
		{"batch_blocks", "keys: {batch_blocks: 0}\n", []string{"keys.batch_blocks: must be >= 1"}},
		{"max_link_material", "keys: {max_link_material: 0}\n", []string{"keys.max_link_material: must be > 0"}},
		{"bad node ID", "node_id: A/1\n", nil}, // replaced below
		{"bad listen address", "listen: {etsi014: localhost}\n", []string{`listen.etsi014: invalid address "localhost"`}},
		{"bad listen port", "listen: {metrics: \":99999\"}\n", []string{`listen.metrics: invalid port in ":99999"`}},
		{"etsi014 off", "listen: {etsi014: \"\"}\n", []string{"listen.etsi014: required"}},
		{"clashing listeners", "listen: {metrics: 127.0.0.1:5683}\n", []string{`listen.metrics: address "127.0.0.1:5683" already used by listen.peer_tcp`}},
		{"bad quicks address", "listen: {quicks: localhost}\n", []string{`listen.quicks: invalid address "localhost"`}},
		{"quicks clashes", "listen: {quicks: 127.0.0.1:8443}\n", []string{`listen.quicks: address "127.0.0.1:8443" already used by listen.etsi014`}},
		{"unknown synchronous", "store: {synchronous: sometimes}\n", []string{`store.synchronous: unknown value "sometimes"`}},
		{"kek equals store", "store: {path: k, kek_file: k}\n", []string{"store.kek_file: must differ from store.path"}},
		{"log level", "log: {level: loud}\n", []string{`log.level: unknown value "loud"`}},
		{"log format", "log: {format: xml}\n", []string{`log.format: unknown value "xml"`}},
		{"empty operator", "operator_cn: \"\"\n", []string{"operator_cn: required"}},
		{"bad SAE", "saes: [{id: \"S 1\", node: A}, {id: S2}]\n", []string{`saes[0].id: invalid ID "S 1"`, "saes[1].node: required"}},
		{"duplicate SAE", "saes: [{id: S, node: A}, {id: S, node: B}]\n", []string{`saes[1].id: duplicate SAE "S" (also saes[0])`}},
		{"hybrid on without identity", "hybrid: {mode: on}\n", []string{"hybrid.mode: on needs the node's post-quantum identity"}},
		{"hybrid mode", "hybrid: {mode: maybe, ca_file: c, cert_file: c2, key_file: k}\n", []string{`hybrid.mode: unknown value "maybe"`}},
		{"hybrid files apart", "hybrid: {key_file: k}\n", []string{"hybrid: ca_file, cert_file and key_file go together"}},
		{"hybrid crl alone", "hybrid: {crl_file: c}\n", []string{"hybrid.crl_file: needs ca_file, cert_file and key_file"}},
		{"hybrid offer lifetime", "hybrid: {offer_lifetime: 0s}\n", []string{"hybrid.offer_lifetime: must be > 0"}},
		{"SAE hybrid", "saes: [{id: S, node: A, hybrid: yes}]\n", []string{`saes[0].hybrid: unknown value "yes"`}},
		{"bad etsi004_dtls", "listen: {etsi004_dtls: nowhere}\n", []string{`listen.etsi004_dtls: invalid address "nowhere"`}},
		{"peer is self", strings.Replace(link, "peer: B", "peer: A", 1), []string{`links[0].peer: is this node ("A")`}},
		{"unknown transport", link + "    transport: sctp\n", []string{`links[0].transport: unknown value "sctp": want one of ["tcp" "udp"]`}},
		{"transport without listener", link + "    transport: udp\nlisten: {peer_udp: \"\"}\n", []string{"links[0].transport: udp, but listen.peer_udp is off"}},
		{"unknown mac", link + "    mac: hmac\n", []string{`links[0].mac: unknown value "hmac": want one of ["poly1305" "wegman_carter"]`}},
		{"mac_epoch with poly1305", link + "    mac_epoch: 64\n", []string{`links[0].mac_epoch: applies only to mac: wegman_carter (mac is "poly1305")`}},
		{"odd mac_epoch", link + "    mac: wegman_carter\n    mac_epoch: 101\n", []string{"links[0].mac_epoch: must be an even number of messages from 16 to 1048576, got 101"}},
		{"small mac_epoch", link + "    mac: wegman_carter\n    mac_epoch: 8\n", []string{"links[0].mac_epoch: must be an even number"}},
		{"negative mac_epoch", link + "    mac: wegman_carter\n    mac_epoch: -2\n", []string{"links[0].mac_epoch: must be an even number"}},
		{"bad peer address", strings.Replace(link, "127.0.0.1:5684", "127.0.0.1", 1), []string{`links[0].peer_addr: invalid address "127.0.0.1"`}},
		{"peer port zero", strings.Replace(link, "127.0.0.1:5684", "127.0.0.1:0", 1), []string{`links[0].peer_addr: invalid port`}},
		{"bad device transport", strings.Replace(link, "{addr: 127.0.0.1:6000}", "{addr: 127.0.0.1:6000, transport: quic}", 1), []string{`links[0].device.transport: unknown value "quic"`}},
		{"bad key stream", strings.Replace(link, "{addr: 127.0.0.1:6000}", "{addr: 127.0.0.1:6000, key_stream_id: nope}", 1), []string{`links[0].device.key_stream_id: invalid UUID "nope"`}},
		{"no device", strings.Replace(link, "{addr: 127.0.0.1:6000}", "{}", 1), []string{"links[0].device.addr: required"}},
		{"missing psk file", strings.Replace(link, "psk/A-B.psk", "psk/none.psk", 1), []string{"links[0].psk_file: file", "none.psk does not exist"}},
		{"no psk file", strings.Replace(link, "psk_file: psk/A-B.psk", "psk_file: \"\"", 1), []string{"links[0].psk_file: required"}},
		{"duplicate link", link + strings.TrimPrefix(link, "\nlinks:\n"), []string{`links[1].id: duplicate link "A-B" (also links[0])`}},
		{"bad link ID", strings.Replace(link, "id: A-B", "id: A/B", 1), []string{`links[0].id: invalid link ID "A/B"`}},
	}
	tests[21].want = []string{`node_id: invalid ID "A/1"`}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			text := minimal + tt.text
			if strings.HasPrefix(tt.text, "node_id:") {
				text = strings.Replace(minimal, "node_id: A\n", tt.text, 1)
			}
			_, err := Load(writeConfig(t, dir, text))
			if err == nil {
				t.Fatalf("Load(%q) = nil error, want %q", tt.text, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load(%q) = %v\nwant an error containing %q", tt.text, err, w)
				}
			}
		})
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	text := `
node_id: ""
colour: blue
listen: {etsi014: nowhere}
keys: {default_size: 12, ttl: forever}
log: {level: loud}
` + link + "    mac: hmac\n    transport: carrier-pigeon\n"
	_, err := Load(writeConfig(t, t.TempDir(), text))
	if err == nil {
		t.Fatal("Load = nil error")
	}
	want := []string{
		`unknown field "colour"`, "node_id: required", "data_dir: required", "tls.ca_file: required",
		"listen.etsi014: invalid address", "keys.default_size", `invalid duration "forever"`,
		"log.level", "links[0].mac", "links[0].transport",
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Load = %v\nwant an error containing %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "store.path") {
		t.Errorf("Load = %v\nreports store.path, which only follows from data_dir", err)
	}
}

func TestPSKMode(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, minimal+link)
	if _, err := Load(path); err != nil {
		t.Fatalf("Load with a 0600 PSK = %v", err)
	}
	psk := filepath.Join(dir, "psk", "A-B.psk")
	if err := os.Chmod(psk, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "links[0].psk_file: "+psk+" has mode 0644") {
		t.Errorf("Load with a 0644 PSK = %v, want a mode error", err)
	}
	if err := os.Remove(psk); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(psk, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("Load with a directory as PSK = %v", err)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "[1, 2]", "node_id: [", "just a string"} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) = nil error", in)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		str  string
	}{
		{"64MiB", 64 << 20, "64MiB"},
		{"1 GiB", 1 << 30, "1GiB"},
		{"1000", 1000, "1000"},
		{"1024", 1024, "1KiB"},
		{"2kB", 2000, "2000"},
		{"3MB", 3e6, "3000000"},
		{"7B", 7, "7"},
		{"0", 0, "0"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want || got.String() != tt.str {
			t.Errorf("ParseByteSize(%q) = %d (%s), %v, want %d (%s)", tt.in, got, got, err, tt.want, tt.str)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "+1", "1.5GiB", "64 mib", "9999999TiB", "1e6"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestDurationString(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
	}{{"1h", "1h"}, {"90m", "1h30m"}, {"1m", "1m"}, {"1h0m5s", "1h0m5s"}, {"1500ms", "1.5s"}} {
		var d Duration
		if err := d.UnmarshalYAML(scalar(tt.in)); err != nil || d.String() != tt.want {
			t.Errorf("Duration(%q).String() = %q, %v, want %q", tt.in, d, err, tt.want)
		}
	}
}

func TestMACSchemes(t *testing.T) {
	tests := []struct {
		name      string
		extra     string
		mac       string
		epoch     int
		wantError bool
	}{
		{"default", "", MACPoly1305, 0, false},
		{"poly1305", "    mac: poly1305\n", MACPoly1305, 0, false},
		{"wegman_carter default epoch", "    mac: wegman_carter\n", MACWegmanCarter, DefaultMACEpoch, false},
		{"wegman_carter epoch 64", "    mac: wegman_carter\n    mac_epoch: 64\n", MACWegmanCarter, 64, false},
		{"wegman_carter largest epoch", "    mac: wegman_carter\n    mac_epoch: 1048576\n", MACWegmanCarter, MaxMACEpoch, false},
		{"wegman_carter epoch too large", "    mac: wegman_carter\n    mac_epoch: 1048578\n", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(writeConfig(t, t.TempDir(), minimal+link+tt.extra))
			if tt.wantError {
				if err == nil || !strings.Contains(err.Error(), "links[0].mac_epoch") {
					t.Fatalf("Load(%q) = %v, want a links[0].mac_epoch error", tt.extra, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load(%q) = %v", tt.extra, err)
			}
			if l := got.Links[0]; l.MAC != tt.mac || l.MACEpoch != tt.epoch {
				t.Errorf("Load(%q) links[0] mac, mac_epoch = %q, %d; want %q, %d", tt.extra, l.MAC, l.MACEpoch, tt.mac, tt.epoch)
			}
		})
	}
}
