package hybrid

import (
	"cmp"
	"encoding/pem"
	"fmt"
	"slices"
	"time"
)

// RevocationList names the certificates a CA has revoked before their end.
// It is signed like a certificate, with context "qkms-crl-v1"; a list with a
// higher Number replaces one with a lower Number.
type RevocationList struct {
	Issuer     string
	Number     uint64
	ThisUpdate time.Time
	Revoked    []RevokedEntry // sorted by Subject, then Serial
	Signature  []byte
}

// RevokedEntry names one revoked certificate.
type RevokedEntry struct {
	Subject string `cbor:"1,keyasint"`
	Serial  uint64 `cbor:"2,keyasint"`
}

type crlWire struct {
	Issuer     string         `cbor:"1,keyasint"`
	Number     uint64         `cbor:"2,keyasint"`
	ThisUpdate int64          `cbor:"3,keyasint"` // Unix seconds
	Revoked    []RevokedEntry `cbor:"4,keyasint"`
	Signature  []byte         `cbor:"5,keyasint,omitempty"`
}

func (l *RevocationList) wire() crlWire {
	r := l.Revoked
	if r == nil {
		r = []RevokedEntry{}
	}
	return crlWire{l.Issuer, l.Number, l.ThisUpdate.Unix(), r, l.Signature}
}

func compareRevoked(a, b RevokedEntry) int {
	return cmp.Or(cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Serial, b.Serial))
}

// IssueRevocationList signs a list of revoked certificates (sorted and
// deduplicated here) with the CA key.
func IssueRevocationList(caKey *PrivateKey, issuer string, number uint64, thisUpdate time.Time,
	revoked []RevokedEntry) (*RevocationList, error) {
	r := slices.Clone(revoked)
	slices.SortFunc(r, compareRevoked)
	r = slices.Compact(r)
	l := &RevocationList{Issuer: issuer, Number: number, ThisUpdate: time.Unix(thisUpdate.Unix(), 0).UTC(), Revoked: r}
	if err := l.check(); err != nil {
		return nil, err
	}
	body, err := l.body()
	if err != nil {
		return nil, err
	}
	if l.Signature, err = caKey.Sign(body, contextRevocations); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *RevocationList) check() error {
	if err := checkName("revocation list issuer", l.Issuer); err != nil {
		return err
	}
	if len(l.Revoked) > MaxRevoked {
		return fmt.Errorf("%w: %d revoked entries", ErrMalformed, len(l.Revoked))
	}
	for i, e := range l.Revoked {
		if err := checkName("revoked subject", e.Subject); err != nil {
			return err
		}
		if i > 0 && compareRevoked(l.Revoked[i-1], e) >= 0 {
			return fmt.Errorf("%w: revoked entries not sorted or repeated", ErrMalformed)
		}
	}
	return checkLen("revocation list signature", l.Signature, 0, MaxSigBytes)
}

func (l *RevocationList) body() ([]byte, error) {
	w := l.wire()
	w.Signature = nil
	return marshal(w)
}

// Marshal returns the encoding of the signed list.
func (l *RevocationList) Marshal() ([]byte, error) {
	if len(l.Signature) == 0 {
		return nil, fmt.Errorf("%w: revocation list is not signed", ErrMalformed)
	}
	return marshal(l.wire())
}

// ParseRevocationList decodes an encoded list (strictly). It does not verify it.
func ParseRevocationList(b []byte) (*RevocationList, error) {
	var w crlWire
	if err := unmarshalStrict(b, &w, maxCRLBytes); err != nil {
		return nil, err
	}
	if w.Revoked == nil {
		return nil, fmt.Errorf("%w: revocation list without its list", ErrMalformed)
	}
	l := &RevocationList{Issuer: w.Issuer, Number: w.Number, ThisUpdate: time.Unix(w.ThisUpdate, 0).UTC(),
		Revoked: w.Revoked, Signature: w.Signature}
	if err := l.check(); err != nil {
		return nil, err
	}
	if len(l.Signature) == 0 {
		return nil, fmt.Errorf("%w: revocation list is not signed", ErrMalformed)
	}
	return l, nil
}

// Verify checks the CA's signature (caPub of parameter set caAlg).
func (l *RevocationList) Verify(caPub []byte, caAlg string) error {
	s, err := SignerByName(caAlg)
	if err != nil {
		return err
	}
	ca, err := s.ParsePublicKey(caPub)
	if err != nil {
		return err
	}
	return l.verifyWith(ca)
}

func (l *RevocationList) verifyWith(ca *PublicKey) error {
	if err := l.check(); err != nil {
		return err
	}
	body, err := l.body()
	if err != nil {
		return err
	}
	if !ca.Verify(body, contextRevocations, l.Signature) {
		return fmt.Errorf("%w: revocation list %d", ErrBadSignature, l.Number)
	}
	return nil
}

// IsRevoked reports whether the certificate subject/serial is on the list.
// A nil list revokes nothing.
func (l *RevocationList) IsRevoked(subject string, serial uint64) bool {
	if l == nil {
		return false
	}
	_, found := slices.BinarySearchFunc(l.Revoked, RevokedEntry{subject, serial}, compareRevoked)
	return found
}

// EncodePEM returns the list as a "QKMS ML-DSA REVOCATION LIST" PEM block.
func (l *RevocationList) EncodePEM() ([]byte, error) {
	b, err := l.Marshal()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMRevocationList, Bytes: b}), nil
}

// ParseRevocationListPEM decodes a "QKMS ML-DSA REVOCATION LIST" PEM block.
func ParseRevocationListPEM(b []byte) (*RevocationList, error) {
	der, err := decodePEM(b, PEMRevocationList)
	if err != nil {
		return nil, err
	}
	return ParseRevocationList(der)
}
