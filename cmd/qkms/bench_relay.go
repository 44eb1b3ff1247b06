package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/bench"
	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/node"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// relayBenchOptions are the flags of `qkms bench relay`.
type relayBenchOptions struct {
	only       []string
	chainFile  string
	ringScale  float64
	meshScale  float64
	modes      []string // multipath part: keys.multipath values
	mpPairs    []string // multipath part: masters of the pairs to run ("": all)
	chainScale float64
	idle       time.Duration
	warmup     time.Duration
	duration   time.Duration
	clients    int
	number     int
	size       int
	latencyN   int
	latencyMax time.Duration
	keepDir    bool
	ahead      time.Duration // keys.relay_ahead of the ring5 network
	chainAhead time.Duration // keys.relay_ahead of the chain (0: on demand)
}

func benchRelayCmd() *cobra.Command {
	var o relayBenchOptions
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Measure multi-hop key relay: delivered rate vs the route's bottleneck ESKR, internal key use, 31-hop latency",
		Long: "Runs whole networks in this process and measures, each beside its baseline in the same run:\n" +
			"  ring5: enc_keys for a pair two hops apart, saturated, against the route's bottleneck ESKR\n" +
			"         (SKR − IKR from QUICKS link/performance at both ends of each link, same window);\n" +
			"  chain: the same over the 31 hops of the Beijing–Shanghai backbone, then the latency of one\n" +
			"         256-bit key over 31 hops against one hop (on-demand reservation with a neighbour) and a\n" +
			"         bare TLS handler. IKR/SKR per link is reported for the loaded route and for the idle network.\n" +
			"Neighbour pools are not pre-filled (keys.prereserve 0). ring5 relays ahead as deployed (--relay-ahead); the chain\n" +
			"relays every enc_keys on demand unless --chain-relay-ahead is set.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRelayBench(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.only, "only", []string{"ring5", "chain"}, "parts to run: ring5, chain, multipath (ring5's A→C and metro-mesh-9's pairs across its min-cut with keys.multipath off, spread and split, side by side)")
	f.StringVar(&o.chainFile, "chain-topology", "", "the Beijing–Shanghai backbone topology file (default: the built-in copy, cmd/qkms/topologies/cn-beijing-shanghai-backbone.json)")
	f.Float64Var(&o.ringScale, "ring-scale", 4, "multiply ring5's link rates by this")
	f.Float64Var(&o.meshScale, "mesh-scale", 1, "multiply metro-mesh-9's link rates by this (multipath part)")
	f.StringSliceVar(&o.modes, "modes", []string{"off", "spread", "split"}, "multipath part: the keys.multipath settings to compare")
	f.StringSliceVar(&o.mpPairs, "pairs", nil, "multipath part: only the pairs whose master is listed (SAE_A1: ring5 A→C; SAE_S2_1, SAE_S4_1: metro-mesh-9's min-cut pairs)")
	f.Float64Var(&o.chainScale, "chain-scale", 4, "multiply the backbone's link rates by this")
	f.DurationVar(&o.ahead, "relay-ahead", 2*time.Second, "keys.relay_ahead of the ring5 network's nodes (the default; 0: every enc_keys relays on demand)")
	f.DurationVar(&o.chainAhead, "chain-relay-ahead", 0, "keys.relay_ahead of the chain's nodes (0, the default here: every enc_keys relays on demand, which is what the latency row measures; the node's default 2s measures the relayed pair served from its relay-ahead pool)")
	f.DurationVar(&o.idle, "idle", 8*time.Second, "idle window before the load (IKR/SKR of an idle network)")
	f.DurationVar(&o.warmup, "warmup", 30*time.Second, "warm-up under load before the window (spends the key the route stored before)")
	f.DurationVar(&o.duration, "duration", 30*time.Second, "measured window under load")
	f.IntVar(&o.clients, "clients", 8, "concurrent enc_keys clients for the throughput load")
	f.IntVar(&o.number, "number", 128, "keys per enc_keys request in the throughput load")
	f.IntVar(&o.size, "size", 256, "key size, bits, in the throughput load")
	f.IntVar(&o.latencyN, "latency-requests", 200, "sequential requests per latency measurement")
	f.DurationVar(&o.latencyMax, "latency-max", 45*time.Second, "longest time per latency measurement")
	f.BoolVar(&o.keepDir, "keep", false, "keep the networks' directories (logs, configs)")
	return cmd
}

