package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/etsi004/coap004"
	"github.com/qkms/qkms/internal/etsi004/tcp004"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/telemetry"
)

// app004 is what a conformance check needs of an application's 004
// connection; the CoAP and the TCP/TLS clients both have it.
type app004 interface {
	OpenConnect(context.Context, etsi004.OpenRequest) (etsi004.OpenResponse, error)
	GetKey(context.Context, etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error)
	Close(context.Context, etsi004.CloseRequest) (etsi004.CloseResponse, error)
}

// binding004 connects an application to its node over one 004 binding.
type binding004 struct {
	name string
	dial func(ctx context.Context, t *testing.T, node netsim.NodeInfo, cfg *tls.Config) app004
}

var bindings004 = []binding004{
	{"coap", func(ctx context.Context, t *testing.T, node netsim.NodeInfo, cfg *tls.Config) app004 {
		t.Helper()
		if node.ETSI004Addr == "" {
			t.Fatalf("network.json lacks etsi004_addr for node %s", node.ID)
		}
		c, err := coap004.DialTLS(ctx, node.ETSI004Addr, cfg, coap004.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Hangup() })
		return c
	}},
	{"dtls", func(ctx context.Context, t *testing.T, node netsim.NodeInfo, cfg *tls.Config) app004 {
		t.Helper()
		if node.ETSI004DTLSAddr == "" {
			t.Fatalf("network.json lacks etsi004_dtls_addr for node %s", node.ID)
		}
		c, err := coap004.DialDTLS(ctx, node.ETSI004DTLSAddr, cfg, coap004.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Hangup() })
		return c
	}},
	{"tcp", func(ctx context.Context, t *testing.T, node netsim.NodeInfo, cfg *tls.Config) app004 {
		t.Helper()
		if node.ETSI004TCPAddr == "" {
			t.Fatalf("network.json lacks etsi004_tcp_addr for node %s", node.ID)
		}
		c, err := tcp004.Dial(ctx, node.ETSI004TCPAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Disconnect() })
		return c
	}},
}

