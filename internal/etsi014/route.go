package etsi014

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/qkms/qkms/internal/qkd"
)

// keysPrefix is the root of the ETSI GS QKD 014 resources (clause 5.1).
const keysPrefix = "/api/v1/keys/"

// resource is one of the three methods of clause 5 (the path's last element).
type resource struct {
	// serve answers for an authenticated caller; sae is the URL-decoded
	// SAE ID of the path.
	serve func(s *Server, w http.ResponseWriter, r *http.Request, caller, sae qkd.SAEID)
	post  bool     // POST allowed besides GET
	allow []string // Allow header of a 405, shared read-only
}

var resources = map[string]resource{
	"status":   {serve: (*Server).status, allow: []string{"GET"}},
	"enc_keys": {serve: (*Server).encKeys, post: true, allow: []string{"GET, POST"}},
	"dec_keys": {serve: (*Server).decKeys, post: true, allow: []string{"GET, POST"}},
}

// serveHTTP routes /api/v1/keys/{SAE_ID}/{status|enc_keys|dec_keys} and /admin.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), keysPrefix)
	if !ok {
		if s.admin != nil && (r.URL.Path == "/admin" || strings.HasPrefix(r.URL.Path, "/admin/")) {
			s.admin.ServeHTTP(w, r)
			return
		}
		writeStatusError(w, http.StatusNotFound, "not found")
		return
	}
	sae, op, ok := splitKeysPath(rest)
	res, known := resources[op]
	if !ok || !known {
		writeStatusError(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodGet && (r.Method != http.MethodPost || !res.post) {
		w.Header()["Allow"] = res.allow
		writeStatusError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	caller, err := Caller(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res.serve(s, w, r, caller, sae)
}

// splitKeysPath splits "{escaped SAE_ID}/{op}" and URL-decodes the SAE ID.
func splitKeysPath(rest string) (sae qkd.SAEID, op string, ok bool) {
	esc, op, ok := strings.Cut(rest, "/")
	if !ok || esc == "" || strings.IndexByte(op, '/') >= 0 {
		return "", "", false
	}
	id, err := url.PathUnescape(esc)
	if err != nil || id == "" {
		return "", "", false
	}
	return qkd.SAEID(id), op, true
}

// Caller returns the SAE ID of the request: the subject CN of the client
// certificate that TLS verified. It returns an error wrapping
// qkd.ErrUnauthorized when the request did not come over TLS or carries no
// verified certificate with a CN.
func Caller(r *http.Request) (qkd.SAEID, error) {
	if r.TLS == nil {
		return "", fmt.Errorf("%w: not a TLS request", qkd.ErrUnauthorized)
	}
	chains := r.TLS.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return "", fmt.Errorf("%w: no verified client certificate", qkd.ErrUnauthorized)
	}
	cn := chains[0][0].Subject.CommonName
	if cn == "" {
		return "", fmt.Errorf("%w: client certificate has no subject CN", qkd.ErrUnauthorized)
	}
	return qkd.SAEID(cn), nil
}
