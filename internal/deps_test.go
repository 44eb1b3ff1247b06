// Package internal_test keeps the import direction of STYLE.md true:
// transports → core → vocabulary and crypto, never back; node alone wires
// everything. It runs `go list` on the module and fails on a forbidden edge.
package internal_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/qkms/qkms/"

// rule: packages matching from (prefix) must not depend, even indirectly, on
// any package matching one of deny (prefixes; module-relative or external).
// A from ending in "$" names that package only, not the ones under it.
type rule struct {
	from string
	deny []string
	why  string
}

var transports = []string{
	mod + "internal/etsi014", mod + "internal/peer", mod + "internal/device", mod + "internal/coapx",
	mod + "internal/qkdsim", mod + "internal/netsim", mod + "internal/node", mod + "internal/sae", mod + "cmd",
	mod + "internal/controller", mod + "internal/agent", mod + "internal/etsi004/tcp004", mod + "internal/etsi004/coap004",
	"net/http", "github.com/plgd-dev/go-coap", "database/sql", "modernc.org/sqlite",
}

var rules = []rule{
	{mod + "internal/qkd", []string{mod, "github.com/", "golang.org/"}, "vocabulary: stdlib only"},
	{mod + "internal/secret", []string{mod, "github.com/", "golang.org/"}, "secret buffers: stdlib only"},
	{mod + "internal/httpsx", []string{mod, "github.com/", "golang.org/"}, "shared HTTPS life cycle: stdlib only"},
	{mod + "internal/keystore/sealing", append([]string{mod}, transports...), "sealing is crypto: qkd and secret at most from the module, no store, no transport"},
	{mod + "internal/itsmac", append([]string{mod + "internal/keystore", mod + "internal/link", mod + "internal/kms"}, transports...), "crypto is pure"},
	{mod + "internal/hybrid", append([]string{mod + "internal/keystore", mod + "internal/link", mod + "internal/kms", mod + "internal/relay", mod + "internal/kmsproto", mod + "internal/pki", "github.com/plgd-dev/", "modernc.org/"}, transports...), "crypto is pure"},
	{mod + "internal/kmsproto", transports, "wire vocabulary has no I/O"},
	{mod + "internal/link", transports, "core imports no transport"},
	{mod + "internal/kms", transports, "core imports no transport"},
	{mod + "internal/config", transports, "config is data"},
	{mod + "internal/topology", transports, "topology is data"},
	{mod + "internal/etsi014", []string{mod + "internal/node", mod + "internal/netsim", mod + "internal/link", mod + "internal/peer", mod + "internal/device", mod + "cmd"}, "a transport calls the core through its own interface"},
	{mod + "internal/peer", []string{mod + "internal/node", mod + "internal/netsim", mod + "internal/link", mod + "internal/kms", mod + "internal/keystore", mod + "cmd"}, "a transport knows no core"},
	{mod + "internal/device", []string{mod + "internal/node", mod + "internal/netsim", mod + "internal/link", mod + "internal/kms", mod + "internal/keystore", mod + "cmd"}, "a transport knows no core"},
	{mod + "internal/sdn", transports, "routing logic imports no transport"},
	{mod + "internal/etsi004$", append([]string{mod + "internal/kms", mod + "internal/link", mod + "internal/keystore", mod + "internal/relay"}, transports...), "004 vocabulary: no I/O, no core (its bindings live under it)"},
	{mod + "internal/relay", transports, "core imports no transport"},
	{mod + "internal/streams", transports, "core imports no transport"},
	{mod + "internal/controller", []string{mod + "internal/node", mod + "internal/netsim", mod + "internal/kms", mod + "internal/link", mod + "internal/keystore", mod + "internal/relay", mod + "internal/agent", mod + "cmd"}, "the controller knows KMSes only through their agents"},
	{mod + "internal/agent", []string{mod + "internal/node", mod + "internal/netsim", mod + "internal/kms", mod + "internal/link", mod + "internal/keystore", mod + "internal/relay", mod + "cmd"}, "the agent talks to its KMS only over QUICKS"},
	{mod + "internal/qkdsim", []string{mod + "internal/node", mod + "internal/kms", mod + "internal/link", mod + "internal/keystore", mod + "cmd"}, "the simulator is a device, not a KMS"},
}

// sqlOnly: the only packages that may use database/sql.
var sqlOnly = mod + "internal/keystore/sqlite"

// nodeUsers: the only packages that may import node.
var nodeUsers = []string{mod + "internal/node", mod + "internal/netsim", mod + "cmd", mod + "test/"}

func goList(t *testing.T, args ...string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-e"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	return m
}

func TestImportDirection(t *testing.T) {
	deps := goList(t, "-f", `{{.ImportPath}} {{join .Deps " "}}`, "./...")
	imports := goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	if len(deps) < 10 {
		t.Fatalf("go list found only %d packages", len(deps))
	}
	for pkg, ds := range deps {
		for _, r := range rules {
			from, exact := strings.CutSuffix(r.from, "$")
			if pkg != from && (exact || !strings.HasPrefix(pkg, from+"/")) {
				continue
			}
			for _, d := range ds {
				for _, deny := range r.deny {
					if matches(d, deny) && !matches(d, from) && !allowedVocab(d) {
						t.Errorf("%s depends on %s: %s", pkg, d, r.why)
					}
				}
			}
		}
		for _, d := range imports[pkg] {
			if d == "database/sql" && !strings.HasPrefix(pkg, sqlOnly) {
				t.Errorf("%s imports database/sql: only %s may", pkg, sqlOnly)
			}
			if d == mod+"internal/node" && !hasPrefix(pkg, nodeUsers) {
				t.Errorf("%s imports node: only %v may", pkg, nodeUsers)
			}
			if strings.HasPrefix(d, mod+"cmd") {
				t.Errorf("%s imports %s: nothing imports a command", pkg, d)
			}
		}
	}
}

// matches reports whether package d is p or below p (p ending in "/" is a
// plain prefix).
func matches(d, p string) bool {
	if strings.HasSuffix(p, "/") {
		return strings.HasPrefix(d, p)
	}
	return d == p || strings.HasPrefix(d, p+"/")
}

// allowedVocab: vocabulary and crypto every layer may use.
func allowedVocab(d string) bool {
	for _, v := range []string{"internal/qkd", "internal/secret"} {
		if d == mod+v {
			return true
		}
	}
	return false
}

func hasPrefix(s string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
