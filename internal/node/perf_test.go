package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/qkms/qkms/internal/secret"
)

func TestEntryBetween(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a := perfCounters{at: t0, ingested: 1000, internal: 100, pool: 5000, kav: 4000}
	// 2 s: 4000 B in, 400 B internal, the pool grew by 1000 B: 2600 B left for external use.
	b := perfCounters{at: t0.Add(2 * time.Second), ingested: 5000, internal: 500, pool: 6000, kav: 5500}
	e, ok := entryBetween(a, b)
	if !ok || e.DeltaT != 2000 || e.SKR != 2000 || e.IKR != 200 || e.EXKR != 1300 || e.KAV != 5500 || !e.Timestamp.Equal(b.at) {
		t.Errorf("entryBetween = %+v, %v", e, ok)
	}
	// The pool grew by more than was ingested (material confirmed from before): EXKR floors at 0.
	b.pool = 20000
	if e, _ := entryBetween(a, b); e.EXKR != 0 {
		t.Errorf("EXKR = %d, want 0", e.EXKR)
	}
	if _, ok := entryBetween(b, a); ok {
		t.Error("a period of negative length gave an entry")
	}
}

func TestUUIDv5(t *testing.T) {
	// RFC 9562 appendix A.4: the version 5 UUID of "www.example.com" in the DNS namespace.
	dns := mustUUIDBytes("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	if got := formatUUID(nameUUID(dns, "www.example.com")); got != "2ed6657d-e927-568b-95e1-2665a8aea6a2" {
		t.Errorf("v5(DNS, www.example.com) = %s", got)
	}
	// Python: uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/qkms/qkms"), "link:A-B").
	if l := LinkUUID("A-B"); l != "e7bb0679-7dcf-54ff-a68f-305ed7f32b62" {
		t.Errorf("LinkUUID = %s", l)
	}
}

func TestLogRing(t *testing.T) {
	r := &logRing{}
	log := slog.New(newTeeHandler(slog.DiscardHandler, r)).With("node", "A")
	log.Debug("not kept")
	log.Info("hello", "psk", "00112233", "data", secret.Adopt([]byte{1, 2, 3}), "n", 7)
	log.Warn(strings.Repeat("x", 2*logLineMax))
	for i := range logRingLines {
		if i < 2 {
			continue
		}
		log.Info("filler")
	}
	var lines []map[string]any
	if err := json.Unmarshal(r.jsonArray(), &lines); err != nil {
		t.Fatal(err)
	}
	if len(lines) != logRingLines {
		t.Fatalf("%d lines, want %d", len(lines), logRingLines)
	}
	first := lines[0]
	if first["msg"] != "hello" || first["node"] != "A" || first["psk"] != "[REDACTED]" || first["data"] != "[REDACTED]" || first["n"] != float64(7) {
		t.Errorf("first line = %v", first)
	}
	if lines[1]["msg"] != "log record too long for monitor/log" {
		t.Errorf("long line = %v", lines[1])
	}
	log.Info("one more")
	_ = json.Unmarshal(r.jsonArray(), &lines)
	if len(lines) != logRingLines || lines[0]["msg"] == "hello" || lines[len(lines)-1]["msg"] != "one more" {
		t.Errorf("ring did not drop the oldest line: first %v last %v", lines[0], lines[len(lines)-1])
	}
	// The node's own output still gets what its level allows.
	var out strings.Builder
	log2 := slog.New(newTeeHandler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}), r))
	log2.Debug("dbg")
	if !strings.Contains(out.String(), "dbg") || !log2.Enabled(context.Background(), slog.LevelDebug) {
		t.Errorf("output = %q", out.String())
	}
}