func runRelayBench(ctx context.Context, out io.Writer, o relayBenchOptions) error {
	fmt.Fprintf(out, "qkms bench relay: %v window after %v warm-up, %d clients × enc_keys number=%d size=%d; keys.prereserve 0\n",
		o.duration, o.warmup, o.clients, o.number, o.size)
	for _, part := range o.only {
		var err error
		switch part {
		case "ring5":
			err = benchRing5(ctx, out, o)
		case "multipath":
			err = benchMultipath(ctx, out, o)
		case "chain":
			err = benchChain(ctx, out, o)
		default:
			err = fmt.Errorf("unknown part %q (ring5, chain, multipath)", part)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", part, err)
		}
	}
	return nil
}

// relayNet is a running network and clients for it.
type relayNet struct {
	t    *topology.Topology
	n    *netsim.Network
	dir  string
	op   *http.Client // operator: QUICKS link/performance
	saes map[qkd.SAEID]*http.Client
	urls map[qkd.NodeID]netsim.NodeInfo
	done func()
}

func upRelayNet(ctx context.Context, out io.Writer, t *topology.Topology, scale float64, keep bool, tune func(*config.Config)) (*relayNet, error) {
	dir, err := os.MkdirTemp("", "qkms-bench-relay-")
	if err != nil {
		return nil, err
	}
	logf, log, err := fileLogger(dir, "warn")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	n, err := netsim.Up(ctx, netsim.Options{Topology: t, Dir: dir, Logger: log, Scale: scale,
		Tune: tune})
	if err != nil {
		logf.Close()
		return nil, err
	}
	fmt.Fprintf(out, "  %s: %d nodes, %d links, rates ×%g, up in %.1fs (dir %s)\n", t.Name, len(t.Nodes), len(t.Links), scale, time.Since(start).Seconds(), dir)
	rn := &relayNet{t: t, n: n, dir: dir, saes: map[qkd.SAEID]*http.Client{}, urls: map[qkd.NodeID]netsim.NodeInfo{}}
	rn.done = func() {
		n.Close()
		logf.Close()
		if !keep {
			os.RemoveAll(dir)
		}
	}
	mk := func(cert, key string) (*http.Client, error) {
		cfg, err := pki.ClientTLSConfig(n.Info.CA, cert, key, "")
		if err != nil {
			return nil, err
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 64}, Timeout: time.Minute}, nil
	}
	if rn.op, err = mk(n.Info.Operator.Cert, n.Info.Operator.Key); err != nil {
		rn.done()
		return nil, err
	}
	for _, s := range n.Info.SAEs {
		if rn.saes[s.ID], err = mk(s.Cert, s.Key); err != nil {
			rn.done()
			return nil, err
		}
	}
	for _, nd := range n.Info.Nodes {
		rn.urls[nd.ID] = nd
	}
	return rn, nil
}

func (rn *relayNet) close() { rn.done() }

// noPools turns off every pool: each enc_keys relays or reserves on demand.
func noPools(c *config.Config) { c.Keys.Prereserve, c.Keys.RelayAhead = 0, 0 }

func (rn *relayNet) nodeOf(s qkd.SAEID) qkd.NodeID {
	nd, _ := rn.t.NodeOf(s)
	return nd
}

// encURL is master's enc_keys URL for slave at master's node.
func (rn *relayNet) encURL(master, slave qkd.SAEID, number, size int) string {
	return fmt.Sprintf("%s/api/v1/keys/%s/enc_keys?number=%d&size=%d", rn.urls[rn.nodeOf(master)].ETSI014URL, slave, number, size)
}

// firstKeys makes requests until one succeeds (the first sets the key
// stream up through the controller), for at most a minute.
func (rn *relayNet) firstKeys(ctx context.Context, master, slave qkd.SAEID, number, size int) error {
	do := bench.EncKeys(rn.saes[master], rn.encURL(master, slave, number, size))
	deadline := time.Now().Add(time.Minute)
	var err error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err = do(ctx); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no keys %s→%s: %w", master, slave, err)
}

// linkWin is one link measured at both ends over a window.
type linkWin struct {
	id       qkd.LinkID
	from, to qkd.NodeID // from: the end that allocates relay pads (the upstream hop)
	nominal  float64    // topology SKR × scale, bit/s
	src, dst bench.Rates
}

// skr is the link's SKR, bytes/s: the mean of both ends (they store the
// same blocks).
func (w linkWin) skr() float64 { return (w.src.SKR + w.dst.SKR) / 2 }

