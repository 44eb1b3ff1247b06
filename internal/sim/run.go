package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/qkms/qkms/internal/bench"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// Network is one network of a campaign.
type Network struct {
	// Family is a generated family (Families), or "builtin" / "file".
	Family   string
	N        int
	Topology *topology.Topology // nominal rates; Options.Scale applies
}

// Options configure a campaign.
type Options struct {
	Networks []Network
	Seed     int64 // pair choice (and, through Generate, the random families)
	// Pairs per network (0 or more than there are: every ordered pair).
	Pairs int
	// Warmup runs before each measured window under the same load.
	Warmup, Duration time.Duration
	Scale            float64 // link-rate multiplier (default 1)
	Number           int     // keys per enc_keys request (default 1)
	Clients          int     // closed-loop clients per pair (default 2)
	// Progress gets one line per phase and network (nil: none).
	Progress io.Writer
	// Dir is where each network's directory is made (default: the
	// system's temporary directory). Every node's key store lives there:
	// on a tmpfs its writes cost no disk I/O.
	Dir string
	// Keep keeps each network's directory (configs, qkms.log).
	Keep bool
	// SetupTimeout bounds the first exchange of every pair (default 1 min).
	SetupTimeout time.Duration
}

func (o *Options) defaults() {
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.Number <= 0 {
		o.Number = 1
	}
	if o.Clients <= 0 {
		o.Clients = 2
	}
	if o.SetupTimeout <= 0 {
		o.SetupTimeout = time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Run runs every network of o in turn and returns the report. A network
// that fails to come up or to set its pairs up ends the campaign with an
// error (and the report of the networks before it).
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	r := &Report{Tool: "qkms sim", Started: time.Now().UTC().Truncate(time.Second),
		Machine: Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version()},
		Options: ReportOptions{Seed: o.Seed, Pairs: o.Pairs, WarmupS: o.Warmup.Seconds(), DurationS: o.Duration.Seconds(),
			Scale: o.Scale, Number: o.Number, Clients: o.Clients, LinkRateBps: LinkRate(UniformKM) * o.Scale}}
	for i, nw := range o.Networks {
		fmt.Fprintf(o.Progress, "sim [%d/%d] %s: %d nodes, %d links\n", i+1, len(o.Networks), nw.Topology.Name, len(nw.Topology.Nodes), len(nw.Topology.Links))
		start := time.Now()
		res, err := runNetwork(ctx, o, nw)
		if err != nil {
			return r, fmt.Errorf("%s: %w", nw.Topology.Name, err)
		}
		res.WallSeconds = round3(time.Since(start).Seconds())
		fmt.Fprintf(o.Progress, "  %s done in %.0fs (network stopped)\n", nw.Topology.Name, res.WallSeconds)
		r.Networks = append(r.Networks, *res)
	}
	return r, nil
}

// scaled is t with every rate multiplied by f.
func scaled(t *topology.Topology, f float64) (*topology.Topology, error) {
	c := *t
	c.Links = slices.Clone(t.Links)
	for i := range c.Links {
		c.Links[i].SKRbps *= f
	}
	return topology.New(c)
}

// pairSeed is the pair generator's second word for a network.
func pairSeed(name string) uint64 { return familySeed("pairs:"+name, 0) }

