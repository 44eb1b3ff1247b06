package hybrid

import (
	"fmt"
	"time"

	"github.com/qkms/qkms/internal/qkd"
)

// PathStep is one node's signed statement that it forwarded a relay batch
// from Prev to Next (the destination checks the path taken).
type PathStep struct {
	Hop  uint       `cbor:"1,keyasint"` // 0 = the source
	Node qkd.NodeID `cbor:"2,keyasint"` // the signer
	Prev qkd.NodeID `cbor:"3,keyasint"` // "" at hop 0
	Next qkd.NodeID `cbor:"4,keyasint"`
	// Cert is Node's encoded certificate, or empty when the destination
	// has it already (VerifyPathWith's certOf: it learnt the route's
	// certificates with the KEM offer request), which saves 5.3 KB per
	// hop with ML-DSA-65.
	Cert []byte `cbor:"5,keyasint,omitempty"`
	Sig  []byte `cbor:"6,keyasint,omitempty"`
}

// pathMessage is what a step signs (context "qkms-path-v1"):
// encode(stream, step, transcriptHash, hop, node, prev, next).
func pathMessage(stream, step string, th []byte, s *PathStep) []byte {
	return encodeFields([]byte(stream), []byte(step), th, u64(uint64(s.Hop)),
		[]byte(s.Node), []byte(s.Prev), []byte(s.Next))
}

// SignStep signs s (Hop, Node, Prev, Next and Cert set by the caller) for
// the batch step of stream whose header has transcript hash th, and
// returns it with Sig set.
func SignStep(key *PrivateKey, stream, step string, th []byte, s PathStep) (PathStep, error) {
	s.Sig = nil
	if err := s.check(false); err != nil {
		return PathStep{}, err
	}
	if len(th) != hashSize {
		return PathStep{}, fmt.Errorf("%w: transcript hash of %d bytes", ErrMalformed, len(th))
	}
	sig, err := key.Sign(pathMessage(stream, step, th, &s), contextPath)
	if err != nil {
		return PathStep{}, err
	}
	s.Sig = sig
	return s, nil
}

// VerifyPath checks, at the destination, that steps are exactly the
// configured route [S, h1, ..., D] (one step per node but D, in order, each
// naming its neighbours on the route; ErrPathMismatch otherwise) and that
// every step is signed, for this stream, step and transcript hash, by a
// valid certificate (by v at now) of the node it names.
func VerifyPath(v *Verifier, stream, step string, th []byte, steps []PathStep, route []qkd.NodeID, now time.Time) error {
	return VerifyPathWith(v, stream, step, th, steps, route, now, nil)
}

// VerifyPathWith is VerifyPath where a step without its certificate is
// checked with certOf(node) (nil, or nil answers: ErrNoCertificate). The
// certificate is verified like one that came with the step.
func VerifyPathWith(v *Verifier, stream, step string, th []byte, steps []PathStep, route []qkd.NodeID, now time.Time, certOf func(qkd.NodeID) []byte) error {
	if len(route) < 2 || len(steps) != len(route)-1 {
		return fmt.Errorf("%w: %d steps for a route of %d nodes", ErrPathMismatch, len(steps), len(route))
	}
	if len(th) != hashSize {
		return fmt.Errorf("%w: transcript hash of %d bytes", ErrMalformed, len(th))
	}
	for i := range steps {
		s := &steps[i]
		if err := s.check(true); err != nil {
			return err
		}
		var prev qkd.NodeID
		if i > 0 {
			prev = route[i-1]
		}
		if s.Hop != uint(i) || s.Node != route[i] || s.Prev != prev || s.Next != route[i+1] {
			return fmt.Errorf("%w: hop %d is %q (%q → %q), route wants %q (%q → %q)", ErrPathMismatch, i,
				truncate(string(s.Node)), truncate(string(s.Prev)), truncate(string(s.Next)), route[i], prev, route[i+1])
		}
	}
	for i := range steps {
		s := &steps[i]
		cert := s.Cert
		if len(cert) == 0 && certOf != nil {
			cert = certOf(s.Node)
		}
		if len(cert) == 0 {
			return fmt.Errorf("hop %d: %w: %q", i, ErrNoCertificate, truncate(string(s.Node)))
		}
		if _, err := v.verifySigned(cert, string(s.Node), now, pathMessage(stream, step, th, s), contextPath, s.Sig); err != nil {
			return fmt.Errorf("hop %d: %w", i, err)
		}
	}
	return nil
}

func (s *PathStep) check(signed bool) error {
	if err := checkName("path step node", string(s.Node)); err != nil {
		return err
	}
	if err := checkName("path step next", string(s.Next)); err != nil {
		return err
	}
	if s.Hop >= MaxPathSteps || (s.Hop == 0) != (s.Prev == "") || len(s.Prev) > maxName {
		return fmt.Errorf("%w: path step hop %d with previous node %q", ErrMalformed, s.Hop, truncate(string(s.Prev)))
	}
	if err := checkLen("path step certificate", s.Cert, 0, MaxCertBytes); err != nil {
		return err
	}
	if !signed {
		return nil
	}
	return checkLen("path step signature", s.Sig, 1, MaxSigBytes)
}

// Marshal encodes the step (deterministic CBOR, doc.go).
func (s *PathStep) Marshal() ([]byte, error) { return marshal(s) }

// UnmarshalPathStep decodes a signed step strictly. It does not verify it.
func UnmarshalPathStep(b []byte) (*PathStep, error) {
	s := new(PathStep)
	if err := unmarshalStrict(b, s, maxStepBytes); err != nil {
		return nil, err
	}
	if err := s.check(true); err != nil {
		return nil, err
	}
	return s, nil
}

// MarshalPath encodes a forwarding path: a CBOR array of steps.
func MarshalPath(steps []PathStep) ([]byte, error) {
	if steps == nil {
		steps = []PathStep{}
	}
	return marshal(steps)
}

// UnmarshalPath decodes a forwarding path of at most MaxPathSteps signed
// steps strictly. It does not verify it (VerifyPath does).
func UnmarshalPath(b []byte) ([]PathStep, error) {
	var steps []PathStep
	if err := unmarshalStrict(b, &steps, maxPathBytes); err != nil {
		return nil, err
	}
	if steps == nil || len(steps) > MaxPathSteps {
		return nil, fmt.Errorf("%w: path of %d steps", ErrMalformed, len(steps))
	}
	for i := range steps {
		if err := steps[i].check(true); err != nil {
			return nil, err
		}
	}
	return steps, nil
}