// ikr is the link's internal key use, bytes/s: both ends' IKR.
func (w linkWin) ikr() float64 { return w.src.IKR + w.dst.IKR }

func (w linkWin) eskr() float64 { return w.skr() - w.ikr() }

func (w linkWin) ikrShare() float64 {
	if w.skr() <= 0 {
		return 0
	}
	return w.ikr() / w.skr()
}

// measure reads link/performance of l at both ends and averages (from, to].
func (rn *relayNet) measure(ctx context.Context, l topology.Link, up qkd.NodeID, scale float64, from, to time.Time) (linkWin, error) {
	w := linkWin{id: l.ID, from: up, to: l.Other(up), nominal: l.SKRbps * scale}
	for i, end := range []qkd.NodeID{w.from, w.to} {
		p, err := bench.Performance(ctx, rn.op, rn.urls[end].KMSSDNURL, node.LinkUUID(l.ID))
		if err != nil {
			return w, fmt.Errorf("%s at %s: %w", l.ID, end, err)
		}
		r := bench.Window(p, from, to)
		if i == 0 {
			w.src = r
		} else {
			w.dst = r
		}
	}
	return w, nil
}

// waitEntries waits until every node sampled a performance entry after t
// (entries are one second long).
func waitEntries(t time.Time) { time.Sleep(time.Until(t.Add(1500 * time.Millisecond))) }

// route is a pair's route and, per hop, the link the relay uses and the
// parallel links of the hop.
type route struct {
	nodes    []qkd.NodeID
	used     []topology.Link   // the first link to the next hop: the one the relay engine uses
	parallel [][]topology.Link // every link of the hop
}

func (rn *relayNet) route(master, slave qkd.SAEID) (route, error) {
	nodes, ok := rn.n.Route(master, slave)
	if !ok || len(nodes) < 2 {
		return route{}, fmt.Errorf("no route for %s→%s", master, slave)
	}
	r := route{nodes: nodes}
	for i := range len(nodes) - 1 {
		ls := rn.t.LinksBetween(nodes[i], nodes[i+1])
		if len(ls) == 0 {
			return route{}, fmt.Errorf("route %v: %s and %s are not neighbours", nodes, nodes[i], nodes[i+1])
		}
		r.used = append(r.used, ls[0])
		r.parallel = append(r.parallel, ls)
	}
	return r, nil
}

func (r route) String() string {
	s := make([]string, len(r.nodes))
	for i, n := range r.nodes {
		s[i] = string(n)
	}
	if len(s) > 8 {
		s = append(s[:4], append([]string{"…"}, s[len(s)-3:]...)...)
	}
	return strings.Join(s, "→")
}

// usedKAV returns the smallest KAV (bytes) over the relay links of r, at
// their upstream ends, now.
func (rn *relayNet) usedKAV(ctx context.Context, r route) int64 {
	least := int64(-1)
	for i, l := range r.used {
		p, err := bench.Performance(ctx, rn.op, rn.urls[r.nodes[i]].KMSSDNURL, node.LinkUUID(l.ID))
		if err != nil {
			continue
		}
		if k := int64(p.Current.KAV); least < 0 || k < least {
			least = k
		}
	}
	return least
}

