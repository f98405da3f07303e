package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// Operators change notices and activities after publishing them. An edit
// records the whole definition again — the stored one with the fields
// given replaced — so the merge's rule for these entities (the latest set
// wins as a whole) decides between edits from two operators as it decides
// between any two sets. Withdrawing and cancelling are edits too: nothing
// is deleted, the hub keeps the history.

func (a *API) mountEdits(mux *http.ServeMux) {
	mux.HandleFunc("PATCH /api/v1/notices/{id}", a.wrap(a.requireAuth(a.patchNotice)))
	mux.HandleFunc("POST /api/v1/notices/{id}/withdraw", a.wrap(a.requireAuth(a.withdrawNotice)))
	mux.HandleFunc("PATCH /api/v1/activities/{id}", a.wrap(a.requireAuth(a.patchActivity)))
	mux.HandleFunc("POST /api/v1/activities/{id}/cancel", a.wrap(a.requireAuth(a.cancelActivity)))
}

// errPast refuses a time that has already gone by.
func errPast(field string) error {
	return &httpx.Error{Status: http.StatusBadRequest, Field: field, Code: "past", Msg: field + " is in the past"}
}

// storedNotice reads the notice of r's {id} and checks the caller's scope.
func (a *API) storedNotice(r *http.Request) (event.NoticeSet, error) {
	id := r.PathValue("id")
	if err := event.ValidID(id); err != nil {
		return event.NoticeSet{}, httpx.BadRequest("id", "id %v", err)
	}
	var set event.NoticeSet
	var err error
	a.State.Read(func(m *merge.State) { set, err = m.NoticeSet(id) })
	if errors.Is(err, merge.ErrNotFound) || strings.HasPrefix(id, "alarm-") {
		return set, errNoSuch("notice", id)
	}
	if err != nil {
		return set, err
	}
	return set, a.seeOrNoSuch(r, set.Site, "notice", id)
}

// recordNotice validates and records set and answers with the notice.
func (a *API) recordNotice(w http.ResponseWriter, set *event.NoticeSet) error {
	if err := set.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	if _, err := a.State.Record(set); err != nil {
		return a.recordError(err)
	}
	var n merge.NoticeView
	var err error
	a.State.Read(func(m *merge.State) { n, err = m.Notice(set.ID) })
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, n)
	return nil
}

// patchNotice changes a notice's title, body, category, buildings or
// expiry; a withdrawn notice edited is published again only with
// "withdrawn": false.
func (a *API) patchNotice(w http.ResponseWriter, r *http.Request) error {
	set, err := a.storedNotice(r)
	if err != nil {
		return err
	}
	var req struct {
		Title     *string   `json:"title"`
		Body      *string   `json:"body"`
		Category  *string   `json:"category"`
		Buildings *[]string `json:"buildings"`
		Expires   *string   `json:"expires"` // "" for never
		Withdrawn *bool     `json:"withdrawn"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Title != nil {
		set.Title = strings.TrimSpace(*req.Title)
	}
	if req.Body != nil {
		set.Body = strings.TrimSpace(*req.Body)
	}
	if req.Category != nil {
		set.Category = *req.Category
	}
	if req.Buildings != nil {
		set.Buildings = *req.Buildings
	}
	if req.Expires != nil {
		exp, err := parseTime("expires", *req.Expires)
		if err != nil {
			return err
		}
		if exp != 0 && exp <= time.Now().UnixMilli() {
			return errPast("expires")
		}
		set.Expires = exp
	}
	if req.Withdrawn != nil {
		set.Withdrawn = *req.Withdrawn
	}
	return a.recordNotice(w, &set)
}

// withdrawNotice takes a notice off every kiosk; the hub keeps it.
func (a *API) withdrawNotice(w http.ResponseWriter, r *http.Request) error {
	set, err := a.storedNotice(r)
	if err != nil {
		return err
	}
	if err := decodeNote(w, r); err != nil {
		return err
	}
	set.Withdrawn = true
	return a.recordNotice(w, &set)
}

// storedActivity reads the activity of r's {id} and checks the scope.
func (a *API) storedActivity(r *http.Request) (event.ActivitySet, error) {
	id := r.PathValue("id")
	if err := event.ValidID(id); err != nil {
		return event.ActivitySet{}, httpx.BadRequest("id", "id %v", err)
	}
	var set event.ActivitySet
	var err error
	a.State.Read(func(m *merge.State) { set, err = m.ActivitySet(id) })
	if errors.Is(err, merge.ErrNotFound) {
		return set, errNoSuch("activity", id)
	}
	if err != nil {
		return set, err
	}
	return set, a.seeOrNoSuch(r, set.Site, "activity", id)
}

func (a *API) recordActivity(w http.ResponseWriter, set *event.ActivitySet) error {
	if err := set.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	if _, err := a.State.Record(set); err != nil {
		return a.recordError(err)
	}
	return a.writeActivity(w, set.ID, http.StatusOK)
}

// patchActivity changes an activity's title, kind, times, capacity, venue
// or description. Its site stays: seats and sign-ups belong to it.
func (a *API) patchActivity(w http.ResponseWriter, r *http.Request) error {
	set, err := a.storedActivity(r)
	if err != nil {
		return err
	}
	var req struct {
		Title       *string `json:"title"`
		Kind        *string `json:"kind"`
		Start       *string `json:"start"`
		End         *string `json:"end"`
		Capacity    *int    `json:"capacity"`
		Venue       *string `json:"venue"`
		Description *string `json:"description"`
		Cancelled   *bool   `json:"cancelled"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Title != nil {
		set.Title = strings.TrimSpace(*req.Title)
	}
	if req.Kind != nil {
		set.Type = *req.Kind
	}
	if req.Start != nil {
		if set.Start, err = parseTime("start", *req.Start); err != nil {
			return err
		}
	}
	if req.End != nil {
		if set.End, err = parseTime("end", *req.End); err != nil {
			return err
		}
	}
	if set.End != 0 && set.Start != 0 && set.End <= set.Start {
		return httpx.BadRequest("end", "end must be after start")
	}
	if req.Capacity != nil {
		if *req.Capacity < 0 || *req.Capacity > 100000 {
			return httpx.BadRequest("capacity", "capacity must be 0 to 100000")
		}
		set.Capacity = uint32(*req.Capacity)
	}
	if req.Venue != nil {
		set.Venue = strings.TrimSpace(*req.Venue)
	}
	if req.Description != nil {
		set.Description = strings.TrimSpace(*req.Description)
	}
	if req.Cancelled != nil {
		set.Cancelled = *req.Cancelled
	}
	return a.recordActivity(w, &set)
}

// cancelActivity marks an activity cancelled: the kiosks show it so to
// the residents who signed up, and take no more check-ins for it.
func (a *API) cancelActivity(w http.ResponseWriter, r *http.Request) error {
	set, err := a.storedActivity(r)
	if err != nil {
		return err
	}
	if err := decodeNote(w, r); err != nil {
		return err
	}
	set.Cancelled = true
	return a.recordActivity(w, &set)
}

// decodeNote checks the optional body of a withdrawal or a cancellation,
// {"note":"…"}: the note is kept by the audit log with the request, so
// nothing here needs it.
func decodeNote(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	var req struct {
		Note string `json:"note"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	return nil
}
