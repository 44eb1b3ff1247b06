package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/qkd"
)

// minimal is the smallest valid file: everything else has a default.
const minimal = `
node_id: A
data_dir: ./data
tls: {ca_file: pki/ca.pem, cert_file: pki/A.pem, key_file: pki/A-key.pem}
`

const full = `
node_id: A
kme_id: KME_A
data_dir: ./data
listen:
  etsi014: 127.0.0.1:8443
  peer_udp: 127.0.0.1:5683
  peer_tcp: 127.0.0.1:5683
  metrics: ""
tls: {ca_file: pki/ca.pem, cert_file: pki/A.pem, key_file: pki/A-key.pem}
operator_cn: ops
saes:
  - {id: SAE_A1, node: A}
  - {id: SAE_B1, node: B}
links:
  - id: A-B
    peer: B
    peer_addr: 127.0.0.1:5684
    transport: udp
    psk_file: psk/A-B.psk
    mac: poly1305
    device:
      addr: 127.0.0.1:6000
      transport: udp
      key_stream_id: 550e8400-e29b-41d4-a716-446655440000
  - id: A-B#2
    peer: B
    peer_addr: "[::1]:5684"
    psk_file: /abs/A-B#2.psk
    device: {addr: "localhost:6001"}
keys:
  default_size: 512
  min_size: 128
  max_size: 4096
  max_per_request: 10
  max_key_count: 1000
  ttl: 90m
  prereserve: 0
  batch_blocks: 4
  max_link_material: 1GiB
store: {path: "", kek_file: "", synchronous: full, kek_rotation: 24h}
log: {level: debug, format: text}
`

// writeConfig writes text as dir/node.yaml, with the PSK files it names
// (mode 0600) relative to dir.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "psk"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "psk", "A-B.psk"), make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	got, err := Load(writeConfig(t, dir, minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.NodeID = "A"
	want.KMEID = "KME_A"
	want.DataDir = filepath.Join(dir, "data")
	want.TLS = TLS{
		CAFile:   filepath.Join(dir, "pki/ca.pem"),
		CertFile: filepath.Join(dir, "pki/A.pem"),
		KeyFile:  filepath.Join(dir, "pki/A-key.pem"),
	}
	want.Store.Path = filepath.Join(dir, "data/keys.db")
	want.Store.KEKFile = filepath.Join(dir, "data/keys.db.kek")
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("Load(minimal) mismatch (-want +got):\n%s", diff)
	}
	if got.Keys.TTL.D() != time.Hour || got.Keys.MaxLinkMaterial != 64<<20 || got.Listen.PeerTCP == "" {
		t.Errorf("Load(minimal) defaults = %+v", got.Keys)
	}
}