// throughput saturates master→slave and measures the delivered rate against
// the route's links over the same window. It returns the route.
func throughput(ctx context.Context, out io.Writer, rn *relayNet, o relayBenchOptions, scale float64, master, slave qkd.SAEID) (route, error) {
	if err := rn.firstKeys(ctx, master, slave, 1, o.size); err != nil {
		return route{}, err
	}
	r, err := rn.route(master, slave)
	if err != nil {
		return route{}, err
	}
	fmt.Fprintf(out, "  pair %s→%s, route %s (%d hops), each key fetched at both ends and compared\n", master, slave, r, len(r.used))
	// enc_keys at the master's node, then dec_keys at the slave's, as
	// applications do: the slave's fetches are also what makes its node
	// relay ahead back along the route (from its halves of the links).
	var chk bench.Checked
	dec := rn.urls[rn.nodeOf(slave)].ETSI014URL + "/api/v1/keys/" + string(master) + "/dec_keys"
	do := bench.EncDec(rn.saes[master], rn.encURL(master, slave, o.number, o.size), rn.saes[slave], dec, &chk)
	// Warm up: spend what the route stored before the load. What is left
	// shows as the bottleneck's KAV drain over the window (reported).
	wStart := time.Now()
	bench.DriveKeys(ctx, o.clients, o.warmup, 20*time.Millisecond, do)
	fmt.Fprintf(out, "  warm-up %.1fs, smallest KAV of a relay link after it: %d B\n", time.Since(wStart).Seconds(), rn.usedKAV(ctx, r))
	from := time.Now()
	d := bench.DriveKeys(ctx, o.clients, o.duration, 20*time.Millisecond, do)
	to := from.Add(d.Elapsed)
	waitEntries(to)
	ws := make([]linkWin, len(r.used))
	hopCap := make([]float64, len(r.used)) // ESKR of every parallel link of the hop
	for i, l := range r.used {
		if ws[i], err = rn.measure(ctx, l, r.nodes[i], scale, from, to); err != nil {
			return r, err
		}
		for _, pl := range r.parallel[i] {
			pw := ws[i]
			if pl.ID != l.ID {
				if pw, err = rn.measure(ctx, pl, r.nodes[i], scale, from, to); err != nil {
					return r, err
				}
			}
			hopCap[i] += pw.eskr()
		}
	}
	if d.FirstError != nil {
		fmt.Fprintf(out, "  first failure: %v\n", d.FirstError)
	}
	bits := float64(d.Keys*o.size) / d.Elapsed.Seconds()
	bi := 0
	for i := range ws {
		if ws[i].eskr() < ws[bi].eskr() {
			bi = i
		}
	}
	hb := slices.Min(hopCap)
	b := ws[bi]
	fmt.Fprintf(out, "  %-52s %12s\n", "over the window "+fmt.Sprintf("(%.1fs)", d.Elapsed.Seconds()), "bit/s")
	fmt.Fprintf(out, "  %-52s %12.0f  (%d requests, %d keys, %d failed)\n", "delivered end to end (enc_keys at "+string(r.nodes[0])+")", bits, d.Requests, d.Keys, d.Errors)
	fmt.Fprintf(out, "  %-52s %12d  (%d missing at the slave's node, %d compared)\n", "keys whose bytes differ between the ends", chk.Mismatches.Load(), chk.Missing.Load(), chk.Keys.Load())
	fmt.Fprintf(out, "  %-52s %12.0f  link %s (nominal %.0f), KAV %d→%d B at %s\n", "bottleneck ESKR, relay links (SKR−IKR)", b.eskr()*8, b.id, b.nominal, b.src.KAVFrom, b.src.KAVTo, b.from)
	fmt.Fprintf(out, "  %-52s %12.0f  (parallel links of a hop added)\n", "bottleneck ESKR, hops", hb*8)
	fmt.Fprintf(out, "  %-52s %12.2f  (target ≥ 0.95)\n", "ratio delivered / bottleneck ESKR (relay links)", bits/(b.eskr()*8))
	drain := float64(b.src.KAVFrom-b.src.KAVTo) / max(b.src.Seconds, 1)
	fmt.Fprintf(out, "  %-52s %12.2f  (KAV drain %.0f bit/s)\n", "ratio delivered / (bottleneck ESKR + its KAV drain)", bits/((b.eskr()+max(drain, 0))*8), drain*8)
	fmt.Fprintf(out, "  %-52s %12.2f\n", "ratio delivered / bottleneck ESKR (hops)", bits/(hb*8))
	fmt.Fprintf(out, "  %-52s %12.2f  (each end relays from its own block parity: ½ of the link)\n", "ratio delivered / ½ bottleneck ESKR (relay links)", bits/(b.eskr()*4))
	var shares, exkr []float64
	for _, w := range ws {
		shares = append(shares, w.ikrShare())
		exkr = append(exkr, w.src.EXKR/max(w.skr(), 1))
	}
	s := bench.SpreadOf(shares)
	e := bench.SpreadOf(exkr)
	fmt.Fprintf(out, "  IKR/SKR over the route's %d relay links under load: min %.2f%%  median %.2f%%  max %.2f%%  (target ≤ 1%%)\n",
		len(ws), 100*s.Min, 100*s.Median, 100*s.Max)
	fmt.Fprintf(out, "  EXKR/SKR at the upstream ends (material taken for keys and pads): min %.2f  median %.2f  max %.2f\n", e.Min, e.Median, e.Max)
	return r, nil
}

