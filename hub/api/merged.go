package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"linli/hub/state"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// State is the merged community state and the way to record operator
// decisions.
type State interface {
	// Read runs f with the state under a read lock.
	Read(f func(m *merge.State))
	// Record validates, stores, merges and publishes operator decisions; a
	// *event.FieldError means bad input.
	Record(bodies ...event.Body) ([]event.Event, error)
}

// Eraser answers deletion requests; a State that is one gets the route.
type Eraser interface {
	// Erase anonymises a resident of a site on the hub and its edges.
	Erase(site, resident string) (state.Erasure, error)
}

func (a *API) mountMerged(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/reports", a.wrap(a.listReports))
	mux.HandleFunc("GET /api/v1/reports/{id}", a.wrap(a.getReport))
	mux.HandleFunc("PATCH /api/v1/reports/{id}", a.wrap(a.requireAuth(a.patchReport)))
	mux.HandleFunc("POST /api/v1/activities", a.wrap(a.requireAuth(a.postActivity)))
	mux.HandleFunc("GET /api/v1/activities", a.wrap(a.requireAuth(a.listActivities)))
	mux.HandleFunc("GET /api/v1/activities/{id}", a.wrap(a.requireAuth(a.getActivity)))
	mux.HandleFunc("POST /api/v1/notices", a.wrap(a.requireAuth(a.postNotice)))
	mux.HandleFunc("GET /api/v1/notices", a.wrap(a.listNotices))
	mux.HandleFunc("GET /api/v1/alarms", a.wrap(a.listAlarms))
	mux.HandleFunc("GET /api/v1/alarms/history", a.wrap(a.alarmHistory))
	a.mountEdits(mux)
	if _, ok := a.State.(Eraser); ok {
		mux.HandleFunc("DELETE /api/v1/residents/{id}", a.wrap(a.requireAdmin(a.eraseResident)))
	}
	a.mountAccess(mux)
}

