package kmsapi

import (
	"errors"
	"io"
	"net/http"

	"github.com/qkms/qkms/internal/quicks"
	"github.com/qkms/qkms/internal/quicks/internal/rest"
)

// routes is the resource table of sdn_to_kms_api.yaml.
func (s *Server) routes() []rest.Route {
	get := func(h rest.HandlerFunc) map[string]rest.HandlerFunc {
		return map[string]rest.HandlerFunc{http.MethodGet: h}
	}
	return []rest.Route{
		{Pattern: "version", Methods: get(s.version)},
		{Pattern: "monitor/capabilities", Methods: get(s.capabilities)},
		{Pattern: "monitor/device-info", Methods: get(s.deviceInfo)},
		{Pattern: "monitor/status", Methods: get(s.status)},
		{Pattern: "monitor/log", Methods: get(s.log)},
		{Pattern: "monitor/qkd-device", Methods: get(s.qkdDevices)},
		{Pattern: "control/status", Methods: map[string]rest.HandlerFunc{http.MethodPut: s.setStatus}},
		{Pattern: "control/qkd-device/{device_id}", Methods: map[string]rest.HandlerFunc{
			http.MethodPost:   s.registerDevice,
			http.MethodPut:    s.updateDevice,
			http.MethodDelete: s.removeDevice,
		}},
		{Pattern: "link/performance/{link_id}", Methods: get(s.linkPerformance)},
		{Pattern: "link/relay/{key_stream_id}", Methods: map[string]rest.HandlerFunc{
			http.MethodPost:   s.createRelay,
			http.MethodPut:    s.replaceRelay,
			http.MethodDelete: s.deleteRelay,
		}},
	}
}

func (s *Server) version(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	v, err := s.backend.Version(r.Context())
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusOK, &v)
}

func (s *Server) capabilities(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	c, err := s.backend.Capabilities(r.Context())
	if err != nil {
		return err
	}
	if c.AppAPISupport == nil {
		c.AppAPISupport = []quicks.AppAPI{}
	}
	return rest.WriteJSON(w, http.StatusOK, &c)
}

func (s *Server) deviceInfo(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	d, err := s.backend.DeviceInfo(r.Context())
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusOK, &d)
}

// statusParams: new_operation_state_only (2.2.0) and its 2.1.0 name reset.
var statusParams = []string{"new_operation_state_only", "reset"}

func (s *Server) status(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	reset := false
	for _, name := range statusParams {
		b, err := rest.QueryBool(r, name)
		if err != nil {
			return err
		}
		reset = reset || b
	}
	st, err := s.backend.Status(r.Context(), reset)
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusOK, &st)
}

func (s *Server) log(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	lf, err := s.backend.Log(r.Context())
	if err != nil {
		return err
	}
	if lf.Body == nil {
		return errors.New("kmsapi: Backend.Log returned no body")
	}
	defer lf.Body.Close()
	ct := lf.ContentType
	if ct == "" {
		ct = quicks.MediaTypeOctetStream
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, lf.Body) // headers are out: a failure can only cut the body
	return nil
}

func (s *Server) qkdDevices(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	l, err := s.backend.QKDDevices(r.Context())
	if err != nil {
		return err
	}
	if l.QKDDevices == nil {
		l.QKDDevices = []quicks.QKDDevice{}
	}
	return rest.WriteJSON(w, http.StatusOK, &l)
}

func (s *Server) setStatus(w http.ResponseWriter, r *http.Request, _ rest.Params) error {
	req, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeStateChange)
	if err != nil {
		return err
	}
	if err := s.backend.SetStatus(r.Context(), req.State); err != nil {
		return err
	}
	rest.WriteEmpty(w, http.StatusOK)
	return nil
}

// unknownDevice turns ErrNotFound into the 400 that sdn_to_kms_api.yaml
// asks for an unknown device ID (its 404 means "no such endpoint").
func unknownDevice(err error) error {
	if errors.Is(err, quicks.ErrNotFound) {
		return quicks.BadField("device_id", "unknown QKD device: "+err.Error())
	}
	return err
}

func (s *Server) registerDevice(w http.ResponseWriter, r *http.Request, p rest.Params) error {
	id, err := rest.UUIDParam(p, "device_id")
	if err != nil {
		return err
	}
	dev, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeDeviceRegistration)
	if err != nil {
		return err
	}
	if err := s.backend.RegisterDevice(r.Context(), id, dev); err != nil {
		return err
	}
	rest.WriteEmpty(w, http.StatusCreated)
	return nil
}

func (s *Server) updateDevice(w http.ResponseWriter, r *http.Request, p rest.Params) error {
	id, err := rest.UUIDParam(p, "device_id")
	if err != nil {
		return err
	}
	dev, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeDeviceUpdate)
	if err != nil {
		return err
	}
	if err := s.backend.UpdateDevice(r.Context(), id, dev); err != nil {
		return unknownDevice(err)
	}
	rest.WriteEmpty(w, http.StatusOK)
	return nil
}

func (s *Server) removeDevice(w http.ResponseWriter, r *http.Request, p rest.Params) error {
	id, err := rest.UUIDParam(p, "device_id")
	if err != nil {
		return err
	}
	if err := s.backend.RemoveDevice(r.Context(), id); err != nil {
		return unknownDevice(err)
	}
	rest.WriteEmpty(w, http.StatusNoContent)
	return nil
}

func (s *Server) linkPerformance(w http.ResponseWriter, r *http.Request, p rest.Params) error {
	id, err := rest.UUIDParam(p, "link_id")
	if err != nil {
		return err
	}
	entries, err := rest.QueryInt(r, "entries", AllHistory)
	if err != nil {
		return err
	}
	perf, err := s.backend.LinkPerformance(r.Context(), id, entries)
	if err != nil {
		return err
	}
	if entries != AllHistory && len(perf.History) > entries {
		perf.History = perf.History[:entries]
	}
	return rest.WriteJSON(w, http.StatusOK, &perf)
}

func (s *Server) createRelay(w http.ResponseWriter, r *http.Request, p rest.Params) error {
	id, err := rest.UUIDParam(p, "key_stream_id")
	if err != nil {
		return err
	}
	entry, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeRelayConfig)
	if err != nil {
		return err
	}
	if err := s.backend.CreateRelay(r.Context(), id, entry); err != nil {
		return err
	}
	rest.WriteEmpty(w, http.StatusCreated)
	return nil
}

func (s *Server) replaceRelay(w http.ResponseWriter, r *http.Request, p rest.Params) error {
	id, err := rest.UUIDParam(p, "key_stream_id")
	if err != nil {
		return err
	}
	entry, err := rest.DecodeBody(w, r, s.maxBody, quicks.DecodeRelayUpdate)
	if err != nil {
		return err
	}
	if err := s.backend.ReplaceRelay(r.Context(), id, entry); err != nil {
		return err
	}
	rest.WriteEmpty(w, http.StatusOK)
	return nil
}

func (s *Server) deleteRelay(w http.ResponseWriter, r *http.Request, p rest.Params) error {
	id, err := rest.UUIDParam(p, "key_stream_id")
	if err != nil {
		return err
	}
	if err := s.backend.DeleteRelay(r.Context(), id); err != nil {
		return err
	}
	rest.WriteEmpty(w, http.StatusNoContent)
	return nil
}