func runNetwork(ctx context.Context, o Options, nw Network) (*NetResult, error) {
	st, err := scaled(nw.Topology, o.Scale)
	if err != nil {
		return nil, err
	}
	pairs := choosePairs(st, o.Pairs, rand.New(rand.NewPCG(uint64(o.Seed), pairSeed(st.Name))))
	if len(pairs) == 0 {
		return nil, errors.New("no pair of SAEs at different nodes")
	}
	if err := bound(st, pairs); err != nil {
		return nil, err
	}
	res := &NetResult{Name: st.Name, Family: nw.Family, N: nw.N, Nodes: len(st.Nodes), Links: len(st.Links)}
	if res.N == 0 {
		res.N = res.Nodes
	}
	dir, err := os.MkdirTemp(o.Dir, "qkms-sim-")
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "qkms.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer func() {
		logf.Close()
		if !o.Keep {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(o.Progress, "  kept %s\n", dir)
		}
	}()
	log := slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := time.Now()
	n, err := netsim.Up(ctx, netsim.Options{Topology: nw.Topology, Dir: dir, Logger: log, Scale: o.Scale})
	if err != nil {
		return nil, err
	}
	defer n.Close()
	res.UpSeconds = round3(time.Since(start).Seconds())
	cl, op, err := clients(n, pairs, o.Number)
	if err != nil {
		return nil, err
	}
	var in bench.Checked // every key of the run, fetched at both ends
	// Set every pair up (its key stream, through the controller).
	errs := make([]error, len(pairs))
	forPairs(len(pairs), func(i int) {
		if err := cl[i].first(ctx, &in, o.SetupTimeout); err != nil {
			errs[i] = fmt.Errorf("pair %s→%s: no keys within %v: %w", pairs[i].Master, pairs[i].Slave, o.SetupTimeout, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	res.Pairs = make([]PairResult, len(pairs))
	var hops float64
	for i, p := range pairs {
		res.Pairs[i] = PairResult{Pair: p, Route: route(n, st, p)}
		res.Pairs[i].RouteHops = len(res.Pairs[i].Route) - 1
		hops += float64(res.Pairs[i].RouteHops)
	}
	res.MeanRouteHops = round3(hops / float64(len(pairs)))
	fmt.Fprintf(o.Progress, "  up in %.1fs, %d pairs set up (mean route %.2f hops, %.1fs)\n", res.UpSeconds, len(pairs), res.MeanRouteHops, time.Since(start).Seconds()-res.UpSeconds)

	// Paced: half of each pair's share of its widest path.
	pace := func(d time.Duration, pls []pairLoad, ph *phase) {
		forPairs(len(pairs), func(i int) {
			cl[i].paced(ctx, d, pairs[i].ShareBps/2/KeyBits, o.Number, &in, &pls[i], ph)
		})
	}
	pace(o.Warmup, make([]pairLoad, len(pairs)), &phase{})
	// Rates are over the window: the offers all fall in it, and the
	// exchanges still out at its end are waited for and counted.
	paced, pph := make([]pairLoad, len(pairs)), &phase{}
	pace(o.Duration, paced, pph)
	res.Paced = summarise(pairs, paced, pph, o.Duration, true)
	for i := range res.Pairs {
		res.Pairs[i].Paced = pairResult(pairs[i], &paced[i], o.Duration, true)
	}
	fmt.Fprintf(o.Progress, "  paced: offered %.0f keys/s, served/offered %.3f, enc_keys p50 %.2f ms p99 %.2f ms\n",
		res.Paced.OfferedKps, res.Paced.ServedOverOffered, res.Paced.Enc.P50ms, res.Paced.Enc.P99ms)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Closed loop: clients per pair back to back.
	drive := func(d time.Duration, pls []pairLoad, ph *phase) {
		forPairs(len(pairs), func(i int) { cl[i].closed(ctx, d, o.Clients, &in, &pls[i], ph) })
	}
	drive(o.Warmup, make([]pairLoad, len(pairs)), &phase{})
	sat, sph := make([]pairLoad, len(pairs)), &phase{}
	from := time.Now()
	to := from.Add(o.Duration)
	drive(o.Duration, sat, sph)
	res.Saturated = summarise(pairs, sat, sph, o.Duration, false)
	for i := range res.Pairs {
		res.Pairs[i].Saturated = pairResult(pairs[i], &sat[i], o.Duration, false)
	}
	if err := utilisation(ctx, n, op, st, res, from, to); err != nil {
		res.Notes = append(res.Notes, "fibre utilisation: "+err.Error())
	}
	res.RoundTrips, res.KeysCompared = in.RoundTrips.Load(), in.Keys.Load()
	res.Mismatches, res.Missing = in.Mismatches.Load(), in.Missing.Load()
	fmt.Fprintf(o.Progress, "  saturated: %.0f keys/s = %.3f of Σshare, fibre utilisation %.3f (routes %.3f), Jain %.3f; %d round trips, %d mismatched, %d missing\n",
		res.Saturated.ServedKps, res.Saturated.ServedOverBound, res.FibreUtil, res.FibreUtilRoutes, res.Saturated.JainKeys,
		res.RoundTrips, res.Mismatches, res.Missing)
	if err := n.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// forPairs runs f for 0…n−1 concurrently and waits.
func forPairs(n int, f func(int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// clients builds the pairs' endpoints and the operator's client.
func clients(n *netsim.Network, ps []Pair, number int) ([]client, *http.Client, error) {
	mk := func(cert, key string) (*http.Client, error) {
		cfg, err := pki.ClientTLSConfig(n.Info.CA, cert, key, "")
		if err != nil {
			return nil, err
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 64}, Timeout: time.Minute}, nil
	}
	saes := map[qkd.SAEID]*http.Client{}
	for _, s := range n.Info.SAEs {
		c, err := mk(s.Cert, s.Key)
		if err != nil {
			return nil, nil, err
		}
		saes[s.ID] = c
	}
	op, err := mk(n.Info.Operator.Cert, n.Info.Operator.Key)
	if err != nil {
		return nil, nil, err
	}
	urls := map[qkd.NodeID]string{}
	for _, nd := range n.Info.Nodes {
		urls[nd.ID] = nd.ETSI014URL
	}
	cs := make([]client, len(ps))
	for i, p := range ps {
		cs[i] = client{enc: saes[p.Master], dec: saes[p.Slave],
			encURL: fmt.Sprintf("%s/api/v1/keys/%s/enc_keys?number=%d&size=%d", urls[p.From], p.Slave, number, KeyBits),
			decURL: fmt.Sprintf("%s/api/v1/keys/%s/dec_keys", urls[p.To], p.Master)}
	}
	return cs, op, nil
}

// route is the nodes the pair's keys take now: the controller's route of
// its key stream, or the direct hop of a neighbour pair served without one.
func route(n *netsim.Network, t *topology.Topology, p Pair) []qkd.NodeID {
	if r, ok := n.Route(p.Master, p.Slave); ok && len(r) >= 2 {
		return r
	}
	if len(t.LinksBetween(p.From, p.To)) > 0 {
		return []qkd.NodeID{p.From, p.To}
	}
	return nil
}

// summarise sums a phase over the pairs.
func summarise(ps []Pair, pls []pairLoad, ph *phase, d time.Duration, paced bool) PhaseResult {
	secs := d.Seconds()
	r := PhaseResult{Seconds: round3(secs)}
	var served, share, offered float64
	keys, norm := make([]float64, len(ps)), make([]float64, len(ps))
	for i := range ps {
		s := float64(pls[i].served.Load())
		served += s
		offered += float64(pls[i].offered.Load())
		share += ps[i].ShareBps / KeyBits * secs
		keys[i] = s
		norm[i] = ratio(s/secs*KeyBits, ps[i].ShareBps)
		r.Requests += pls[i].requests.Load()
		r.Failed += pls[i].failed.Load()
	}
	r.ServedKeys = int64(served)
	r.ServedKps = round3(served / secs)
	r.ServedOverBound = round3(ratio(served, share))
	if paced {
		r.OfferedKeys = int64(offered)
		r.OfferedKps = round3(offered / secs)
		r.ServedOverOffered = round3(ratio(served, offered))
	}
	r.JainKeys, r.JainNorm = round3(Jain(keys)), round3(Jain(norm))
	if served > 0 {
		r.WorstOverUniform = round3(slices.Min(keys) / (served / float64(len(ps))))
	}
	ph.mu.Lock()
	r.Enc, r.RoundTrip, r.FirstError = latencyOf(ph.enc), latencyOf(ph.rt), ph.firstErr
	ph.mu.Unlock()
	return r
}

func pairResult(p Pair, pl *pairLoad, d time.Duration, paced bool) PairPhase {
	secs := d.Seconds()
	s := float64(pl.served.Load())
	r := PairPhase{Keys: pl.served.Load(), Failed: pl.failed.Load(), ServedKps: round3(s / secs)}
	r.OverWidest = round3(ratio(s/secs*KeyBits, p.WidestBps))
	r.OverShare = round3(ratio(s/secs*KeyBits, p.ShareBps))
	if paced {
		r.OfferedKps = round3(float64(pl.offered.Load()) / secs)
	}
	return r
}

// utilisation reads every link's QUICKS link/performance at both ends over
// (from, to] and sets the fibre utilisation: key material taken (EXKR,
// the mean of both ends: each sees the link's shared pool) over the
// links' nominal rates, over all links and over the links of the pairs'
// routes.
func utilisation(ctx context.Context, n *netsim.Network, op *http.Client, t *topology.Topology, res *NetResult, from, to time.Time) error {
	quicksURL := map[qkd.NodeID]string{}
	for _, nd := range n.Info.Nodes {
		quicksURL[nd.ID] = nd.KMSSDNURL
	}
	onRoute := map[qkd.LinkID]bool{}
	for _, p := range res.Pairs {
		for j := 1; j < len(p.Route); j++ {
			for _, l := range t.LinksBetween(p.Route[j-1], p.Route[j]) {
				onRoute[l.ID] = true
			}
		}
	}
	taken := make([]float64, len(t.Links))
	errs := make([]error, len(t.Links))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, l := range t.Links {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var sum float64
			for _, end := range []qkd.NodeID{l.A, l.B} {
				r, err := windowAt(ctx, op, quicksURL[end], l.ID, from, to)
				if err != nil {
					errs[i] = fmt.Errorf("%s at %s: %w", l.ID, end, err)
					return
				}
				sum += r.EXKR
			}
			taken[i] = sum / 2 * 8
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var all, allCap, rt, rtCap float64
	for i, l := range t.Links {
		all += taken[i]
		allCap += l.SKRbps
		if onRoute[l.ID] {
			rt += taken[i]
			rtCap += l.SKRbps
		}
	}
	res.FibreUtil, res.FibreUtilRoutes = round3(ratio(all, allCap)), round3(ratio(rt, rtCap))
	res.TakenBps = math.Round(all)
	return nil
}

// windowAt waits (10 s at most) until the node's performance history of
// the link covers to, and averages it over (from, to].
func windowAt(ctx context.Context, c *http.Client, quicksURL string, id qkd.LinkID, from, to time.Time) (bench.Rates, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := bench.Performance(ctx, c, quicksURL, netsim.LinkUUID(id))
		if err != nil {
			return bench.Rates{}, err
		}
		if !p.Current.Timestamp.Before(to) || time.Now().After(deadline) {
			return bench.Window(p, from, to), nil
		}
		select {
		case <-ctx.Done():
			return bench.Rates{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
