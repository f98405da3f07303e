package api

import (
	"net/http"

	"linli/hub/pki"
	"linli/shared/httpx"
)

// SiteCA rotates the hub's site CA (see docs/operations.md, certificate
// rotation).
type SiteCA interface {
	// Status is where the rotation stands and which devices trust the CA
	// it brings.
	Status() (CAStatus, error)
	// Rotate creates the next CA and sends it, cross-signed, to every edge.
	Rotate() (CAStatus, error)
	// Finish switches the hub's certificate to the next CA.
	Finish() (CAStatus, error)
	// Bundle is the new CA and its cross-certificate (PEM, in that
	// order) while a rotation is started or switched; ok false otherwise.
	Bundle() (pemText []byte, ok bool)
}

// CAStatus is a rotation and the devices' part in it.
type CAStatus struct {
	pki.Rotation
	// Devices: each enrolled device, "new" once its hello said it trusts
	// the rotation's target CA, else "old".
	Devices map[string]string `json:"devices"`
	Old     int               `json:"old"`
	New     int               `json:"new"`
}

func (a *API) mountSiteCA(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/pki", a.wrap(a.requireAdmin(a.caStep(a.SiteCA.Status))))
	mux.HandleFunc("POST /api/v1/pki/rotate", a.wrap(a.requireAdmin(a.caStep(a.SiteCA.Rotate))))
	mux.HandleFunc("POST /api/v1/pki/finish", a.wrap(a.requireAdmin(a.caStep(a.SiteCA.Finish))))
	mux.HandleFunc("GET /api/v1/pki/bundle", a.wrap(a.caBundle))
}

func (a *API) caStep(step func() (CAStatus, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		st, err := step()
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, st)
		return nil
	}
}

// caBundle hands out the rotation's bundle to anyone: an edge that missed
// the rotation fetches it without trusting the connection, and takes it
// only if the cross-certificate is signed by the CA it pins.
func (a *API) caBundle(w http.ResponseWriter, r *http.Request) error {
	b, ok := a.SiteCA.Bundle()
	if !ok {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "no site-CA rotation in progress"}
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err := w.Write(b)
	return err
}
