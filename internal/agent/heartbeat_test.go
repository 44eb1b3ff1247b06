package agent

import (
	"testing"
	"time"

	"github.com/qkms/qkms/internal/controller"
	"github.com/qkms/qkms/internal/sdn"
)

func testReport(status string, skr uint32) controller.NodeReport {
	return controller.NodeReport{
		Node: sdn.QKDNode{ID: "B", Status: sdn.QKDNodeOperating, Links: &sdn.QKDLinks{Links: []sdn.QKDLink{{
			ID: "A-B", Type: sdn.QKDLinkPhys, Status: status, Local: sdn.QKDLinkEnd{NodeID: "B"}, Remote: sdn.QKDLinkEnd{NodeID: "A"},
			Performance: &sdn.QKDLinkPerformance{SKR: skr},
		}}}},
		Agent: controller.AgentInfo{URL: "https://agent"},
	}
}

// An idle agent reports a change at once, performance alone with the
// heartbeat.
func TestReportDue(t *testing.T) {
	now := time.Unix(1000, 0)
	a := &Agent{o: Options{Interval: time.Second, Heartbeat: 3 * time.Second}}
	first := testReport(sdn.QKDLinkActive, 100)
	if !a.due(first, now) {
		t.Fatal("the first report is not due")
	}
	a.sent, a.sentAt = withoutPerformance(first), now
	if first.Node.Links.Links[0].Performance == nil {
		t.Fatal("withoutPerformance changed the report it was given")
	}
	tests := []struct {
		name  string
		rep   controller.NodeReport
		after time.Duration
		want  bool
	}{
		{"same, before the heartbeat", testReport(sdn.QKDLinkActive, 100), 2 * time.Second, false},
		{"performance only, before the heartbeat", testReport(sdn.QKDLinkActive, 999), 2 * time.Second, false},
		{"same, at the heartbeat", testReport(sdn.QKDLinkActive, 100), 3 * time.Second, true},
		{"link off, at once", testReport(sdn.QKDLinkOff, 100), time.Second, true},
	}
	for _, tt := range tests {
		if got := a.due(tt.rep, now.Add(tt.after)); got != tt.want {
			t.Errorf("%s: due = %v, want %v", tt.name, got, tt.want)
		}
	}
}