func TestFull(t *testing.T) {
	dir := t.TempDir()
	text := strings.ReplaceAll(full, "/abs/A-B#2.psk", filepath.Join(dir, "psk", "A-B.psk"))
	got, err := Load(writeConfig(t, dir, text))
	if err != nil {
		t.Fatal(err)
	}
	if got.Listen.Metrics != "" {
		t.Errorf("listen.metrics = %q, want off", got.Listen.Metrics)
	}
	l := got.Links[1]
	if l.Transport != TransportTCP || l.MAC != MACPoly1305 || l.Device.Transport != TransportTCP {
		t.Errorf("links[1] defaults = %+v", l)
	}
	if want := filepath.Join(dir, "psk/A-B.psk"); got.Links[0].PSKFile != want {
		t.Errorf("links[0].psk_file = %q, want %q", got.Links[0].PSKFile, want)
	}
	if got.Keys.TTL.D() != 90*time.Minute || got.Keys.MaxLinkMaterial != GiB || got.Keys.Prereserve != 0 {
		t.Errorf("keys = %+v", got.Keys)
	}
	if want := []qkd.SAEID{"SAE_A1"}; !cmp.Equal(got.LocalSAEs(), want) {
		t.Errorf("LocalSAEs() = %v, want %v", got.LocalSAEs(), want)
	}
	if n, ok := got.NodeOf("SAE_B1"); n != "B" || !ok {
		t.Errorf("NodeOf(SAE_B1) = %q, %v", n, ok)
	}
	if got.Log.SlogLevel().String() != "DEBUG" {
		t.Errorf("SlogLevel() = %v, want DEBUG", got.Log.SlogLevel())
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	text := minimal + "store: {path: db/k.db}\n"
	got, err := Load(writeConfig(t, dir, text))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"data_dir", got.DataDir, filepath.Join(dir, "data")},
		{"tls.ca_file", got.TLS.CAFile, filepath.Join(dir, "pki", "ca.pem")},
		{"store.path", got.Store.Path, filepath.Join(dir, "db", "k.db")},
		{"store.kek_file", got.Store.KEKFile, filepath.Join(dir, "db", "k.db.kek")},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	// Parse has no file: paths stay relative.
	p, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if p.DataDir != "./data" || p.Store.Path != filepath.Join("data", "keys.db") {
		t.Errorf("Parse: data_dir = %q, store.path = %q", p.DataDir, p.Store.Path)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	text := strings.ReplaceAll(full, "/abs/A-B#2.psk", "psk/A-B.psk")
	first, err := Load(writeConfig(t, dir, text))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir() // absolute paths: the new location does not matter
	path := filepath.Join(other, "again.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	second, err := Load(path)
	if err != nil {
		t.Fatalf("Load(Marshal(cfg)) = %v\n%s", err, out)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("round trip mismatch (-first +second):\n%s\n%s", diff, out)
	}
	for _, s := range []string{"ttl: 1h30m", "max_link_material: 1GiB", "metrics: \"\"", "kek_rotation: 24h"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("Marshal output lacks %q:\n%s", s, out)
		}
	}
}

// TestMarshalGenerated is the `qkms net up` use: build from Default(), write
// with relative paths next to the PSKs, load back.
func TestMarshalGenerated(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "")
	cfg := Default()
	cfg.NodeID = "B"
	cfg.DataDir = "data/B"
	cfg.TLS = TLS{CAFile: "pki/ca.pem", CertFile: "pki/B.pem", KeyFile: "pki/B-key.pem"}
	cfg.Listen = Listen{ETSI014: "127.0.0.1:0", PeerTCP: "127.0.0.1:0", Metrics: "127.0.0.1:0"}
	cfg.Links = []Link{{ID: "A-B", Peer: "A", PeerAddr: "127.0.0.1:5683", PSKFile: "psk/A-B.psk", Device: Device{Addr: "127.0.0.1:6000"}}}
	out, err := Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "B.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load(Marshal(generated)) = %v\n%s", err, out)
	}
	if got.KMEID != "KME_B" || got.Listen.PeerUDP != "" || got.Links[0].Transport != TransportTCP ||
		got.Links[0].PSKFile != filepath.Join(dir, "psk/A-B.psk") {
		t.Errorf("Load(Marshal(generated)) = %+v", got)
	}
	if cfg.KMEID != "" || cfg.Links[0].Transport != "" {
		t.Errorf("Marshal modified its argument: %+v", cfg)
	}
}

func TestSanitizedCopies(t *testing.T) {
	dir := t.TempDir()
	text := strings.ReplaceAll(full, "/abs/A-B#2.psk", "psk/A-B.psk")
	c, err := Load(writeConfig(t, dir, text))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sanitized()
	if diff := cmp.Diff(c, s); diff != "" {
		t.Errorf("Sanitized() differs (-cfg +sanitized):\n%s", diff)
	}
	s.Links[0].PeerAddr = "x"
	s.SAEs[0].ID = "x"
	if c.Links[0].PeerAddr == "x" || c.SAEs[0].ID == "x" {
		t.Errorf("Sanitized() shares slices with the original")
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
}