// idle measures IKR/SKR of every link over an idle window.
func idle(ctx context.Context, out io.Writer, rn *relayNet, scale float64, d time.Duration) error {
	from := time.Now()
	time.Sleep(d)
	to := time.Now()
	waitEntries(to)
	var shares []float64
	var skr, ikr float64
	for _, l := range rn.t.Links {
		w, err := rn.measure(ctx, l, l.A, scale, from, to)
		if err != nil {
			return err
		}
		shares = append(shares, w.ikrShare())
		skr += w.skr()
		ikr += w.ikr()
	}
	s := bench.SpreadOf(shares)
	fmt.Fprintf(out, "  idle %v, IKR/SKR over all %d links: min %.2f%%  median %.2f%%  max %.2f%%  (all links together %.2f%%)\n",
		d, len(shares), 100*s.Min, 100*s.Median, 100*s.Max, 100*ikr/max(skr, 1))
	return nil
}

func benchRing5(ctx context.Context, out io.Writer, o relayBenchOptions) error {
	raw, err := builtinTopologies.ReadFile("topologies/ring5.json")
	if err != nil {
		return err
	}
	t, err := topology.Parse(raw)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\n== ring5: a pair two hops apart ==")
	rn, err := upRelayNet(ctx, out, t, o.ringScale, o.keepDir, func(c *config.Config) {
		noPools(c)
		c.Keys.RelayAhead = config.Duration(o.ahead)
		c.Keys.Multipath = config.MultipathOff // one route, measured against its links (--only multipath compares)
	})
	if err != nil {
		return err
	}
	defer rn.close()
	if err := idle(ctx, out, rn, o.ringScale, o.idle); err != nil {
		return err
	}
	_, err = throughput(ctx, out, rn, o, o.ringScale, "SAE_A1", "SAE_C1")
	return err
}

// chainNeighbourSAE is an SAE the benchmark adds at Beijing's neighbour on
// the backbone (the topology has applications only at the four cities), for
// the one-hop baseline.
const chainNeighbourSAE = "SAE_BENCH_R01"

func benchChain(ctx context.Context, out io.Writer, o relayBenchOptions) error {
	var t0 *topology.Topology
	var err error
	if o.chainFile == "" {
		var raw []byte
		if raw, err = builtinTopologies.ReadFile("topologies/cn-beijing-shanghai-backbone.json"); err == nil {
			t0, err = topology.Parse(raw)
		}
		o.chainFile = "cn-beijing-shanghai-backbone.json (built in)"
	} else {
		t0, err = topology.Load(o.chainFile)
	}
	if err != nil {
		return err
	}
	// The SAEs at the ends of the chain: the two nodes with one neighbour.
	var ends []qkd.SAEID
	for _, nd := range t0.Nodes {
		if len(t0.Neighbours(nd.ID)) == 1 {
			ends = append(ends, t0.SAEsAt(nd.ID)...)
		}
	}
	if len(ends) != 2 {
		return fmt.Errorf("%s: want one SAE at each end of a chain, found %v", o.chainFile, ends)
	}
	first, last := ends[0], ends[1]
	firstNode, _ := t0.NodeOf(first)
	nb := t0.Neighbours(firstNode)[0]
	t1 := *t0
	t1.SAEs = append(slices.Clone(t0.SAEs), topology.SAE{ID: chainNeighbourSAE, Node: nb})
	t, err := topology.New(t1)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n== %s: %s ↔ %s ==\n", t.Name, first, last)
	tune := noPools
	if o.chainAhead > 0 {
		fmt.Fprintf(out, "  keys.relay_ahead %v: relayed pairs are served from their relay-ahead pools\n", o.chainAhead)
		tune = func(c *config.Config) { noPools(c); c.Keys.RelayAhead = config.Duration(o.chainAhead) }
	}
	rn, err := upRelayNet(ctx, out, t, o.chainScale, o.keepDir, tune)
	if err != nil {
		return err
	}
	defer rn.close()
	if err := idle(ctx, out, rn, o.chainScale, o.idle); err != nil {
		return err
	}
	// Latency first: relay steps left queued by a saturating load hold up
	// the links' outboxes (one entry in flight per link) for a while.
	if err := latency(ctx, out, rn, o, last, first); err != nil {
		return err
	}
	_, err = throughput(ctx, out, rn, o, o.chainScale, first, last)
	return err
}