// reportSummary is a report in lists (docs/interface.md: id, status, category,
// building, votes, created, updated).
type reportSummary struct {
	ID       string    `json:"id"`
	Site     string    `json:"site"`
	Status   string    `json:"status"`
	Category string    `json:"category"`
	Title    string    `json:"title"`
	Building string    `json:"building"`
	Unit     string    `json:"unit,omitempty"`
	Votes    uint32    `json:"votes"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	Assignee string    `json:"assignee,omitempty"`
	Rating   float64   `json:"rating,omitempty"`
	// MergedInto and Duplicates describe merged duplicates (see
	// POST /api/v1/reports/{id}/merge).
	MergedInto string   `json:"merged_into,omitempty"`
	Duplicates []string `json:"duplicates,omitempty"`
	// Due is when the report must be closed by its site's time limit for
	// its category (sla: in the site plan); Overdue is set once an open
	// report is past it.
	Due     *time.Time `json:"due,omitempty"`
	Overdue bool       `json:"overdue,omitempty"`
}

func (a *API) summarize(r merge.Report, now time.Time) reportSummary {
	s := reportSummary{ID: r.ID, Site: r.Site, Status: r.Status, Category: r.Category, Title: r.Title,
		Building: r.Building, Unit: r.Unit, Votes: r.Votes, Created: r.Created.Time(), Updated: r.Updated.Time(),
		Assignee: r.Assignee, Rating: r.Rating.Mean, MergedInto: r.MergedInto, Duplicates: r.Duplicates}
	if due := a.due(r.Site, r.Category, s.Created); !due.IsZero() {
		s.Due, s.Overdue = &due, overdue(r, due, now)
	}
	return s
}

// listReports lists and searches reports: ?q= (words of the id, title,
// description, building, unit or category), status, building, category,
// assignee, from and to (created), overdue=1.
func (a *API) listReports(w http.ResponseWriter, r *http.Request) error {
	site := r.URL.Query().Get("site")
	q, err := parseReportQuery(r, a.siteZone(site))
	if err != nil {
		return err
	}
	sites, err := a.Scope(r, site)
	if err != nil {
		return err
	}
	out := []reportSummary{}
	now := time.Now()
	a.State.Read(func(m *merge.State) {
		where := m.ReportsWhere
		if !q.readsArchive() {
			// Reading the archive decodes every report closed over the
			// years: the dashboard's refresh asks without it.
			where = m.HeldReportsWhere
		}
		for _, s := range sites { // "" is every site
			for _, rep := range where(s, q.matchHead) {
				if (q.status == "" || rep.Status == q.status) && (q.assignee == "" || rep.Assignee == q.assignee) {
					sum := a.summarize(rep, now)
					if !q.overdue || sum.Overdue {
						out = append(out, sum)
					}
				}
			}
		}
	})
	slices.SortFunc(out, func(x, y reportSummary) int { return x.Created.Compare(y.Created) })
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

type historyView struct {
	Event    string    `json:"event"`
	Time     time.Time `json:"time"`
	Device   string    `json:"device"`
	Seq      uint64    `json:"seq"`
	Status   string    `json:"status,omitempty"`
	Note     string    `json:"note,omitempty"`
	Assignee string    `json:"assignee,omitempty"`
	Who      string    `json:"who,omitempty"`
	// WhoName is the operator's display name, where their account has one.
	WhoName string `json:"who_name,omitempty"`
	// Visibility is set on a note: public (reached kiosks) or internal.
	Visibility string `json:"visibility,omitempty"`
}

type reportDetail struct {
	reportSummary
	Description string `json:"description,omitempty"`
	Resident    string `json:"resident,omitempty"`
	Note        string `json:"note,omitempty"` // the latest public reply
	// InternalNote is the latest internal note, for operators only.
	InternalNote string              `json:"internal_note,omitempty"`
	RatingInfo   merge.RatingSummary `json:"ratings"`
	History      []historyView       `json:"history"`
}

func (a *API) getReport(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, _, err := event.ParseID(id); err != nil {
		return httpx.BadRequest("id", "%v", err)
	}
	p, err := a.Caller(r)
	if err != nil {
		return err
	}
	var rep merge.Report
	var rerr error
	a.State.Read(func(m *merge.State) { rep, rerr = m.Report(id) })
	if errors.Is(rerr, merge.ErrNotFound) {
		return errNoSuch("report", id)
	}
	if rerr != nil {
		return rerr
	}
	if err := a.seeOrNoSuch(r, rep.Site, "report", id); err != nil {
		return err
	}
	d := reportDetail{reportSummary: a.summarize(rep, time.Now()), Description: rep.Description, Note: rep.Note,
		RatingInfo: rep.Rating, History: []historyView{}}
	authed := p.Name != ""
	var names map[string]string
	if authed {
		d.Resident = rep.Resident // personal data: only for operators
		d.InternalNote = rep.InternalNote
		names = a.displayNames()
	}
	for _, h := range rep.History {
		hv := historyView{Event: h.Event, Time: h.HLC.Time(), Device: h.Device, Seq: h.Seq, Status: h.Status,
			Note: h.Note, Assignee: h.Assignee}
		if h.Event == merge.HistoryPatched && h.Note != "" {
			hv.Visibility = VisibilityPublic
			if h.Internal {
				hv.Visibility = VisibilityInternal
			}
		}
		if h.Internal && !authed {
			// An internal note stays with the operators; the step
			// itself (a status or assignee it set) still shows.
			hv.Note, hv.Visibility = "", ""
			if hv.Status == "" && hv.Assignee == "" {
				continue
			}
		}
		if authed {
			hv.Who, hv.WhoName = h.Who, names[h.Who]
		}
		d.History = append(d.History, hv)
	}
	httpx.WriteJSON(w, http.StatusOK, d)
	return nil
}

func (a *API) patchReport(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, _, err := event.ParseID(id); err != nil {
		return httpx.BadRequest("id", "%v", err)
	}
	var req reportPatchReq
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	patch, err := a.patch(r, id, req)
	if err != nil {
		return err
	}
	if _, err := a.State.Record(patch); err != nil {
		return a.recordError(err)
	}
	return a.getReport(w, r)
}

// reportSite is the site of a merged report, or "" when there is none.
func (a *API) reportSite(id string) string {
	site := ""
	a.State.Read(func(m *merge.State) {
		if rep, err := m.Report(id); err == nil {
			site = rep.Site
		}
	})
	return site
}

func (a *API) recordError(err error) error {
	if e := httpx.FromValidation(err); e != nil {
		return e
	}
	if errors.Is(err, state.ErrNotOwned) {
		return err // wrap answers 503 naming the site's owner
	}
	a.Logger.Error("record operator decision", "err", err)
	return &httpx.Error{Status: http.StatusServiceUnavailable, Msg: "could not store the change: " + err.Error()}
}

// parseTime accepts RFC 3339 or empty (zero).
func parseTime(field, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, httpx.BadRequest(field, "%s must be an RFC 3339 time such as 2026-12-01T09:00:00+08:00", field)
	}
	return t.UnixMilli(), nil
}

func newID(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return prefix + hex.EncodeToString(b)
}

func (a *API) postActivity(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ID       string `json:"id"`
		Title    string `json:"title"`
		Kind     string `json:"kind"`
		Site     string `json:"site"`
		Start    string `json:"start"`
		End      string `json:"end"`
		Capacity *int   `json:"capacity"`
		// Minutes before start that attendance check-in opens; before
		// that a check-in is a sign-up. Absent: an hour.
		CheckinOpens *int   `json:"checkin_opens"`
		Venue        string `json:"venue"`
		Description  string `json:"description"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = newID("A")
	}
	if req.Kind == "" {
		req.Kind = "activity"
	}
	start, err := parseTime("start", req.Start)
	if err != nil {
		return err
	}
	end, err := parseTime("end", req.End)
	if err != nil {
		return err
	}
	if end != 0 && start != 0 && end <= start {
		return httpx.BadRequest("end", "end must be after start")
	}
	if req.Capacity == nil {
		return httpx.BadRequest("capacity", "capacity is required (0 for no limit)")
	}
	if *req.Capacity < 0 || *req.Capacity > 100000 {
		return httpx.BadRequest("capacity", "capacity must be 0 to 100000")
	}
	set := &event.ActivitySet{ID: req.ID, Title: strings.TrimSpace(req.Title), Type: req.Kind, Site: req.Site,
		Start: start, End: end, Capacity: uint32(*req.Capacity),
		Venue: strings.TrimSpace(req.Venue), Description: strings.TrimSpace(req.Description)}
	if req.CheckinOpens != nil {
		if *req.CheckinOpens < 0 || *req.CheckinOpens > event.MaxCheckinOpens {
			return httpx.BadRequest("checkin_opens", "checkin_opens must be 0 to %d minutes before start", event.MaxCheckinOpens)
		}
		m := uint32(*req.CheckinOpens)
		set.CheckinOpens = &m
	}
	if err := set.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	if err := a.CheckSite(r, set.Site); err != nil {
		return err
	}
	existed := false
	a.State.Read(func(m *merge.State) { _, err := m.Activity(req.ID); existed = err == nil })
	if _, err := a.State.Record(set); err != nil {
		return a.recordError(err)
	}
	code := http.StatusCreated
	if existed {
		code = http.StatusOK
	}
	return a.writeActivity(w, req.ID, code)
}

