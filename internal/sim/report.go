package sim

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// Report is a campaign's outcome (the JSON of `qkms sim --json`).
type Report struct {
	Tool     string        `json:"tool"`
	Started  time.Time     `json:"started"`
	Machine  Machine       `json:"machine"`
	Options  ReportOptions `json:"options"`
	Networks []NetResult   `json:"networks"`
}

// Machine is where the campaign ran.
type Machine struct {
	CPUs   int    `json:"cpus"`
	GOOS   string `json:"goos"`
	GOARCH string `json:"goarch"`
	Go     string `json:"go"`
}

// ReportOptions are the campaign's settings.
type ReportOptions struct {
	Seed      int64   `json:"seed"`
	Pairs     int     `json:"pairs"`
	WarmupS   float64 `json:"warmup_s"`
	DurationS float64 `json:"duration_s"`
	Scale     float64 `json:"scale"`
	Number    int     `json:"keys_per_request"`
	Clients   int     `json:"closed_loop_clients_per_pair"`
	// LinkRateBps is a 5 km link's rate after scaling (the uniform
	// families' every link).
	LinkRateBps float64 `json:"uniform_link_rate_bps"`
}

// NetResult is one network's row.
type NetResult struct {
	Name          string  `json:"name"`
	Family        string  `json:"family"`
	N             int     `json:"n"`
	Nodes         int     `json:"nodes"`
	Links         int     `json:"links"`
	UpSeconds     float64 `json:"up_s"`
	WallSeconds   float64 `json:"wall_s"` // the network's whole run, up to stopped
	MeanRouteHops float64 `json:"mean_route_hops"`
	// Paced: every pair offered half its share bound (Pair.ShareBps).
	Paced PhaseResult `json:"paced"`
	// Saturated: closed-loop clients per pair, back to back.
	Saturated PhaseResult `json:"saturated"`
	// FibreUtil is Σ key material taken / Σ nominal link rate over every
	// link in the saturated window (dkms: Σtaken / Σcap); FibreUtilRoutes
	// the same over the links of the pairs' routes only.
	FibreUtil       float64 `json:"fibre_utilisation"`
	FibreUtilRoutes float64 `json:"fibre_utilisation_routes"`
	TakenBps        float64 `json:"taken_bps"`
	// Integrity over the whole run (set-up, warm-ups and windows): every
	// key delivered by enc_keys fetched by dec_keys at the slave's node.
	RoundTrips   int64        `json:"round_trips"`
	KeysCompared int64        `json:"keys_compared"`
	Mismatches   int64        `json:"mismatches"`
	Missing      int64        `json:"missing"`
	Notes        []string     `json:"notes,omitempty"`
	Pairs        []PairResult `json:"pairs"`
}

// PhaseResult sums one load phase over a network's pairs.
type PhaseResult struct {
	Seconds           float64 `json:"seconds"`
	OfferedKeys       int64   `json:"offered_keys,omitempty"`
	OfferedKps        float64 `json:"offered_keys_per_s,omitempty"`
	ServedKeys        int64   `json:"served_keys"`
	ServedKps         float64 `json:"served_keys_per_s"`
	ServedOverOffered float64 `json:"served_over_offered,omitempty"`
	// ServedOverBound is Σ served / Σ share bound over the pairs.
	ServedOverBound float64 `json:"served_over_share_bound"`
	Requests        int64   `json:"requests"`
	Failed          int64   `json:"failed"`
	// JainKeys is Jain's index of the keys served per pair (dkms's);
	// JainNorm of served rate / share bound per pair.
	JainKeys         float64 `json:"jain_keys"`
	JainNorm         float64 `json:"jain_over_bound"`
	WorstOverUniform float64 `json:"worst_pair_over_uniform"`
	Enc              Latency `json:"enc_keys_latency"`
	RoundTrip        Latency `json:"round_trip_latency"`
	FirstError       string  `json:"first_error,omitempty"`
}

// PairResult is one pair's outcome.
type PairResult struct {
	Pair
	Route     []qkd.NodeID `json:"route"`
	RouteHops int          `json:"route_hops"`
	Paced     PairPhase    `json:"paced"`
	Saturated PairPhase    `json:"saturated"`
}

