package controller

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/sdn"
)

func pathEscape(s string) string  { return url.PathEscape(s) }
func queryEscape(s string) string { return url.QueryEscape(s) }

// caller is who sent a request: an agent (its node) or the operator.
type caller struct {
	node     qkd.NodeID
	operator bool
}

// who returns the verified caller of r, or false.
func (c *Controller) who(r *http.Request) (caller, bool) {
	if r.TLS == nil {
		return caller{}, false
	}
	cn, ok := pki.PeerCN(r.TLS)
	if !ok {
		return caller{}, false
	}
	if c.o.OperatorCN != "" && cn == c.o.OperatorCN {
		return caller{operator: true}, true
	}
	if n, ok := c.cn[cn]; ok {
		return caller{node: n}, true
	}
	return caller{}, false
}

// Handler is the controller's API (serve it with TLS 1.3 and verified
// client certificates):
//
//	PUT    /sdn/v1/nodes/{id}          agent report (qkd_node) → configuration
//	GET    /sdn/v1/nodes               every node's status and agent
//	GET    /sdn/v1/nodes/{id}          the node's qkd_node as the controller sees it
//	GET    /sdn/v1/links               PHYS links: status, rates, promises
//	POST   /sdn/v1/applications        register an application (qkd_app) → key stream
//	GET    /sdn/v1/applications        key streams and their routes
//	PATCH  /sdn/v1/applications/{id}   the destination established the stream
//	DELETE /sdn/v1/applications/{id}   close a key stream
//	GET    /sdn/v1/path-status         ?master=&slave= path-wide ETSI 014 status
//	POST   /sdn/v1/notifications       a node's notification
//	GET    /sdn/v1/notifications       notifications (node and controller events)
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, agentOnly bool, f func(http.ResponseWriter, *http.Request, caller)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			who, ok := c.who(r)
			if !ok || (agentOnly && who.operator) {
				writeProblem(w, http.StatusForbidden, "client certificate not allowed here")
				return
			}
			f(w, r, who)
		})
	}
	h("PUT "+BasePath+"/nodes/{id}", true, c.putNode)
	h("GET "+BasePath+"/nodes", false, c.getNodes)
	h("GET "+BasePath+"/nodes/{id}", false, c.getNode)
	h("GET "+BasePath+"/links", false, c.getLinks)
	h("POST "+BasePath+"/applications", true, c.postApp)
	h("GET "+BasePath+"/applications", false, c.getApps)
	h("PATCH "+BasePath+"/applications/{id}", true, c.patchApp)
	h("DELETE "+BasePath+"/applications/{id}", false, c.deleteApp)
	h("GET "+BasePath+"/path-status", false, c.getPathStatus)
	h("POST "+BasePath+"/notifications", true, c.postNote)
	h("GET "+BasePath+"/notifications", false, c.getNotes)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := c.who(r); !ok {
			writeProblem(w, http.StatusForbidden, "client certificate not allowed here")
			return
		}
		writeProblem(w, http.StatusNotFound, "no such resource")
	})
	return mux
}

func (c *Controller) putNode(w http.ResponseWriter, r *http.Request, who caller) {
	id := qkd.NodeID(r.PathValue("id"))
	if who.node != id {
		writeProblem(w, http.StatusForbidden, "an agent reports on its own node only")
		return
	}
	b, err := readBody(w, r)
	if err == nil {
		var rep NodeReport
		if rep, err = DecodeNodeReport(b); err == nil {
			var doc sdn.QKDNodeDocument
			if doc, err = c.Report(r.Context(), id, rep); err == nil {
				writeJSON(w, http.StatusOK, doc)
				return
			}
		}
	}
	writeErr(w, err)
}

// NodeView is one node in GET /sdn/v1/nodes.
type NodeView struct {
	ID       qkd.NodeID     `json:"qkdn_id"`
	Status   sdn.NodeStatus `json:"status"`
	AgentURL string         `json:"agent_url,omitempty"`
	LastSeen string         `json:"last_report,omitempty"`
}

func (c *Controller) getNodes(w http.ResponseWriter, _ *http.Request, _ caller) {
	var out []NodeView
	c.mu.Lock()
	for _, n := range c.o.Topology.Nodes {
		v := NodeView{ID: n.ID, Status: sdn.NodeOffline}
		if a := c.agents[n.ID]; a != nil {
			v.Status = c.status[n.ID]
			a.mu.Lock()
			v.AgentURL = a.url
			a.mu.Unlock()
			v.LastSeen = a.lastSeen.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		}
		out = append(out, v)
	}
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"nodes": out})
}

func (c *Controller) getNode(w http.ResponseWriter, r *http.Request, _ caller) {
	n, err := c.sdn.QKDNode(qkd.NodeID(r.PathValue("id")))
	if err != nil {
		writeProblem(w, http.StatusNotFound, "no such node")
		return
	}
	writeJSON(w, http.StatusOK, sdn.QKDNodeDocument{Node: n})
}

func (c *Controller) getLinks(w http.ResponseWriter, _ *http.Request, _ caller) {
	writeJSON(w, http.StatusOK, map[string]any{"links": c.sdn.Links()})
}

func (c *Controller) postApp(w http.ResponseWriter, r *http.Request, who caller) {
	b, err := readBody(w, r)
	if err == nil {
		var reg AppRegistration
		if reg, err = DecodeAppRegistration(b); err == nil {
			var out AppRegistered
			if out, err = c.Register(r.Context(), who.node, reg); err == nil {
				writeJSON(w, http.StatusCreated, out)
				return
			}
		}
	}
	writeErr(w, err)
}

func (c *Controller) getApps(w http.ResponseWriter, _ *http.Request, _ caller) {
	streams := c.sdn.Streams()
	if streams == nil {
		streams = []sdn.Stream{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"key_streams": streams})
}

func (c *Controller) patchApp(w http.ResponseWriter, r *http.Request, who caller) {
	if err := c.Established(r.Context(), who.node, r.PathValue("id")); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (c *Controller) deleteApp(w http.ResponseWriter, r *http.Request, who caller) {
	if err := c.Close(r.Context(), who.node, who.operator, r.PathValue("id")); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Controller) getPathStatus(w http.ResponseWriter, r *http.Request, _ caller) {
	q := r.URL.Query()
	m, s := q.Get("master"), q.Get("slave")
	if m == "" || s == "" {
		writeErr(w, bad("master, slave", "both query parameters are required"))
		return
	}
	ps, err := c.PathStatus(qkd.SAEID(m), qkd.SAEID(s))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (c *Controller) postNote(w http.ResponseWriter, r *http.Request, who caller) {
	b, err := readBody(w, r)
	if err == nil {
		var n Notification
		if n, err = DecodeNotification(b); err == nil {
			n.NodeID, n.From, n.Time = string(who.node), string(who.node), c.o.Now()
			c.note(n)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	writeErr(w, err)
}

func (c *Controller) getNotes(w http.ResponseWriter, r *http.Request, _ caller) {
	notes := c.Notifications()
	if s := r.URL.Query().Get("last"); s != "" {
		if k, err := strconv.Atoi(s); err == nil && k >= 0 && k < len(notes) {
			notes = notes[len(notes)-k:]
		}
	}
	if notes == nil {
		notes = []Notification{}
	}
	slices.Reverse(notes)
	writeJSON(w, http.StatusOK, map[string]any{"notifications": notes})
}
