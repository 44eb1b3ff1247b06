package sim

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

// The link model of the dkms campaign (docs/performance.md, "Scale
// campaign"): every link mints R₀·10^(−αd/10) keys of 256 bits a second,
// R₀ = 2000 keys/s, α = 0.2 dB/km, d = 5 km in every family but the random
// geometric graph, whose edges keep their Euclidean length.
const (
	R0KeysPerSecond = 2000.0
	AlphaDBPerKM    = 0.2
	UniformKM       = 5.0
	KeyBits         = 256
	// rggRadiusKM is the random geometric graph's connection radius.
	rggRadiusKM = 30.0
)

// LinkRate is the model's rate of a link of length km, bit/s.
func LinkRate(km float64) float64 {
	return R0KeysPerSecond * KeyBits * math.Pow(10, -AlphaDBPerKM*km/10)
}

// Families are the generated topology families, in campaign order.
var Families = []string{"star", "ring", "bridge", "mesh", "rgg", "random"}

// MinNodes is the smallest N each family is generated for.
var MinNodes = map[string]int{"star": 2, "ring": 3, "bridge": 4, "mesh": 2, "rgg": 2, "random": 2}

// edge is a link under construction between node indexes (0-based).
type edge struct {
	a, b int
	km   float64
}

// Generate builds the family's topology of n nodes: node IDs n01…nN (zero
// padded to N's digits), one SAE per node (SAE_<node>), every link at the
// model's rate for its length. The random families (rgg, random) depend
// on seed only, through a generator seeded with (seed, family, n), so the
// same arguments always give the same topology. The result is validated
// by topology.New.
//
//   - star: node 1 is the hub, the N−1 others its leaves;
//   - ring: the cycle 1…N;
//   - bridge: two cycles of ⌊N/2⌋ and ⌈N/2⌉ nodes joined by the single
//     link (1, ⌊N/2⌋+1);
//   - mesh: the r×c four-neighbour grid, r the largest divisor of N not
//     above √N (10 = 2×5, 100 = 10×10);
//   - rgg: N uniform points on a square of side 30·√(πN/4) km, a link
//     wherever two are ≤ 30 km apart, components joined by their closest
//     cross pair until connected, each link at its Euclidean length;
//   - random: a random spanning tree plus random extra links up to
//     max(N−1, ⌊3N/2⌋) links (Erdős–Rényi edges kept connected).
func Generate(family string, n int, seed int64) (*topology.Topology, error) {
	lo, ok := MinNodes[family]
	if !ok {
		return nil, fmt.Errorf("sim: unknown family %q (want one of %v)", family, Families)
	}
	if n < lo {
		return nil, fmt.Errorf("sim: %s needs at least %d nodes, got %d", family, lo, n)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), familySeed(family, n)))
	var es []edge
	switch family {
	case "star":
		for i := 1; i < n; i++ {
			es = append(es, edge{0, i, UniformKM})
		}
	case "ring":
		es = cycle(0, n)
	case "bridge":
		h := n / 2
		es = append(cycle(0, h), cycle(h, n-h)...)
		es = append(es, edge{0, h, UniformKM})
	case "mesh":
		r, c := gridShape(n)
		for i := range r {
			for j := range c {
				v := i*c + j
				if j+1 < c {
					es = append(es, edge{v, v + 1, UniformKM})
				}
				if i+1 < r {
					es = append(es, edge{v, v + c, UniformKM})
				}
			}
		}
	case "rgg":
		es = rgg(rng, n)
	case "random":
		es = randomConnected(rng, n)
	}
	return build(family, n, seed, es)
}

// familySeed mixes the family and size into the generator's second word.
func familySeed(family string, n int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(family))
	return h.Sum64() ^ uint64(n)*0x9e3779b97f4a7c15
}

// cycle is the cycle over the k nodes from first (a single link for k = 2,
// nothing for k < 2).
func cycle(first, k int) []edge {
	switch {
	case k < 2:
		return nil
	case k == 2:
		return []edge{{first, first + 1, UniformKM}}
	}
	es := make([]edge, 0, k)
	for i := range k {
		es = append(es, edge{first + i, first + (i+1)%k, UniformKM})
	}
	return es
}

// gridShape returns r ≤ c with r·c = n and r as large as possible.
func gridShape(n int) (r, c int) {
	r = int(math.Sqrt(float64(n)))
	for r > 1 && n%r != 0 {
		r--
	}
	return r, n / r
}

