package topology

import (
	"errors"
	"fmt"
	"math"

	"github.com/qkms/qkms/internal/qkd"
)

// Validation errors; Validate wraps them with the position of the offending
// entry, so test with errors.Is.
var (
	ErrNoNodes       = errors.New("no nodes")
	ErrMissingID     = errors.New("missing ID")
	ErrBadID         = errors.New("invalid ID")
	ErrDuplicateNode = errors.New("duplicate node ID")
	ErrUnknownNode   = errors.New("unknown node")
	ErrSelfLoop      = errors.New("link joins a node to itself")
	ErrBadRate       = errors.New("skr_bps must be a finite number > 0")
	ErrBadLength     = errors.New("length_km must be a finite number >= 0")
	ErrDuplicateLink = errors.New("duplicate link ID")
	ErrDuplicateSAE  = errors.New("duplicate SAE ID")
)

const (
	idRule     = "want 1-64 characters from [A-Za-z0-9_.-]"
	linkIDRule = "want 1-160 characters from [A-Za-z0-9_.~#-]"
)

// Validate reports every problem of t, joined with errors.Join, or nil.
// Links must already carry IDs (New assigns missing ones).
func (t *Topology) Validate() error {
	var errs []error
	nodes := make(map[qkd.NodeID]int, len(t.Nodes))
	errs = t.validateNodes(nodes, errs)
	errs = t.validateLinks(nodes, errs)
	errs = t.validateSAEs(nodes, errs)
	return errors.Join(errs...)
}

func (t *Topology) validateNodes(seen map[qkd.NodeID]int, errs []error) []error {
	if len(t.Nodes) == 0 {
		errs = append(errs, ErrNoNodes)
	}
	for i, n := range t.Nodes {
		if err := checkID(string(n.ID)); err != nil {
			errs = append(errs, fmt.Errorf("nodes[%d]: node %w", i, err))
			continue
		}
		if j, dup := seen[n.ID]; dup {
			errs = append(errs, fmt.Errorf("nodes[%d]: %w %q (also nodes[%d])", i, ErrDuplicateNode, n.ID, j))
			continue
		}
		seen[n.ID] = i
	}
	return errs
}

func (t *Topology) validateLinks(nodes map[qkd.NodeID]int, errs []error) []error {
	seen := make(map[qkd.LinkID]int, len(t.Links))
	for i, l := range t.Links {
		at := fmt.Sprintf("links[%d]", i)
		switch {
		case l.ID == "":
			errs = append(errs, fmt.Errorf("%s: link %w", at, ErrMissingID))
		case !ValidLinkID(l.ID):
			errs = append(errs, fmt.Errorf("%s: link %w %q: %s", at, ErrBadID, l.ID, linkIDRule))
		default:
			at = fmt.Sprintf("links[%d] (%s)", i, l.ID)
			if j, dup := seen[l.ID]; dup {
				errs = append(errs, fmt.Errorf("%s: %w (also links[%d])", at, ErrDuplicateLink, j))
			} else {
				seen[l.ID] = i
			}
		}
		errs = append(errs, checkEnd(at, "a", l.A, nodes)...)
		errs = append(errs, checkEnd(at, "b", l.B, nodes)...)
		if l.A == l.B && l.A != "" {
			errs = append(errs, fmt.Errorf("%s: %w %q", at, ErrSelfLoop, l.A))
		}
		if !(l.SKRbps > 0) || math.IsInf(l.SKRbps, 0) {
			errs = append(errs, fmt.Errorf("%s: %w, got %v", at, ErrBadRate, l.SKRbps))
		}
		if !(l.LengthKM >= 0) || math.IsInf(l.LengthKM, 0) {
			errs = append(errs, fmt.Errorf("%s: %w, got %v", at, ErrBadLength, l.LengthKM))
		}
	}
	return errs
}

func checkEnd(at, end string, n qkd.NodeID, nodes map[qkd.NodeID]int) []error {
	if n == "" {
		return []error{fmt.Errorf("%s: %s: node %w", at, end, ErrMissingID)}
	}
	if _, ok := nodes[n]; !ok {
		return []error{fmt.Errorf("%s: %s: %w %q", at, end, ErrUnknownNode, n)}
	}
	return nil
}

func (t *Topology) validateSAEs(nodes map[qkd.NodeID]int, errs []error) []error {
	seen := make(map[qkd.SAEID]int, len(t.SAEs))
	for i, s := range t.SAEs {
		at := fmt.Sprintf("saes[%d]", i)
		if err := checkID(string(s.ID)); err != nil {
			errs = append(errs, fmt.Errorf("%s: SAE %w", at, err))
		} else if j, dup := seen[s.ID]; dup {
			errs = append(errs, fmt.Errorf("%s: %w %q (also saes[%d])", at, ErrDuplicateSAE, s.ID, j))
		} else {
			seen[s.ID] = i
		}
		errs = append(errs, checkEnd(at, "node", s.Node, nodes)...)
	}
	return errs
}

// checkID returns ErrMissingID or ErrBadID (with the rule) for a bad node or
// SAE ID.
func checkID(s string) error {
	if s == "" {
		return ErrMissingID
	}
	if !ValidID(s) {
		return fmt.Errorf("%w %q: %s", ErrBadID, s, idRule)
	}
	return nil
}
