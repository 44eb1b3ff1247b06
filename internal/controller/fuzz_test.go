package controller_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qkms/qkms/internal/controller"
)

// Invalid samples every fuzz target also starts from.
var invalidSeeds = []string{
	``, `{`, `null`, `[]`, `"x"`, `{}`, `{}{}`, `{"a":1} x`, "\xff\xfe", `{"etsi-qkd-sdn-node:qkd_node":null}`,
	`{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":""}}`, `{"type":"alarm","severity":"error","message":""}`,
	`{"qkms:route":["A"],"qkms:next_hop":"A"}`, `{"stored_key_count":-1}`, `{"key_size":1e400}`,
}

// fuzzDecoder checks a decoder: it never panics, every error wraps
// ErrBadMessage, and a decoded value re-encodes to a message that decodes
// to an equal value.
func fuzzDecoder[T any](f *testing.F, decode func([]byte) (T, error), valid ...string) {
	for _, s := range valid {
		f.Add([]byte(s))
	}
	for _, s := range invalidSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(b)
		if err != nil {
			if !errors.Is(err, controller.ErrBadMessage) {
				t.Fatalf("decode(%q) = %v, want an error wrapping ErrBadMessage", b, err)
			}
			return
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) = %v", v, err)
		}
		v2, err := decode(enc)
		if err != nil {
			t.Fatalf("decode(re-encoded %s) = %v (original %q)", enc, err, b)
		}
		if diff := cmp.Diff(v, v2, equateEmpty); diff != "" {
			t.Fatalf("re-encoded value differs (-first +second):\n%s\noriginal %q\nre-encoded %s", diff, b, enc)
		}
	})
}

func FuzzDecodeNodeReport(f *testing.F) {
	fuzzDecoder(f, controller.DecodeNodeReport, sampleNodeReport,
		`{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A"},"qkms:agent":{"url":"https://h:1"}}`,
		`{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A","qkd_links":{"qkd_link":[{"qkdl_id":"A-B","qkdl_type":"etsi-qkd-node-types:VIRT"}]}},"qkms:agent":{"url":"https://h:1"}}`,
		`{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A"},"qkms:agent":{"url":"http://h:1"}}`)
}

func FuzzDecodeAppRegistration(f *testing.F) {
	fuzzDecoder(f, controller.DecodeAppRegistration, sampleAppRegistration,
		`{"etsi-qkd-sdn-node:qkd_app":{"server_app_id":"S","client_app_id":["C","D"]}}`,
		`{"etsi-qkd-sdn-node:qkd_app":{"server_app_id":"S","client_app_id":[]}}`,
		`{"etsi-qkd-sdn-node:qkd_app":{"server_app_id":"S","client_app_id":["C"],"app_qos":{"max_bandwidth":4294967295}}}`)
}

func FuzzDecodeAppRegistered(f *testing.F) {
	fuzzDecoder(f, controller.DecodeAppRegistered, sampleAppRegistered,
		`{"etsi-qkd-sdn-node:qkd_app":{"app_id":"0B6F0D3E-4A43-4C5E-8A55-8E2D1D1B9F00"},"qkms:route":["A","C"],"qkms:next_hop":"C"}`,
		`{"etsi-qkd-sdn-node:qkd_app":{"app_id":"x"},"qkms:route":["A","C"],"qkms:next_hop":"C","qkms:rate_bps":1.5e-300}`)
}

func FuzzDecodeNotification(f *testing.F) {
	fuzzDecoder(f, controller.DecodeNotification, sampleNotification,
		`{"type":"alarm","severity":"critical","message":"no route"}`,
		`{"type":"event","severity":"debug","message":"m","code":null,"timestamp":"2026-01-02T03:04:05Z"}`,
		`{"type":"qkdn_status","severity":"info","message":"\u00e9\ud800","timestamp":"0001-01-01T00:00:00Z"}`)
}

func FuzzDecodeNodeDocument(f *testing.F) {
	fuzzDecoder(f, controller.DecodeNodeDocument, sampleNodeDocument,
		`{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A"}}`,
		`{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A","qkd_links":{"qkd_link":[{"qkdl_id":"x","qkdl_type":"etsi-qkd-node-types:VIRT"}]}}}`,
		`{"etsi-qkd-sdn-node:qkd_node":{"qkdn_id":"A","qkd_applications":{"qkd_app":[{"app_id":"1","app_type":"t","server_app_id":"s","client_app_id":null}]}}}`)
}

func FuzzDecodePathStatus(f *testing.F) {
	fuzzDecoder(f, controller.DecodePathStatus, samplePathStatus,
		`{"source_kms_id":"KME_A","target_kms_id":"KME_B","key_size":0,"stored_key_count":0}`,
		`{"max_key_count":-5}`)
}
