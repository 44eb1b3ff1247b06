package sim

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// sampleReport is two networks with their pairs' bounds from the real
// generators and made-up outcomes.
func sampleReport(t *testing.T) *Report {
	t.Helper()
	r := &Report{Tool: "qkms sim", Options: ReportOptions{Seed: 1, Pairs: 3, Scale: 0.1}}
	for i, f := range []string{"star", "ring"} {
		g, err := Generate(f, 6, 1)
		if err != nil {
			t.Fatal(err)
		}
		ps := choosePairs(g, 3, rand.New(rand.NewPCG(1, 2)))
		if err := bound(g, ps); err != nil {
			t.Fatal(err)
		}
		n := NetResult{Name: g.Name, Family: f, N: 6, Nodes: 6, Links: len(g.Links), Mismatches: 0}
		for j, p := range ps {
			n.Pairs = append(n.Pairs, PairResult{Pair: p, RouteHops: p.WidestHops,
				Saturated: PairPhase{ServedKps: float64(100 * (i + j + 1)), Keys: int64(1000 * (j + 1))}})
		}
		n.Saturated.ServedKps = 600
		r.Networks = append(r.Networks, n)
	}
	return r
}

func TestChoosePairsAndBounds(t *testing.T) {
	g, _ := Generate("star", 8, 3)
	ps := choosePairs(g, 5, rand.New(rand.NewPCG(3, 4)))
	if len(ps) != 5 {
		t.Fatalf("%d pairs", len(ps))
	}
	if len(g.LinksBetween(ps[0].From, ps[0].To)) == 0 {
		t.Errorf("first pair %s→%s is not a neighbour pair", ps[0].From, ps[0].To)
	}
	seen := map[[2]string]bool{}
	for _, p := range ps {
		if p.From == p.To || seen[[2]string{string(p.Master), string(p.Slave)}] {
			t.Errorf("bad or repeated pair %+v", p)
		}
		seen[[2]string{string(p.Master), string(p.Slave)}] = true
	}
	if err := bound(g, ps); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		// In a star every pair's max-flow and widest path is one link.
		if math.Abs(p.MaxFlowBps-LinkRate(UniformKM)) > 1 || p.WidestBps != p.MaxFlowBps || p.Bound != BoundWidestPath {
			t.Errorf("%s→%s: max-flow %v, widest %v, bound %q", p.From, p.To, p.MaxFlowBps, p.WidestBps, p.Bound)
		}
		if p.ShareBps <= 0 || p.ShareBps > p.WidestBps {
			t.Errorf("%s→%s: share %v of widest %v", p.From, p.To, p.ShareBps, p.WidestBps)
		}
	}
	all := choosePairs(g, 0, rand.New(rand.NewPCG(3, 4)))
	if len(all) != 8*7 {
		t.Errorf("all pairs: %d, want 56", len(all))
	}
	// A ring of 4 has two disjoint paths: max-flow is twice the widest.
	ring, _ := Generate("ring", 4, 1)
	rp := []Pair{{From: "n1", To: "n3"}}
	if err := bound(ring, rp); err != nil {
		t.Fatal(err)
	}
	if rp[0].MaxFlowBps != 2*rp[0].WidestBps || rp[0].WidestHops != 2 {
		t.Errorf("ring n1→n3: max-flow %v, widest %v over %d hops", rp[0].MaxFlowBps, rp[0].WidestBps, rp[0].WidestHops)
	}
}

func TestReportJSON(t *testing.T) {
	r := sampleReport(t)
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Networks) != 2 || back.Networks[1].Name != "ring-6" || len(back.Networks[0].Pairs) != 3 {
		t.Fatalf("decoded %+v", back)
	}
	if back.Networks[0].Pairs[0].Bound != BoundWidestPath || back.Networks[0].Pairs[0].MaxFlowBps == 0 {
		t.Errorf("pair bounds lost: %+v", back.Networks[0].Pairs[0])
	}
	for _, key := range []string{`"bound": "widest_path"`, `"max_flow_bps"`, `"fibre_utilisation"`, `"jain_keys"`, `"mismatches"`} {
		if !strings.Contains(b.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	var tb bytes.Buffer
	if err := r.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tb.String(), "star-6") || !strings.Contains(tb.String(), "ring-6") {
		t.Errorf("table:\n%s", tb.String())
	}
}

func TestReportSVG(t *testing.T) {
	r := sampleReport(t)
	r.Networks[0].Pairs[0].Master = `SAE<&">`
	var b bytes.Buffer
	if err := r.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	circles, root := 0, ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		if s, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = s.Name.Local
			}
			if s.Name.Local == "circle" {
				circles++
			}
		}
	}
	if root != "svg" {
		t.Errorf("root element %q", root)
	}
	if circles != 6 {
		t.Errorf("%d circles, want one per pair (6)", circles)
	}
}