// latency measures one 256-bit key per request, sequentially, for a pair
// relayed over the whole chain (master at the far end: a pair no earlier
// load touched), for a neighbour pair (on-demand reservation: one
// KMS↔KMS round trip) and for the bare TLS handler, in one run.
func latency(ctx context.Context, out io.Writer, rn *relayNet, o relayBenchOptions, master, slave qkd.SAEID) error {
	if err := rn.firstKeys(ctx, master, slave, 1, 256); err != nil {
		return err
	}
	r, err := rn.route(master, slave)
	if err != nil {
		return err
	}
	// No pool holds keys of the pair (keys.prereserve and relay_ahead 0,
	// firstKeys took exactly what it relayed): every request relays. The
	// pair's stored_key_count cannot tell: for a remote pair it is the
	// path-wide figure the SDN agent reports (kms.Service.remoteStored),
	// not the keys relayed.
	nbMaster := qkd.SAEID("")
	for _, s := range rn.n.Info.SAEs {
		if s.ID != chainNeighbourSAE && s.Node == rn.nodeOf(slave) {
			nbMaster = s.ID
		}
	}
	if err := rn.firstKeys(ctx, nbMaster, chainNeighbourSAE, 1, 256); err != nil {
		return err
	}
	info := rn.urls[rn.nodeOf(nbMaster)]
	pkiDir := filepath.Dir(rn.n.Info.CA)
	srvTLS, err := pki.ServerTLSConfig(rn.n.Info.CA, filepath.Join(pkiDir, string(info.KMEID)+".pem"), filepath.Join(pkiDir, string(info.KMEID)+"-key.pem"))
	if err != nil {
		return err
	}
	bare, err := bench.StartBare(srvTLS)
	if err != nil {
		return err
	}
	defer bare.Close()
	fmt.Fprintf(out, "  latency, 1 × 256-bit key per request, %d sequential requests each (keep-alive):\n", o.latencyN)
	var firstErr []string
	run := func(name string, c *http.Client, url string, warm int) bench.Result {
		// A few requests first: connections and caches warm (and, relaying
		// ahead, the pair's demand measured and its pool filled).
		bench.Load(ctx, name, 1, time.Minute, warm, bench.GetOK(c, url))
		get, seen := bench.EncKeys(c, url), false
		r := bench.Load(ctx, name, 1, o.latencyMax, o.latencyN, func(ctx context.Context) error {
			_, err := get(ctx)
			if err != nil && !seen {
				seen = true
				firstErr = append(firstErr, fmt.Sprintf("%s: %v", name, err))
			}
			return err
		})
		return r
	}
	b := run("bare TLS handler", rn.saes[nbMaster], bare.URL, 5)
	one := run("neighbour pair (1 hop)", rn.saes[nbMaster], rn.encURL(nbMaster, chainNeighbourSAE, 1, 256), 5)
	farName, farWarm := fmt.Sprintf("relayed pair (%d hops)", len(r.used)), 5
	if o.chainAhead > 0 {
		farName, farWarm = fmt.Sprintf("relayed pair (%d hops, pool)", len(r.used)), o.latencyN
	}
	far := run(farName, rn.saes[master], rn.encURL(master, slave, 1, 256), farWarm)
	for _, x := range []bench.Result{b, one, far} {
		fmt.Fprintf(out, "    %-26s p50 %9v  p99 %9v  (%d ok, %d failed)\n", x.Name, x.P50.Round(time.Microsecond), x.P99.Round(time.Microsecond), x.Requests, x.Errors)
	}
	for _, e := range firstErr {
		fmt.Fprintf(out, "    first failure, %s\n", e)
	}
	if one.P50 > 0 && b.P50 > 0 {
		fmt.Fprintf(out, "    relayed / (1 hop × %d): p50 %.2f  p99 %.2f\n", len(r.used),
			float64(far.P50)/float64(one.P50)/float64(len(r.used)), float64(far.P99)/float64(one.P99)/float64(len(r.used)))
		fmt.Fprintf(out, "    relayed / 1 hop: p50 %.1f  p99 %.1f;  relayed / bare: p50 %.1f  p99 %.1f;  1 hop / bare: p50 %.1f  p99 %.1f\n",
			float64(far.P50)/float64(one.P50), float64(far.P99)/float64(one.P99),
			float64(far.P50)/float64(b.P50), float64(far.P99)/float64(b.P99),
			float64(one.P50)/float64(b.P50), float64(one.P99)/float64(b.P99))
		fmt.Fprintf(out, "    per hop: p50 %v (target: 31-hop p50 ≤ 20 ms, p99 ≤ 60 ms on loopback)\n", (far.P50 / time.Duration(len(r.used))).Round(time.Microsecond))
	}
	return nil
}