func rgg(rng *rand.Rand, n int) []edge {
	side := rggRadiusKM * math.Sqrt(math.Pi*float64(n)/4)
	xs, ys := make([]float64, n), make([]float64, n)
	for i := range n {
		xs[i], ys[i] = rng.Float64()*side, rng.Float64()*side
	}
	dist := func(i, j int) float64 { return math.Hypot(xs[i]-xs[j], ys[i]-ys[j]) }
	uf := newUnionFind(n)
	var es []edge
	for i := range n {
		for j := i + 1; j < n; j++ {
			if d := dist(i, j); d <= rggRadiusKM {
				es = append(es, edge{i, j, d})
				uf.union(i, j)
			}
		}
	}
	// Join components by their closest cross pair, the globally closest
	// first, until one is left.
	for uf.sets > 1 {
		best := edge{-1, -1, math.Inf(1)}
		for i := range n {
			for j := i + 1; j < n; j++ {
				if uf.find(i) != uf.find(j) {
					if d := dist(i, j); d < best.km {
						best = edge{i, j, d}
					}
				}
			}
		}
		es = append(es, best)
		uf.union(best.a, best.b)
	}
	return es
}

func randomConnected(rng *rand.Rand, n int) []edge {
	perm := rng.Perm(n)
	have := map[[2]int]bool{}
	var es []edge
	add := func(a, b int) bool {
		k := [2]int{min(a, b), max(a, b)}
		if a == b || have[k] {
			return false
		}
		have[k] = true
		es = append(es, edge{k[0], k[1], UniformKM})
		return true
	}
	for i := 1; i < n; i++ {
		add(perm[i], perm[rng.IntN(i)])
	}
	want := min(max(n-1, 3*n/2), n*(n-1)/2)
	for len(es) < want {
		add(rng.IntN(n), rng.IntN(n))
	}
	return es
}

func build(family string, n int, seed int64, es []edge) (*topology.Topology, error) {
	w := len(strconv.Itoa(n))
	id := func(i int) qkd.NodeID { return qkd.NodeID(fmt.Sprintf("n%0*d", w, i+1)) }
	t := topology.Topology{Name: fmt.Sprintf("%s-%d", family, n),
		Description: fmt.Sprintf("qkms sim: %s, N = %d, seed %d", family, n, seed)}
	for i := range n {
		t.Nodes = append(t.Nodes, topology.Node{ID: id(i)})
		t.SAEs = append(t.SAEs, topology.SAE{ID: qkd.SAEID("SAE_" + string(id(i))), Node: id(i)})
	}
	slices.SortFunc(es, func(x, y edge) int {
		x.a, x.b = min(x.a, x.b), max(x.a, x.b)
		y.a, y.b = min(y.a, y.b), max(y.a, y.b)
		if x.a != y.a {
			return x.a - y.a
		}
		return x.b - y.b
	})
	for _, e := range es {
		a, b := min(e.a, e.b), max(e.a, e.b)
		km := math.Round(e.km*1000) / 1000
		t.Links = append(t.Links, topology.Link{A: id(a), B: id(b), SKRbps: math.Round(LinkRate(km)*1000) / 1000, LengthKM: km, Kind: "fibre"})
	}
	return topology.New(t)
}

type unionFind struct {
	parent []int
	sets   int
}

func newUnionFind(n int) *unionFind {
	u := &unionFind{parent: make([]int, n), sets: n}
	for i := range u.parent {
		u.parent[i] = i
	}
	return u
}

func (u *unionFind) find(i int) int {
	for u.parent[i] != i {
		u.parent[i] = u.parent[u.parent[i]]
		i = u.parent[i]
	}
	return i
}

func (u *unionFind) union(i, j int) {
	if a, b := u.find(i), u.find(j); a != b {
		u.parent[a] = b
		u.sets--
	}
}

// Connected reports whether every node of t is reachable from the first.
func Connected(t *topology.Topology) bool {
	if len(t.Nodes) == 0 {
		return false
	}
	seen := map[qkd.NodeID]bool{t.Nodes[0].ID: true}
	q := []qkd.NodeID{t.Nodes[0].ID}
	for len(q) > 0 {
		v := q[0]
		q = q[1:]
		for _, u := range t.Neighbours(v) {
			if !seen[u] {
				seen[u] = true
				q = append(q, u)
			}
		}
	}
	return len(seen) == len(t.Nodes)
}
