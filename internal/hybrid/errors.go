package hybrid

import "errors"

// Errors. Every failure wraps one of them (test with errors.Is); none of
// their texts, nor the context added to them, ever contains key bytes.
var (
	// ErrUnsupported: an algorithm name this package does not implement.
	ErrUnsupported = errors.New("hybrid: unsupported algorithm")
	// ErrMalformed: input that does not decode or violates a size limit or
	// a structural rule (wrong key length, duplicate recipient, ...).
	ErrMalformed = errors.New("hybrid: malformed input")
	// ErrBadSignature: an ML-DSA signature that does not verify, on a
	// certificate, revocation list, offer, header or path step.
	ErrBadSignature = errors.New("hybrid: bad signature")
	// ErrWrongSubject: a valid certificate that names another node than
	// the one the message claims to come from.
	ErrWrongSubject = errors.New("hybrid: certificate subject does not match the signer")
	// ErrExpired: a certificate outside its validity period (expired or
	// not yet valid) or an expired offer.
	ErrExpired = errors.New("hybrid: expired or not yet valid")
	// ErrOfferExpired: an offer past its Expires time. It wraps ErrExpired.
	ErrOfferExpired error = &childError{"hybrid: offer expired", ErrExpired}
	// ErrRevoked: a certificate on the revocation list.
	ErrRevoked = errors.New("hybrid: certificate revoked")
	// ErrStaleRevocationList: a revocation list older than the one in use.
	ErrStaleRevocationList = errors.New("hybrid: revocation list older than the current one")
	// ErrPathMismatch: the signed forwarding path is not the configured route.
	ErrPathMismatch = errors.New("hybrid: forwarding path differs from the configured route")
	// ErrNoCertificate: a path step without its certificate, and none
	// known for its node.
	ErrNoCertificate = errors.New("hybrid: no certificate for a forwarding step's node")
	// ErrNotRecipient: a hybrid header with no entry for this node.
	ErrNotRecipient = errors.New("hybrid: header has no entry for this node")
	// ErrUnknownOffer: no decapsulation key for the offer the header names,
	// or a key whose encapsulation key is not the one the header used.
	ErrUnknownOffer = errors.New("hybrid: no decapsulation key for the header's offer")
	// ErrWiped: a key used after Wipe.
	ErrWiped = errors.New("hybrid: key was wiped")
)

// childError is a sentinel that also matches its parent with errors.Is.
type childError struct {
	msg    string
	parent error
}

func (e *childError) Error() string { return e.msg }
func (e *childError) Unwrap() error { return e.parent }
