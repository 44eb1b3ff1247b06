package agentapi

import (
	"net/http"

	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/rest"
)

// routes is the resource table of kms_to_sdn_api.yaml. "link/status" and
// "link/registration" win over "link/{key_stream_id}".
func (s *Server) routes() []rest.Route {
	return []rest.Route{
		{Pattern: "version", Methods: map[string]rest.HandlerFunc{http.MethodGet: s.version}},
		{Pattern: "link/status", Methods: map[string]rest.HandlerFunc{http.MethodGet: s.linkStatus}},
		{Pattern: "link/registration", Methods: map[string]rest.HandlerFunc{
			http.MethodPost:  s.register,
			http.MethodPatch: s.patchRegistration,
		}},
		{Pattern: "link/{key_stream_id}", Methods: map[string]rest.HandlerFunc{http.MethodDelete: s.deleteStream}},
		{Pattern: "notification/registration", Methods: map[string]rest.HandlerFunc{http.MethodPost: s.notifyRegistration}},
		{Pattern: "notification/status", Methods: map[string]rest.HandlerFunc{http.MethodPatch: s.notifyStatus}},
		{Pattern: "notification/event", Methods: map[string]rest.HandlerFunc{http.MethodPut: s.notifyEvent}},
	}
}

func (s *Server) version(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	v, err := s.backend.Version(r.Context())
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusOK, &v)
}

func (s *Server) linkStatus(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	master, err := rest.QueryString(r, "master_sae_id")
	if err != nil {
		return err
	}
	slave, err := rest.QueryString(r, "slave_sae_id")
	if err != nil {
		return err
	}
	st, err := s.backend.LinkStatus(r.Context(), master, slave)
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusOK, &st)
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	req, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeLinkRegistration)
	if err != nil {
		return err
	}
	res, err := s.backend.Register(r.Context(), req)
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusCreated, &res)
}

func (s *Server) patchRegistration(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	req, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeRegistrationUpdate)
	if err != nil {
		return err
	}
	if err := s.backend.PatchRegistration(r.Context(), req); err != nil {
		return err
	}
	rest.WriteEmpty(w, http.StatusOK)
	return nil
}

func (s *Server) deleteStream(w http.ResponseWriter, r *http.Request, p rest.Params) error {
	id, err := rest.UUIDParam(p, "key_stream_id")
	if err != nil {
		return err
	}
	if err := s.backend.DeleteStream(r.Context(), id); err != nil {
		return err
	}
	rest.WriteEmpty(w, http.StatusOK)
	return nil
}

func (s *Server) notifyRegistration(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	req, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeKMSRegistration)
	if err != nil {
		return err
	}
	config, err := s.backend.NotifyRegistration(r.Context(), req)
	if err != nil {
		return err
	}
	if len(config) == 0 {
		rest.WriteEmpty(w, http.StatusCreated)
		return nil
	}
	rest.WriteBytes(w, http.StatusCreated, quicks.MediaTypeOctetStream, config)
	return nil
}

func (s *Server) notifyStatus(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	req, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeStatusNotification)
	if err != nil {
		return err
	}
	if err := s.backend.NotifyStatus(r.Context(), req); err != nil {
		return err
	}
	rest.WriteEmpty(w, http.StatusOK)
	return nil
}

func (s *Server) notifyEvent(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	req, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeEvent)
	if err != nil {
		return err
	}
	if err := s.backend.NotifyEvent(r.Context(), req); err != nil {
		return err
	}
	rest.WriteEmpty(w, http.StatusOK)
	return nil
}
