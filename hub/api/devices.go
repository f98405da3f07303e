package api

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"linli/hub/registry"
	"linli/shared/httpx"
	"linli/shared/identity"
)

// Registry enrolls and revokes devices.
type Registry interface {
	Issue(id, site, role, fingerprint string, ttl time.Duration, replace bool) (identity.Token, time.Time, error)
	Enroll(token string, pub ed25519.PublicKey) (registry.Device, string, error)
	Revoke(id string) (registry.Device, error)
	List() []registry.Device
	Get(id string) (registry.Device, bool)
}

// HubInfo is what enrollment hands to a new edge about the hub.
type HubInfo struct {
	ID          string
	Key         ed25519.PublicKey
	CAPEM       string // "" without TLS
	Fingerprint string // of the CA, carried in tokens
	Broker      string // the broker URL edges should use
	TokenTTL    time.Duration
	// MosquittoLogins: the hub writes an external Mosquitto's logins, where
	// a replaced device has a login of its own.
	MosquittoLogins bool
	// ResidentKey, when set, is the site's pseudonym key: kiosks then record
	// residents by pseudonym, and operators' resident ids are hashed alike.
	ResidentKey func(site string) ([]byte, error)
	// CA, when set, is the site CA in service and its fingerprint, and
	// wins over CAPEM and Fingerprint (a rotation switches it while the
	// hub runs).
	CA func() (pemText, fingerprint string)
}

// ca is the site CA new edges pin, and its fingerprint.
func (h HubInfo) ca() (string, string) {
	if h.CA != nil {
		return h.CA()
	}
	return h.CAPEM, h.Fingerprint
}

// resident is the id the hub knows a resident of site by.
func (h HubInfo) resident(site, id string) (string, error) {
	if h.ResidentKey == nil {
		return id, nil
	}
	key, err := h.ResidentKey(site)
	if err != nil {
		return "", err
	}
	return identity.ResidentPseudonym(key, id), nil
}

func (a *API) mountDevices(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/devices", a.wrap(a.requireAdmin(a.addDevice)))
	mux.HandleFunc("DELETE /api/v1/devices/{id}", a.wrap(a.requireAdmin(a.revokeDevice)))
	mux.HandleFunc("POST /api/v1/enroll", a.wrap(a.enroll))
	mux.HandleFunc("GET /api/v1/ca.pem", a.wrap(a.caPEM))
	mux.HandleFunc("POST /api/v1/identity", a.wrap(a.identityState))
}

func (a *API) requireAdmin(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return a.requireAuth(func(w http.ResponseWriter, r *http.Request) error {
		p, err := a.Caller(r)
		if err != nil {
			return err
		}
		if !p.Admin {
			return &httpx.Error{Status: http.StatusForbidden, Msg: "this needs an admin"}
		}
		return h(w, r)
	})
}

func (a *API) addDevice(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ID   string `json:"id"`
		Site string `json:"site"`
		Role string `json:"role"`
		// Replace must be set to enroll a new device under an id already
		// enrolled (a broken kiosk swapped); otherwise that is a 409.
		Replace bool `json:"replace"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	ttl := a.Hub.TokenTTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	_, fingerprint := a.Hub.ca()
	tok, exp, err := a.Enrollment.Issue(req.ID, req.Site, req.Role, fingerprint, ttl, req.Replace)
	if errors.Is(err, registry.ErrEnrolled) {
		return &httpx.Error{Status: http.StatusConflict, Field: "id", Msg: fmt.Sprintf("%s is enrolled already; send \"replace\":true to enroll a device that replaces it", req.ID)}
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, map[string]string{"id": req.ID, "site": req.Site, "role": req.Role,
		"token": tok.String(), "expires": exp.Format(time.RFC3339)})
	return nil
}

func (a *API) revokeDevice(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	d, err := a.Enrollment.Revoke(id)
	if errors.Is(err, registry.ErrUnknown) {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "no enrolled device " + id}
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"id": d.ID, "revoked": d.Revoked.Format(time.RFC3339)})
	return nil
}

func (a *API) enroll(w http.ResponseWriter, r *http.Request) error {
	var req identity.EnrollRequest
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if _, err := identity.ParseToken(req.Token); err != nil {
		return httpx.BadRequest("token", "%v", err)
	}
	pub, err := identity.DecodePublic(req.PublicKey)
	if err != nil {
		return httpx.BadRequest("public_key", "%v", err)
	}
	d, password, err := a.Enrollment.Enroll(req.Token, pub)
	if err != nil {
		return inField("token", err)
	}
	caPEM, _ := a.Hub.ca()
	resp := identity.EnrollResponse{ID: d.ID, Site: d.Site, Role: d.Role,
		MQTTUsername: d.ID, MQTTPassword: password, HubID: a.Hub.ID, HubKey: identity.EncodePublic(a.Hub.Key),
		CAPEM: caPEM, Broker: a.Hub.Broker, SeqBase: d.SeqBase}
	if a.Hub.ResidentKey != nil {
		key, err := a.Hub.ResidentKey(d.Site)
		if err != nil {
			return err
		}
		resp.Pseudonymize, resp.ResidentKey = true, base64.RawURLEncoding.EncodeToString(key)
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// identityState tells an edge, proving it holds one of its id's keys, what
// became of that key: "ok", "replaced" or "revoked". An edge asks when the
// broker refuses its login or a hub's ack says so; the answer comes over
// the pinned TLS connection (or loopback), so no one else can tell an edge
// it is revoked.
func (a *API) identityState(w http.ResponseWriter, r *http.Request) error {
	var req identity.StateRequest
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	proof, err := base64.RawURLEncoding.DecodeString(req.Proof)
	if err != nil {
		return httpx.BadRequest("proof", "not base64url: %v", err)
	}
	d, ok := a.Enrollment.Get(req.ID)
	if !ok {
		return &httpx.Error{Status: http.StatusNotFound, Field: "id", Msg: "no enrolled device " + req.ID}
	}
	keys := [][]byte{d.PublicKey}
	for _, k := range d.Previous {
		keys = append(keys, k.PublicKey)
	}
	for _, k := range keys {
		if len(k) == 0 {
			continue
		}
		if p, err := identity.Open(proof, k, req.ID); err == nil && string(p) == req.ID {
			resp := identity.StateResponse{ID: req.ID, Identity: d.Identity(k)}
			if a.Hub.MosquittoLogins && resp.Identity == registry.IdentityReplaced {
				resp.MQTTUsername = d.MosquittoLogin(k)
			}
			httpx.WriteJSON(w, http.StatusOK, resp)
			return nil
		}
	}
	return &httpx.Error{Status: http.StatusForbidden, Field: "proof", Msg: "not signed by a key of " + req.ID}
}

func (a *API) caPEM(w http.ResponseWriter, r *http.Request) error {
	caPEM, _ := a.Hub.ca()
	if caPEM == "" {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "this hub serves plain HTTP on loopback; it has no CA"}
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err := w.Write([]byte(caPEM))
	return err
}

// enrolledView adds what the registry knows to the device list.
func (a *API) enrolledView(out []deviceView) []deviceView {
	if a.Enrollment == nil {
		return out
	}
	have := map[string]int{}
	for i, d := range out {
		have[d.ID] = i
	}
	for _, d := range a.Enrollment.List() {
		i, ok := have[d.ID]
		if !ok {
			out = append(out, deviceView{ID: d.ID, Site: d.Site, Role: d.Role})
			i = len(out) - 1
		}
		out[i].Enrolled = d.Active() || !d.Revoked.IsZero()
		out[i].Revoked = !d.Revoked.IsZero()
	}
	return out
}