// PairPhase is one pair in one phase.
type PairPhase struct {
	OfferedKps float64 `json:"offered_keys_per_s,omitempty"`
	ServedKps  float64 `json:"served_keys_per_s"`
	Keys       int64   `json:"keys"`
	Failed     int64   `json:"failed"`
	OverWidest float64 `json:"over_widest_path"`
	OverShare  float64 `json:"over_share"`
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteTable writes one row per network.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "qkms sim: seed %d, %d pairs/network, %v warm-up + %v window per load, links ×%g (5 km link %.0f bit/s), %d keys/request, %d closed-loop clients/pair, %d CPUs\n",
		r.Options.Seed, r.Options.Pairs, time.Duration(r.Options.WarmupS*1e9), time.Duration(r.Options.DurationS*1e9), r.Options.Scale,
		r.Options.LinkRateBps, r.Options.Number, r.Options.Clients, r.Machine.CPUs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "network\tN\tlinks\tpairs\thops\t| paced keys/s\tserved/offered\tp50 ms\tp99 ms\t| saturated keys/s\t/Σshare\tutil\tutil routes\tJain\tworst/unif\tp50 ms\tp99 ms\t| round trips\tmismatched\tmissing\t")
	for _, n := range r.Networks {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t| %.0f\t%.3f\t%.2f\t%.2f\t| %.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.2f\t%.2f\t| %d\t%d\t%d\t\n",
			n.Name, n.N, n.Links, len(n.Pairs), n.MeanRouteHops,
			n.Paced.OfferedKps, n.Paced.ServedOverOffered, n.Paced.Enc.P50ms, n.Paced.Enc.P99ms,
			n.Saturated.ServedKps, n.Saturated.ServedOverBound, n.FibreUtil, n.FibreUtilRoutes, n.Saturated.JainKeys, n.Saturated.WorstOverUniform,
			n.Saturated.Enc.P50ms, n.Saturated.Enc.P99ms, n.RoundTrips, n.Mismatches, n.Missing)
	}
	return tw.Flush()
}

// familyColour: one colour per family across charts (dkms's palette).
var familyColour = map[string]string{"star": "#e69f00", "ring": "#00a8c6", "bridge": "#d62728", "mesh": "#2ca02c",
	"rgg": "#9467bd", "random": "#7f7f7f"}

func colourOf(family string) string {
	if c, ok := familyColour[family]; ok {
		return c
	}
	return "#000000"
}

// WriteSVG draws one circle per pair: its delivered rate under the
// saturating load (y) against its max-flow bound (x), keys/s, with the
// y = x line; colour by family.
func (r *Report) WriteSVG(w io.Writer) error {
	const W, H, left, right, top, bottom = 760.0, 520.0, 70.0, 150.0, 30.0, 50.0
	pw, ph := W-left-right, H-top-bottom
	hi := 1.0
	for _, n := range r.Networks {
		for _, p := range n.Pairs {
			hi = math.Max(hi, math.Max(p.MaxFlowBps/KeyBits, p.Saturated.ServedKps))
		}
	}
	hi = niceCeil(hi)
	x := func(v float64) float64 { return left + v/hi*pw }
	y := func(v float64) float64 { return top + ph - v/hi*ph }
	var b strings.Builder
	esc := func(s string) string {
		var e strings.Builder
		_ = xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<title>%s</title>`+"\n", esc("qkms sim: delivered key rate per pair against its max-flow bound"))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#000000"/>`+"\n", left, top, pw, ph)
	for i := 0; i <= 5; i++ {
		v := hi * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", x(v), top, x(v), top+ph)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", left, y(v), left+pw, y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(v), top+ph+16, esc(fmtNum(v)))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, esc(fmtNum(v)))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000" stroke-dasharray="6 4"><title>y = x</title></line>`+"\n", x(0), y(0), x(hi), y(hi))
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, H-12, esc("max-flow bound of the pair, keys/s (256-bit)"))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+ph/2, esc("delivered under saturation, keys/s"))
	fmt.Fprintf(&b, `<g id="pairs">`+"\n")
	var seen []string
	for _, n := range r.Networks {
		c := colourOf(n.Family)
		if !slices.Contains(seen, n.Family) {
			seen = append(seen, n.Family)
		}
		for _, p := range n.Pairs {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" fill-opacity="0.7"><title>%s</title></circle>`+"\n",
				x(p.MaxFlowBps/KeyBits), y(p.Saturated.ServedKps), c,
				esc(fmt.Sprintf("%s %s→%s (%d hops): %.1f keys/s, max-flow %.1f, widest path %.1f", n.Name, p.Master, p.Slave, p.RouteHops,
					p.Saturated.ServedKps, p.MaxFlowBps/KeyBits, p.WidestBps/KeyBits)))
		}
	}
	fmt.Fprintf(&b, "</g>\n")
	for i, f := range seen {
		ly := top + 10 + float64(i)*18
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
			left+pw+14, ly, colourOf(f), left+pw+30, ly+9, esc(f))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}