// connect004 connects sae to its own node over b with its certificate.
func connect004(ctx context.Context, t *testing.T, info netsim.Info, b binding004, sae qkd.SAEID) app004 {
	t.Helper()
	s := saeOf(info, sae)
	cfg, err := pki.ClientTLSConfig(info.CA, s.Cert, s.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	return b.dial(ctx, t, nodeOf(info, s.Node), cfg)
}

// storedKeys is the number of keys a node holds on its links (qkms_keys,
// ready and pending; line2 has one link). The gauge is updated every
// second.
func storedKeys(m *telemetry.Metrics) float64 {
	return gauge(m, "qkms_keys", "state", "ready") + gauge(m, "qkms_keys", "state", "pending")
}

// TestETSI004Conformance runs the 004 conformance checks
// over both bindings (CoAP over TLS and over DTLS, and
// the reference TCP/TLS framing), SAE_A1 at node A and SAE_B1 at
// node B of line2.json, on one network; then the Max_bps acceptance
// over the TCP/TLS binding. The nodes keep no pre-reserved
// 014 keys, so that the key gauges count only the streams' chunks; the
// link runs at 4× its rate (200 kbit/s, well above the 10 kbit/s cap).
func TestETSI004Conformance(t *testing.T) {
	n := startNetScaled(t, "line2.json", 4, nil, func(c *config.Config) { c.Keys.Prereserve = 0 })
	info := n.Info
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const src, dst = "sae://SAE_A1", "sae://SAE_B1"
	ma, mb := n.Nodes["A"].Metrics(), n.Nodes["B"].Metrics()
	// Streams reserve their chunks 64 at a time. Right after start the
	// link holds little confirmed material (reservations leave a floor for
	// the MAC key refills, so they would only be refused for a while):
	// start once there is some, so that the timing checks below measure
	// the service, not the key supply.
	waitFor(t, time.Minute, "64 KiB of confirmed key material at A and B", func() bool {
		return gauge(ma, "qkms_link_material_bytes", "state", "confirmed") >= 64<<10 &&
			gauge(mb, "qkms_link_material_bytes", "state", "confirmed") >= 64<<10
	})

	for _, b := range bindings004 {
		t.Run(b.name, func(t *testing.T) {
			a := connect004(ctx, t, info, b, "SAE_A1")
			bb := connect004(ctx, t, info, b, "SAE_B1")
			open := func(t *testing.T, c app004, req etsi004.OpenRequest) etsi004.OpenResponse {
				t.Helper()
				r, err := c.OpenConnect(ctx, req)
				if err != nil {
					t.Fatalf("OPEN_CONNECT %+v: %v", req, err)
				}
				return r
			}
			closeOK := func(t *testing.T, c app004, k etsi004.KSID) {
				t.Helper()
				r, err := c.Close(ctx, etsi004.CloseRequest{KeyStreamID: k})
				if err != nil || r.Status != etsi004.StatusSuccessful {
					t.Fatalf("CLOSE %s = %+v, %v; want 0", k, r, err)
				}
			}
			// pair opens a stream with a NULL ID at A and joins it at B.
			pair := func(t *testing.T, q etsi004.QoS) etsi004.KSID {
				t.Helper()
				oa := open(t, a, etsi004.OpenRequest{Source: src, Destination: dst, QoS: q})
				if oa.Status != etsi004.StatusSuccessful && oa.Status != etsi004.StatusPeerNotConnected {
					t.Fatalf("OPEN_CONNECT at A = %+v", oa)
				}
				ob := open(t, bb, etsi004.OpenRequest{Source: "SAE_B1", Destination: "SAE_A1", KeyStreamID: oa.KeyStreamID})
				if ob.Status != etsi004.StatusSuccessful {
					t.Fatalf("OPEN_CONNECT at B = %+v, want 0", ob)
				}
				return oa.KeyStreamID
			}
			// get is GET_KEY of index i at c, retried while the chunk is not
			// there yet (2: being produced, 6: not in time).
			get := func(t *testing.T, c app004, end string, k etsi004.KSID, i, meta uint32) etsi004.GetKeyResponse {
				t.Helper()
				var r etsi004.GetKeyResponse
				waitFor(t, time.Minute, "GET_KEY at "+end, func() bool {
					var err error
					if r, err = c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: k, Index: i, MetadataSize: meta}); err != nil {
						t.Fatal(err)
					}
					switch r.Status {
					case etsi004.StatusSuccessful:
						return true
					case etsi004.StatusInsufficientKey, etsi004.StatusTimeout:
						return false
					}
					t.Fatalf("GET_KEY of index %d at %s = status %d (%v)", i, end, r.Status, r.Status)
					return false
				})
				return r
			}

			t.Run("1_null_ksid", func(t *testing.T) {
				seen := map[etsi004.KSID]bool{}
				for range 3 {
					r := open(t, a, etsi004.OpenRequest{Source: src, Destination: dst, QoS: etsi004.QoS{TTL: 5}})
					k := r.KeyStreamID
					if r.Status != etsi004.StatusSuccessful && r.Status != etsi004.StatusPeerNotConnected {
						t.Errorf("status %d, want 0 or 1", r.Status)
					}
					if k.IsNull() || k[6]>>4 != 4 || k[8]&0xc0 != 0x80 {
						t.Errorf("KSID %s is not a UUIDv4 (version nibble %x, variant bits %02x)", k, k[6]>>4, k[8]&0xc0)
					}
					if seen[k] {
						t.Errorf("KSID %s returned twice", k)
					}
					seen[k] = true
					closeOK(t, a, k)
				}
			})

			t.Run("2_ksid_in_use", func(t *testing.T) {
				// line2 has no third application: "another application" is
				// the one whose end of the stream is already open (the
				// service answers 5 to any open of an ID that is not the
				// caller's to join).
				q := etsi004.QoS{KeyChunkSize: 40, MaxBps: 0, Priority: 3, Timeout: 8000, TTL: 120, MetadataMimetype: etsi004.MimeJSON}
				oa := open(t, a, etsi004.OpenRequest{Source: src, Destination: dst, QoS: q})
				k := oa.KeyStreamID
				ob := open(t, bb, etsi004.OpenRequest{Source: "SAE_B1", Destination: "SAE_A1", KeyStreamID: k,
					QoS: etsi004.QoS{KeyChunkSize: 64, Timeout: 2000, TTL: 7}})
				if ob.Status != etsi004.StatusSuccessful || ob.KeyStreamID != k || ob.QoS != oa.QoS {
					t.Fatalf("peer's OPEN_CONNECT = %+v, want 0 with the stored QoS %+v", ob, oa.QoS)
				}
				for _, c := range []struct {
					end string
					app app004
					req etsi004.OpenRequest
				}{
					{"A", a, etsi004.OpenRequest{Source: src, Destination: dst, QoS: q, KeyStreamID: k}},
					{"B", bb, etsi004.OpenRequest{Source: "SAE_B1", Destination: "SAE_A1", KeyStreamID: k}},
				} {
					if r := open(t, c.app, c.req); r.Status != etsi004.StatusKSIDInUse {
						t.Errorf("second OPEN_CONNECT of %s at %s = %+v, want 5", k, c.end, r)
					}
				}
				// The refused opens leave the stream working.
				ka, kb := get(t, a, "A", k, 0, 0), get(t, bb, "B", k, 0, 0)
				if len(ka.Key) != 40 || !bytes.Equal(ka.Key, kb.Key) {
					t.Errorf("chunk 0 after the refused opens: A %d bytes, B %d bytes, equal %v", len(ka.Key), len(kb.Key), bytes.Equal(ka.Key, kb.Key))
				}
				closeOK(t, a, k)
				closeOK(t, bb, k)
			})

			t.Run("3_mimetype", func(t *testing.T) {
				r := open(t, a, etsi004.OpenRequest{Source: src, Destination: dst, QoS: etsi004.QoS{MetadataMimetype: "text/plain"}})
				if r.Status != etsi004.StatusQoSNotMet || r.QoS.MetadataMimetype != etsi004.MimeJSON {
					t.Errorf("OPEN_CONNECT with text/plain = status %d mimetype %q, want 7 and %q", r.Status, r.QoS.MetadataMimetype, etsi004.MimeJSON)
				}
				for _, m := range []string{etsi004.MimeJSON, "application/json; charset=utf-8"} {
					r := open(t, a, etsi004.OpenRequest{Source: src, Destination: dst, QoS: etsi004.QoS{MetadataMimetype: m, TTL: 5}})
					if r.Status != etsi004.StatusSuccessful && r.Status != etsi004.StatusPeerNotConnected {
						t.Errorf("OPEN_CONNECT with %q = %+v, want 0 or 1", m, r)
						continue
					}
					closeOK(t, a, r.KeyStreamID)
				}
			})

			t.Run("4_same_chunk", func(t *testing.T) {
				k := pair(t, etsi004.QoS{KeyChunkSize: 48, Timeout: 10000, TTL: 120})
				for _, i := range []uint32{0, 1, 5} {
					ka, kb := get(t, a, "A", k, i, 0), get(t, bb, "B", k, i, 0)
					if len(ka.Key) != 48 || !bytes.Equal(ka.Key, kb.Key) || ka.Index != i || kb.Index != i {
						t.Errorf("index %d: A %d bytes (index %d), B %d bytes (index %d), equal %v",
							i, len(ka.Key), ka.Index, len(kb.Key), kb.Index, bytes.Equal(ka.Key, kb.Key))
					}
				}
				closeOK(t, a, k)
				closeOK(t, bb, k)
			})

			t.Run("5_metadata_too_small", func(t *testing.T) {
				k := pair(t, etsi004.QoS{KeyChunkSize: 32, Timeout: 10000, TTL: 120, MetadataMimetype: etsi004.MimeJSON})
				small := func(c app004, end string) uint32 {
					t.Helper()
					r, err := c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: k, Index: 0, MetadataSize: 2})
					if err != nil {
						t.Fatal(err)
					}
					if r.Status != etsi004.StatusMetadataTooSmall || r.MetadataSize <= 2 || len(r.Key) != 0 {
						t.Fatalf("GET_KEY at %s with a 2-byte metadata buffer = status %d size %d key %d bytes; want 8 and the size needed",
							end, r.Status, r.MetadataSize, len(r.Key))
					}
					return r.MetadataSize
				}
				// The source first: the chunk does not exist yet.
				small(a, "A")
				ka := get(t, a, "A", k, 0, 1024)
				// The destination once the chunk exists at both nodes; the
				// retry gives exactly the size the KM asked for.
				need := small(bb, "B")
				kb := get(t, bb, "B", k, 0, need)
				if len(ka.Key) != 32 || !bytes.Equal(ka.Key, kb.Key) {
					t.Errorf("chunk 0 after status 8: A %d bytes, B %d bytes, equal %v", len(ka.Key), len(kb.Key), bytes.Equal(ka.Key, kb.Key))
				}
				for end, r := range map[string]etsi004.GetKeyResponse{"A": ka, "B": kb} {
					if !json.Valid(r.Metadata) || uint32(len(r.Metadata)) > need {
						t.Errorf("metadata at %s = %q (needed size %d)", end, r.Metadata, need)
					}
				}
				closeOK(t, a, k)
				closeOK(t, bb, k)
			})

			t.Run("6_timeout", func(t *testing.T) {
				const timeout = 1500 * time.Millisecond
				k, err := etsi004.NewKSID()
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				r := open(t, a, etsi004.OpenRequest{Source: src, Destination: dst, KeyStreamID: k,
					QoS: etsi004.QoS{Timeout: uint32(timeout / time.Millisecond), TTL: 5}})
				took := time.Since(start)
				if r.Status != etsi004.StatusTimeout {
					t.Fatalf("OPEN_CONNECT of a predefined ID the peer never opens = %+v, want 6", r)
				}
				// Not before the timeout; after it, as soon as the node gets
				// to it (a loaded machine may take a while: only a node
				// that never answers fails here).
				if slack := 30 * time.Second; took < timeout || took >= timeout+slack {
					t.Errorf("status 6 after %v, want between the timeout %v and %v", took, timeout, timeout+slack)
				}
			})

			t.Run("7_close_and_ttl", func(t *testing.T) {
				// GET_KEY after CLOSE at both ends.
				k := pair(t, etsi004.QoS{KeyChunkSize: 32, Timeout: 10000, TTL: 120})
				get(t, a, "A", k, 0, 0)
				get(t, bb, "B", k, 0, 0)
				closeOK(t, a, k)
				closeOK(t, bb, k)
				for end, c := range map[string]app004{"A": a, "B": bb} {
					r, err := c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: k, Index: 1})
					if err != nil {
						t.Fatal(err)
					}
					if r.Status == etsi004.StatusSuccessful || len(r.Key) != 0 {
						t.Errorf("GET_KEY at %s after CLOSE at both ends = status %d, want an error", end, r.Status)
					}
				}

				// Unused chunks of a stream with a 3 s TTL: the chunks
				// produced ahead of demand are at both nodes, then gone
				// after the TTL. Every earlier stream was closed at both
				// ends (its keys deleted) or never delivered a chunk.
				const ttl = 3 * time.Second
				waitFor(t, 30*time.Second, "no stored keys at A and B", func() bool {
					return storedKeys(ma) == 0 && storedKeys(mb) == 0
				})
				start := time.Now()
				k = pair(t, etsi004.QoS{KeyChunkSize: 32, Timeout: 10000, TTL: uint32(ttl / time.Second)})
				get(t, a, "A", k, 0, 0)
				get(t, bb, "B", k, 0, 0)
				waitFor(t, ttl, "unused chunks stored at A and B", func() bool {
					return storedKeys(ma) > 0 && storedKeys(mb) > 0
				})
				t.Logf("stored keys before the TTL: A %v, B %v", storedKeys(ma), storedKeys(mb))
				waitFor(t, ttl+20*time.Second, "the unused chunks erased at A and B", func() bool {
					return storedKeys(ma) == 0 && storedKeys(mb) == 0
				})
				if took := time.Since(start); took < ttl {
					t.Errorf("unused chunks erased %v after OPEN_CONNECT, before the TTL %v", took, ttl)
				}
				r, err := bb.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: k, Index: 1})
				if err != nil {
					t.Fatal(err)
				}
				if r.Status == etsi004.StatusSuccessful {
					t.Errorf("GET_KEY at B of an unused chunk after its TTL succeeded")
				}
				closeOK(t, a, k)
				closeOK(t, bb, k)
			})
		})
	}

	// Max_bps: an end never receives more than max_bps over a
	// minute (plus one chunk), however fast it asks.
	t.Run("tcp/max_bps", func(t *testing.T) {
		const maxBps, chunk, run = 10000, 32, time.Minute
		b := bindings004[2]
		if b.name != "tcp" {
			t.Fatalf("bindings004[2] is %s, want tcp", b.name)
		}
		a := connect004(ctx, t, info, b, "SAE_A1")
		bb := connect004(ctx, t, info, b, "SAE_B1")
		oa, err := a.OpenConnect(ctx, etsi004.OpenRequest{Source: src, Destination: dst,
			QoS: etsi004.QoS{KeyChunkSize: chunk, MaxBps: maxBps, Timeout: 10000, TTL: 600}})
		if err != nil || (oa.Status != etsi004.StatusSuccessful && oa.Status != etsi004.StatusPeerNotConnected) || oa.QoS.MaxBps != maxBps {
			t.Fatalf("OPEN_CONNECT at A = %+v, %v", oa, err)
		}
		k := oa.KeyStreamID
		ob, err := bb.OpenConnect(ctx, etsi004.OpenRequest{Source: "SAE_B1", Destination: "SAE_A1", KeyStreamID: k})
		if err != nil || ob.Status != etsi004.StatusSuccessful {
			t.Fatalf("OPEN_CONNECT at B = %+v, %v", ob, err)
		}
		var bits, chunks, refused int
		i := uint32(0)
		start := time.Now()
		var elapsed time.Duration
		for elapsed < run {
			r, err := a.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: k, Index: i})
			elapsed = time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			switch r.Status {
			case etsi004.StatusSuccessful:
				if len(r.Key) != chunk {
					t.Fatalf("chunk %d: %d bytes", i, len(r.Key))
				}
				bits += 8 * len(r.Key)
				chunks++
				i++
			case etsi004.StatusInsufficientKey, etsi004.StatusTimeout:
				refused++ // asked again
			default:
				t.Fatalf("GET_KEY of index %d = status %d", i, r.Status)
			}
		}
		limit := maxBps*elapsed.Seconds() + 8*chunk
		t.Logf("%d chunks (%d bits) in %v: %.0f bit/s; %d GET_KEYs refused with 2 or 6", chunks, bits, elapsed, float64(bits)/elapsed.Seconds(), refused)
		if chunks == 0 {
			t.Fatal("no chunk delivered")
		}
		if float64(bits) > limit {
			t.Errorf("%d bits delivered in %v, more than max_bps × elapsed + one chunk = %.0f", bits, elapsed, limit)
		}
		for _, c := range []app004{a, bb} {
			if r, err := c.Close(ctx, etsi004.CloseRequest{KeyStreamID: k}); err != nil || r.Status != etsi004.StatusSuccessful {
				t.Errorf("CLOSE = %+v, %v", r, err)
			}
		}
	})
}