type activityDetail struct {
	merge.Activity
	StartTime *time.Time `json:"start_time,omitempty"`
	EndTime   *time.Time `json:"end_time,omitempty"`
	// CheckinOpensTime is when attendance check-in opens.
	CheckinOpensTime *time.Time `json:"checkin_opens_time,omitempty"`
	SeatsLeft        uint32     `json:"seats_left"`
}

func detailActivity(act merge.Activity) activityDetail {
	d := activityDetail{Activity: act}
	if act.Start != 0 {
		t := time.UnixMilli(act.Start).UTC()
		d.StartTime = &t
	}
	if act.End != 0 {
		t := time.UnixMilli(act.End).UTC()
		d.EndTime = &t
	}
	if act.CheckinOpens != 0 {
		t := time.UnixMilli(act.CheckinOpens).UTC()
		d.CheckinOpensTime = &t
	}
	if act.Capacity > act.Seated {
		d.SeatsLeft = act.Capacity - act.Seated
	}
	return d
}

func (a *API) writeActivity(w http.ResponseWriter, id string, code int) error {
	var act merge.Activity
	var err error
	a.State.Read(func(m *merge.State) { act, err = m.Activity(id) })
	if errors.Is(err, merge.ErrNotFound) {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "no activity " + id}
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, code, detailActivity(act))
	return nil
}

