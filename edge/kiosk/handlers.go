// Package kiosk is what a lobby kiosk serves beyond the edge API both
// roles share (edge/api): the resident web UI, the index of what each
// resident did here, following reports up (numbers, QR codes, reopening),
// the alarms residents see and the kiosk's settings, and the views of the
// replica the API answers reads from (Mirror).
package kiosk

import (
	"linli/edge/api"
)

// Handlers are the kiosk's own routes, on the edge API's request path.
type Handlers struct {
	*api.API

	// The settings the UI reads and what residents did here; each
	// optional.
	Kiosk     *Info
	Residents Residents
	Alarms    *AlarmFeed // the alarms residents see, pushed
	Numbers   *Numbers   // short report numbers
}

// Mount adds the kiosk's routes, its report numbering and its site plan
// check to the edge API; an edge of another role answers the routes 404.
// Call it before k.API.Handler.
func (k *Handlers) Mount() {
	only := func(pattern string, h api.HandlerFunc) api.Route {
		return api.Route{Pattern: pattern, Role: api.RoleKiosk, Handle: h}
	}
	k.API.Routes = append(k.API.Routes,
		only("POST /api/v1/reports/{id}/reopen", k.postReopen),
		only("POST /api/v1/reports/seen", k.postSeen),
		only("GET /api/v1/reports/{id}/{format}", k.getQR),
		only("GET /api/v1/kiosk", k.getKiosk),
		only("GET /api/v1/alarms", k.getAlarms),
		only("GET /api/v1/alarms/stream", k.streamAlarms),
		only("GET /api/v1/checkins", k.getCheckins),
		only("GET /api/v1/ratings", k.getRatings))
	if k.Role != api.RoleKiosk {
		return
	}
	k.API.ResidentReports = k.getResidentReports
	if k.Kiosk != nil {
		k.API.CheckPlace = k.Kiosk.Plan.CheckPlace
	}
	if k.Numbers != nil {
		k.API.Number = k.Numbers.Next
	}
}
