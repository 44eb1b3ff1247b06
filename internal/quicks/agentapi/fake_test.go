package agentapi_test

import (
	"context"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/quicks"
)

const (
	ksid   = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
	linkID = "7184f8e9-4503-45d6-a399-afb9c0e61d06"
	kmsID  = "53d3fa09-9e87-40d5-a7c0-974fcfe95c72"
)

var entry = quicks.PerformanceEntry{Timestamp: time.Date(2024, 8, 27, 17, 41, 28, 0, time.UTC), DeltaT: 10000, IKR: 144, EXKR: 320, SKR: 1250, KAV: 1810}

// call is what the fake agent was asked.
type call struct {
	op            string
	master, slave string
	id            string
	reg           quicks.LinkRegistration
	patch         quicks.RegistrationUpdate
	kms           quicks.KMSRegistration
	status        quicks.StatusNotification
	event         quicks.Event
	caller        string
}

// fake is an agent Backend with canned answers that records its calls;
// everything is guarded by mu.
type fake struct {
	mu     sync.Mutex
	calls  []call                    // guarded by mu
	errs   map[string]error          // guarded by mu
	status quicks.LinkStatus         // guarded by mu
	result quicks.RegistrationResult // guarded by mu
	config []byte                    // guarded by mu
}

func intp(n int) *int { return &n }

func newFake() *fake {
	return &fake{
		errs: map[string]error{},
		status: quicks.LinkStatus{SourceKMSID: "KME_A", TargetKMSID: "KME_C", KeySize: 256, StoredKeyCount: 12,
			MaxKeyCount: 1024, MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64, MaxSAEIDCount: 0,
			StatusExtension: map[string]any{"hops": 2.0}},
		result: quicks.RegistrationResult{KeyStreamID: ksid, NextNodeInfo: []string{"127.0.0.1:5684"},
			QoS:                 &quicks.QoSProposal{MaxBPS: intp(0), MinBPS: intp(128), TTL: intp(1)},
			PeerApplicationInfo: []quicks.PeerApplicationInfo{{KMSID: "KME_C", ApplicationIDs: []string{"SAE_C1"}}}},
		config: []byte("node: A\n"),
	}
}

func (f *fake) setErr(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[op] = err
}

func (f *fake) setResult(r quicks.RegistrationResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.result = r
}

func (f *fake) setConfig(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.config = b
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
func (f *fake) LinkStatus(ctx context.Context, master, slave string) (quicks.LinkStatus, error) {
	err := f.record(ctx, call{op: "LinkStatus", master: master, slave: slave})
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, err
}
func (f *fake) Register(ctx context.Context, req quicks.LinkRegistration) (quicks.RegistrationResult, error) {
	err := f.record(ctx, call{op: "Register", reg: req})
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.result, err
}
func (f *fake) PatchRegistration(ctx context.Context, req quicks.RegistrationUpdate) error {
	return f.record(ctx, call{op: "PatchRegistration", patch: req})
}
func (f *fake) DeleteStream(ctx context.Context, id string) error {
	return f.record(ctx, call{op: "DeleteStream", id: id})
}
func (f *fake) NotifyRegistration(ctx context.Context, req quicks.KMSRegistration) ([]byte, error) {
	err := f.record(ctx, call{op: "NotifyRegistration", kms: req})
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.config, err
}
func (f *fake) NotifyStatus(ctx context.Context, req quicks.StatusNotification) error {
	return f.record(ctx, call{op: "NotifyStatus", status: req})
}
func (f *fake) NotifyEvent(ctx context.Context, req quicks.Event) error {
	return f.record(ctx, call{op: "NotifyEvent", event: req})
}
