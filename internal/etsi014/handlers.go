package etsi014

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/qkms/qkms/internal/kms"
	"github.com/qkms/qkms/internal/qkd"
)

// status serves Get status (clause 5.2).
func (s *Server) status(w http.ResponseWriter, r *http.Request, caller, slave qkd.SAEID) {
	st, err := s.kms.Status(r.Context(), caller, slave)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newStatusJSON(st))
}

// encKeys serves Get key (clause 5.3), GET and POST alike.
func (s *Server) encKeys(w http.ResponseWriter, r *http.Request, caller, slave qkd.SAEID) {
	var req kms.KeyRequest
	err := s.withBody(w, r, func(body []byte) (err error) {
		req, err = parseKeyRequest(body, r.URL.RawQuery, s.supported)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	keys, err := s.kms.EncKeys(r.Context(), caller, slave, req)
	s.deliver(w, r, keys, err)
}

// decKeys serves Get key with key IDs (clause 5.4), GET and POST alike.
func (s *Server) decKeys(w http.ResponseWriter, r *http.Request, caller, master qkd.SAEID) {
	var ids []qkd.KeyID
	err := s.withBody(w, r, func(body []byte) (err error) {
		ids, err = parseKeyIDs(body, r.URL.RawQuery)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	keys, err := s.kms.DecKeys(r.Context(), caller, master, ids)
	s.deliver(w, r, keys, err)
}

// deliver writes the keys (or the error) and wipes the keys either way.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, keys []kms.Key, err error) {
	if err != nil {
		wipeKeys(keys)
		s.writeError(w, r, err)
		return
	}
	if err := writeKeys(w, keys); err != nil {
		// The service has handed the keys out; they are lost to the SAE.
		s.log.Warn("etsi014: writing key container", "keys", len(keys), "path", r.URL.Path, "err", err)
		return
	}
	if s.onDelivered != nil {
		s.onDelivered(len(keys))
	}
}

// Request bodies (no key material: at most key IDs) are read into pooled
// buffers; buffers that grew past maxPooledBody are left to the GC.
const maxPooledBody = 64 << 10

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// withBody reads the request body (at most s.maxBody bytes) and calls f
// with it; the slice is only valid during f. A bodiless request gives nil.
func (s *Server) withBody(w http.ResponseWriter, r *http.Request, f func(body []byte) error) error {
	if r.Body == nil || r.Body == http.NoBody {
		return f(nil)
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			bodyPool.Put(buf)
		}
	}()
	buf.Reset()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.maxBody)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return badRequest(fmt.Sprintf("request body is larger than %d bytes", s.maxBody))
		}
		return badRequest("cannot read the request body")
	}
	return f(buf.Bytes())
}
