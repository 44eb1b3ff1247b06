package kmsapi_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/kmsapi"
)

const (
	devID  = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
	linkID = "7184f8e9-4503-45d6-a399-afb9c0e61d06"
	ksid   = "9dd59892-db33-4db5-8e39-76b4a44e4aea"
)

var entry = quicks.PerformanceEntry{Timestamp: time.Date(2024, 8, 27, 17, 41, 28, 0, time.UTC), DeltaT: 10000, IKR: 144, EXKR: 320, SKR: 1250, KAV: 1810}

// call is what the fake backend was asked.
type call struct {
	op      string
	id      string
	reset   bool
	entries int
	state   quicks.State
	dev     quicks.DeviceConnection
	relay   quicks.RelayConfig
	caller  string
}

// fake is a Backend with canned answers that records its calls. Everything
// is guarded by mu: the server calls it from its own goroutines.
type fake struct {
	mu    sync.Mutex
	calls []call               // guarded by mu
	errs  map[string]error     // guarded by mu; by op
	caps  quicks.Capabilities  // guarded by mu
	stat  quicks.KMSStatus     // guarded by mu
	perf  quicks.Performance   // guarded by mu
	devs  quicks.QKDDeviceList // guarded by mu
}

func newFake() *fake {
	return &fake{
		errs: map[string]error{},
		caps: quicks.Capabilities{
			KeyRelaySupport: true,
			AppAPISupport:   []quicks.AppAPI{quicks.AppAPIETSI014, quicks.AppAPIETSI004},
			ETSI014Info: &quicks.ETSI014Info{KMSID: "KME_A", KeySize: 256, StoredKeyCount: 10, MaxKeyCount: 1024,
				MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64, MaxSAEIDCount: 0,
				StatusExtension: map[string]any{"links": 2.0}},
			Extension: []string{quicks.ExtHybridPQC, quicks.ExtITSMACPoly1305, quicks.ExtITSMACWegmanCarter, quicks.ExtMultipath},
		},
		stat: quicks.KMSStatus{State: quicks.StateOnline, Operation: quicks.OperationNormal},
		perf: quicks.Performance{Current: entry, History: []quicks.PerformanceEntry{entry, entry, entry}},
		devs: quicks.QKDDeviceList{QKDDevices: []quicks.QKDDevice{{DeviceID: devID, LinkID: linkID, Label: "sim A-B",
			State: quicks.StateOnline, Interface: quicks.InterfaceETSI004, Protocol: "coap", PeerKMS: "KME_B"}}},
	}
}

func (f *fake) setErr(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[op] = err
}

func (f *fake) setStatus(s quicks.KMSStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stat = s
}

func (f *fake) last() call {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return call{}
	}
	return f.calls[len(f.calls)-1]
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// record notes c and returns the error set for its op.
func (f *fake) record(ctx context.Context, c call) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.caller = quicks.Caller(ctx)
	f.calls = append(f.calls, c)
	return f.errs[c.op]
}

func (f *fake) Version(ctx context.Context) (quicks.VersionInfo, error) {
	return quicks.VersionInfo{Version: quicks.Version}, f.record(ctx, call{op: "Version"})
}
func (f *fake) Capabilities(ctx context.Context) (quicks.Capabilities, error) {
	err := f.record(ctx, call{op: "Capabilities"})
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.caps, err
}
func (f *fake) DeviceInfo(ctx context.Context) (quicks.DeviceInfo, error) {
	return quicks.DeviceInfo{Vendor: "qkms", Model: "qkms KMS", Version: "0.9.0"}, f.record(ctx, call{op: "DeviceInfo"})
}
func (f *fake) Status(ctx context.Context, reset bool) (quicks.KMSStatus, error) {
	err := f.record(ctx, call{op: "Status", reset: reset})
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stat, err
}
func (f *fake) Log(ctx context.Context) (kmsapi.LogFile, error) {
	return kmsapi.LogFile{ContentType: "text/plain; charset=utf-8", Body: io.NopCloser(strings.NewReader("[2025-12-11 10:00:00] INFO: System started\n"))},
		f.record(ctx, call{op: "Log"})
}
func (f *fake) QKDDevices(ctx context.Context) (quicks.QKDDeviceList, error) {
	err := f.record(ctx, call{op: "QKDDevices"})
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.devs, err
}
func (f *fake) SetStatus(ctx context.Context, state quicks.State) error {
	return f.record(ctx, call{op: "SetStatus", state: state})
}
func (f *fake) RegisterDevice(ctx context.Context, id string, dev quicks.DeviceConnection) error {
	return f.record(ctx, call{op: "RegisterDevice", id: id, dev: dev})
}
func (f *fake) UpdateDevice(ctx context.Context, id string, dev quicks.DeviceConnection) error {
	return f.record(ctx, call{op: "UpdateDevice", id: id, dev: dev})
}
func (f *fake) RemoveDevice(ctx context.Context, id string) error {
	return f.record(ctx, call{op: "RemoveDevice", id: id})
}
func (f *fake) LinkPerformance(ctx context.Context, id string, entries int) (quicks.Performance, error) {
	err := f.record(ctx, call{op: "LinkPerformance", id: id, entries: entries})
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.perf
	p.History = append([]quicks.PerformanceEntry(nil), p.History...)
	return p, err
}
func (f *fake) CreateRelay(ctx context.Context, id string, e quicks.RelayConfig) error {
	return f.record(ctx, call{op: "CreateRelay", id: id, relay: e})
}
func (f *fake) ReplaceRelay(ctx context.Context, id string, e quicks.RelayConfig) error {
	return f.record(ctx, call{op: "ReplaceRelay", id: id, relay: e})
}
func (f *fake) DeleteRelay(ctx context.Context, id string) error {
	return f.record(ctx, call{op: "DeleteRelay", id: id})
}