func (a *API) getActivity(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := event.ValidID(id); err != nil {
		return httpx.BadRequest("id", "id %v", err)
	}
	var site string
	a.State.Read(func(m *merge.State) {
		if act, err := m.Activity(id); err == nil {
			site = act.Site
		}
	})
	if err := a.seeOrNoSuch(r, site, "activity", id); err != nil {
		return err
	}
	return a.writeActivity(w, id, http.StatusOK)
}

func (a *API) listActivities(w http.ResponseWriter, r *http.Request) error {
	sites, err := a.Scope(r, r.URL.Query().Get("site"))
	if err != nil {
		return err
	}
	out := []activityDetail{}
	a.State.Read(func(m *merge.State) {
		for _, s := range sites { // "" is every site
			for _, act := range m.Activities(s) {
				out = append(out, detailActivity(act))
			}
		}
	})
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) postNotice(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ID        string   `json:"id"`
		Site      string   `json:"site"`
		Buildings []string `json:"buildings"`
		Title     string   `json:"title"`
		Body      string   `json:"body"`
		Category  string   `json:"category"`
		Expires   string   `json:"expires"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = newID("N")
	}
	if req.Category == "" {
		req.Category = "announcement"
	}
	exp, err := parseTime("expires", req.Expires)
	if err != nil {
		return err
	}
	if exp != 0 && exp <= time.Now().UnixMilli() {
		return errPast("expires")
	}
	set := &event.NoticeSet{ID: req.ID, Site: req.Site, Buildings: req.Buildings, Title: strings.TrimSpace(req.Title),
		Body: strings.TrimSpace(req.Body), Category: req.Category, Expires: exp}
	if err := set.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	if err := a.CheckSite(r, set.Site); err != nil {
		return err
	}
	if _, err := a.State.Record(set); err != nil {
		return a.recordError(err)
	}
	var n merge.NoticeView
	a.State.Read(func(m *merge.State) { n, err = m.Notice(req.ID) })
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, n)
	return nil
}

// listNotices lists the notices in force; with ?history=1 (for a login)
// every notice ever published, withdrawn and expired ones too.
func (a *API) listNotices(w http.ResponseWriter, r *http.Request) error {
	sites, err := a.Scope(r, r.URL.Query().Get("site"))
	if err != nil {
		return err
	}
	history := r.URL.Query().Get("history")
	if history != "" && history != "0" && history != "1" {
		return httpx.BadRequest("history", "history must be 0 or 1")
	}
	if history == "1" {
		p, err := a.Caller(r)
		if err != nil {
			return err
		}
		if p.Name == "" {
			return &httpx.Error{Status: http.StatusUnauthorized, Msg: "the notice history needs a login"}
		}
	}
	out := []merge.NoticeView{}
	now := hlc.FromTime(time.Now())
	a.State.Read(func(m *merge.State) {
		for _, s := range sites { // "" is every site
			if history == "1" {
				out = append(out, m.NoticeHistory(s)...)
			} else {
				out = append(out, m.Notices(s, now)...)
			}
		}
	})
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// eraseResident answers a deletion request: the resident's records are
// anonymised on the hub and, through the downlink, on every edge of the
// site.
func (a *API) eraseResident(w http.ResponseWriter, r *http.Request) error {
	site := r.URL.Query().Get("site")
	if site == "" {
		return httpx.BadRequest("site", "site is required (?site=…)")
	}
	id := r.PathValue("id")
	if err := event.ValidID(id); err != nil {
		return httpx.BadRequest("resident", "resident %v", err)
	}
	who, err := a.Hub.resident(site, id)
	if err != nil {
		return err
	}
	e, err := a.State.(Eraser).Erase(site, who)
	if err != nil {
		if fe := httpx.FromValidation(err); fe != nil {
			return fe
		}
		return err
	}
	e.Resident = id // the caller's id, not its pseudonym
	httpx.WriteJSON(w, http.StatusOK, e)
	return nil
}

// Erase forwards a deletion request through the live-stream wrapper.
func (s StreamingState) Erase(site, resident string) (state.Erasure, error) {
	e, ok := s.State.(Eraser)
	if !ok {
		return state.Erasure{}, errors.New("this hub's state cannot erase residents")
	}
	return e.Erase(site, resident)
}
