package api

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// Report triage beyond a single patch:
//
//	GET  /api/v1/sites/{site}/assignees   whom the site's reports may be assigned to
//	POST /api/v1/reports/bulk             {"ids","status","assignee","note","visibility"}: one patch per report
//	POST /api/v1/reports/{id}/unmerge     {"note"}: undo a report's merge
func (a *API) mountTriage(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/sites/{site}/assignees", a.wrap(a.requireAuth(a.listAssignees)))
	mux.HandleFunc("POST /api/v1/reports/bulk", a.wrap(a.requireAuth(a.bulkPatch)))
	mux.HandleFunc("POST /api/v1/reports/{id}/unmerge", a.wrap(a.requireAuth(a.unmergeReport)))
}

// Directory names the hub's operator accounts: assignees besides a site's
// staff list, and the display names in a report's history.
type Directory interface {
	People() []Person
}

// Person is an operator account as the API needs it.
type Person struct {
	Name     string
	Display  string
	Role     string   // RoleViewer, RoleOperator or RoleAdmin
	Sites    []string // empty: every site
	Disabled bool
}

// Note visibilities: a public reply reaches kiosks and Open311 clients,
// an internal note stays at the hub.
const (
	VisibilityPublic   = "public"
	VisibilityInternal = "internal"
)

// internalNote reads a request's visibility; empty is a public reply, as
// every note was before notes had one.
func internalNote(visibility string) (bool, error) {
	switch visibility {
	case "", VisibilityPublic:
		return false, nil
	case VisibilityInternal:
		return true, nil
	}
	return false, httpx.BadRequest("visibility", "visibility %q is not public or internal", visibility)
}

func (a *API) people() []Person {
	if a.Directory == nil {
		return nil
	}
	return a.Directory.People()
}

// displayNames maps operator logins to their display names, where set.
func (a *API) displayNames() map[string]string {
	out := map[string]string{}
	for _, p := range a.people() {
		if p.Display != "" {
			out[p.Name] = p.Display
		}
	}
	return out
}

// assigneeOut is one choice of assignee.
type assigneeOut struct {
	Name    string `json:"name"`
	Display string `json:"display,omitempty"`
	Role    string `json:"role,omitempty"`
	Kind    string `json:"kind"` // staff or operator
}

// assignees lists whom a site's reports may go to: its plan's staff, then
// the enabled operator accounts that see the site and may act on it (not
// viewers).
func (a *API) assignees(site string) []assigneeOut {
	out := []assigneeOut{}
	for _, s := range a.Plans[site].Staff {
		out = append(out, assigneeOut{Name: s.Name, Role: s.Role, Kind: "staff"})
	}
	for _, p := range a.people() {
		if p.Disabled || p.Role == RoleViewer || len(p.Sites) > 0 && !slices.Contains(p.Sites, site) {
			continue
		}
		if !slices.ContainsFunc(out, func(o assigneeOut) bool { return o.Name == p.Name }) {
			out = append(out, assigneeOut{Name: p.Name, Display: p.Display, Kind: "operator"})
		}
	}
	return out
}

// checkAssignee refuses an assignee who is not on the site's list, when
// the site has one (staff in its plan).
func (a *API) checkAssignee(site, name string) error {
	if name == "" || len(a.Plans[site].Staff) == 0 {
		return nil
	}
	if slices.ContainsFunc(a.assignees(site), func(o assigneeOut) bool { return o.Name == name }) {
		return nil
	}
	return httpx.BadRequest("assignee", "assignee %q is neither on the staff list of site %s nor one of its operators", name, site)
}

func (a *API) listAssignees(w http.ResponseWriter, r *http.Request) error {
	site := r.PathValue("site")
	if err := event.ValidID(site); err != nil {
		return httpx.BadRequest("site", "site %v", err)
	}
	if err := a.CheckSite(r, site); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"site": site, "closed": len(a.Plans[site].Staff) > 0,
		"assignees": a.assignees(site)})
	return nil
}

// due is when a report must be closed by its site's limit for its
// category; zero without a limit.
func (a *API) due(site, category string, created time.Time) time.Time {
	d, ok := a.Plans[site].SLA[category]
	if !ok {
		return time.Time{}
	}
	return created.Add(time.Duration(d))
}

// overdue tells whether a report is past its limit at now: still open, not
// a duplicate (those follow their report), and older than the limit.
func overdue(rep merge.Report, due, now time.Time) bool {
	open := rep.Status != event.ReportResolved && rep.Status != event.ReportRejected
	return open && rep.MergedInto == "" && !due.IsZero() && now.After(due)
}

// reportPatchReq is the body of a patch, alone or in bulk.
type reportPatchReq struct {
	Status     string `json:"status"`
	Note       string `json:"note"`
	Assignee   string `json:"assignee"`
	Visibility string `json:"visibility"`
}

// patch checks a patch of report id by p and returns it ready to record.
func (a *API) patch(r *http.Request, id string, req reportPatchReq) (*event.ReportPatch, error) {
	if _, _, err := event.ParseID(id); err != nil {
		return nil, httpx.BadRequest("id", "%v", err)
	}
	internal, err := internalNote(req.Visibility)
	if err != nil {
		return nil, err
	}
	p, _ := a.Caller(r) // requireAuth has checked it
	patch := &event.ReportPatch{Report: id, Status: req.Status, Note: strings.TrimSpace(req.Note),
		Assignee: strings.TrimSpace(req.Assignee), Who: p.Name, Internal: internal}
	if err := patch.Validate(); err != nil {
		return nil, httpx.FromValidation(err)
	}
	site := a.reportSite(id)
	if err := a.seeOrNoSuch(r, site, "report", id); err != nil {
		return nil, err
	}
	var cerr error
	a.State.Read(func(m *merge.State) { cerr = m.CheckPatch(patch) })
	switch {
	case errors.Is(cerr, merge.ErrNotFound):
		return nil, &httpx.Error{Status: http.StatusNotFound, Msg: "no report " + id}
	case errors.Is(cerr, merge.ErrBadTransition):
		return nil, httpx.BadRequest("status", "%v", cerr)
	case cerr != nil:
		return nil, cerr
	}
	if err := a.checkAssignee(site, patch.Assignee); err != nil {
		return nil, err
	}
	return patch, nil
}

// maxBulk bounds one bulk action.
const maxBulk = 500

// bulkPatch applies one action to several reports: each gets its own
// patch, so each is in its history. Every report is checked first; one
// that cannot take the action fails the whole request (400 or 404 naming
// it) and nothing is recorded.
func (a *API) bulkPatch(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		IDs []string `json:"ids"`
		reportPatchReq
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if len(req.IDs) == 0 || len(req.IDs) > maxBulk {
		return httpx.BadRequest("ids", "give 1 to %d report ids", maxBulk)
	}
	bodies := make([]event.Body, 0, len(req.IDs))
	seen := map[string]bool{}
	for _, id := range req.IDs {
		if seen[id] {
			return httpx.BadRequest("ids", "report %s is listed twice", id)
		}
		seen[id] = true
		p, err := a.patch(r, id, req.reportPatchReq)
		if err != nil {
			var he *httpx.Error
			if errors.As(err, &he) {
				e := *he
				e.Msg = "report " + id + ": " + e.Msg
				return &e
			}
			return err
		}
		bodies = append(bodies, p)
	}
	if _, err := a.State.Record(bodies...); err != nil {
		return a.recordError(err)
	}
	now := time.Now()
	out := []reportSummary{}
	a.State.Read(func(m *merge.State) {
		for _, id := range req.IDs {
			if rep, err := m.Report(id); err == nil {
				out = append(out, a.summarize(rep, now))
			}
		}
	})
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) unmergeReport(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req struct {
		Note string `json:"note"`
	}
	if r.ContentLength != 0 {
		if err := httpx.Decode(w, r, &req); err != nil {
			return err
		}
	}
	p, err := a.Caller(r)
	if err != nil {
		return err
	}
	m := &event.ReportMerge{Report: id, Who: p.Name, Note: strings.TrimSpace(req.Note)}
	if err := m.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	if err := a.seeOrNoSuch(r, a.reportSite(id), "report", id); err != nil {
		return err
	}
	var cerr error
	a.State.Read(func(st *merge.State) { cerr = st.CheckMerge(m) })
	if cerr != nil {
		return inField("report", cerr)
	}
	if _, err := a.State.Record(m); err != nil {
		return a.recordError(err)
	}
	return a.getReport(w, r)
}

// reportQuery is a search of the report list.
type reportQuery struct {
	text, status, building, category, assignee string
	from, to                                   time.Time // created in [from, to); zero: open
	overdue                                    bool
	// archived includes the reports archived in the store (closed longer
	// than the memory hold); archived=0 leaves them out.
	archived bool
}

// readsArchive reports whether the query can match an archived report:
// the archive holds closed reports only, so a query for an open status
// never reads it.
func (q reportQuery) readsArchive() bool {
	return q.archived && (q.status == "" || q.status == event.ReportResolved || q.status == event.ReportRejected)
}

// parseReportQuery reads ?q=&status=&building=&category=&assignee=&from=&to=&overdue=&archived=.
// from and to are RFC 3339 times or dates (YYYY-MM-DD, in zone; to's day
// is included).
func parseReportQuery(r *http.Request, zone *time.Location) (reportQuery, error) {
	v := r.URL.Query()
	q := reportQuery{text: strings.ToLower(strings.TrimSpace(v.Get("q"))), status: v.Get("status"),
		building: v.Get("building"), category: v.Get("category"), assignee: v.Get("assignee")}
	if q.status != "" && !slices.Contains(event.ReportStatuses, q.status) {
		return q, httpx.BadRequest("status", "status %q is not one of %v", q.status, event.ReportStatuses)
	}
	if q.category != "" && !slices.Contains(event.Categories, q.category) {
		return q, httpx.BadRequest("category", "category %q is not one of %v", q.category, event.Categories)
	}
	if len(q.text) > 200 {
		return q, httpx.BadRequest("q", "q is longer than 200 bytes")
	}
	var err error
	if q.from, err = parseDay("from", v.Get("from"), zone, false); err != nil {
		return q, err
	}
	if q.to, err = parseDay("to", v.Get("to"), zone, true); err != nil {
		return q, err
	}
	if !q.from.IsZero() && !q.to.IsZero() && !q.to.After(q.from) {
		return q, httpx.BadRequest("to", "to must be after from")
	}
	switch v.Get("overdue") {
	case "", "0":
	case "1":
		q.overdue = true
	default:
		return q, httpx.BadRequest("overdue", "overdue must be 0 or 1")
	}
	switch v.Get("archived") {
	case "", "1":
		q.archived = true
	case "0":
	default:
		return q, httpx.BadRequest("archived", "archived must be 0 or 1")
	}
	return q, nil
}

func parseDay(field, s string, zone *time.Location, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, zone); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, httpx.BadRequest(field, "%s must be a date (2026-12-01) or an RFC 3339 time", field)
	}
	return t, nil
}

// matchHead tells whether a filing fits the query's filed fields; the rest
// (status, assignee, overdue) needs the merged report.
func (q reportQuery) matchHead(h merge.ReportHead) bool {
	if q.building != "" && h.Building != q.building || q.category != "" && h.Category != q.category {
		return false
	}
	created := h.Created.Time()
	if !q.from.IsZero() && created.Before(q.from) || !q.to.IsZero() && !created.Before(q.to) {
		return false
	}
	if q.text == "" {
		return true
	}
	for _, f := range []string{h.ID, h.Title, h.Description, h.Building, h.Unit, h.Category} {
		if strings.Contains(strings.ToLower(f), q.text) {
			return true
		}
	}
	return false
}

// overdueCollector exports linli_hub_reports_overdue{site,category} for
// every site and category with a time limit.
type overdueCollector struct {
	a   *API
	now func() time.Time
}

var overdueDesc = prometheus.NewDesc("linli_hub_reports_overdue",
	"Open reports past their site's time limit for their category (sla: in the site plan).", []string{"site", "category"}, nil)

// OverdueCollector is the overdue-report gauge, counted at each scrape.
func (a *API) OverdueCollector() prometheus.Collector {
	return overdueCollector{a: a, now: time.Now}
}

func (c overdueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- overdueDesc }

func (c overdueCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.a.overdueCounts(c.now())
	for site, plan := range c.a.Plans {
		for cat := range plan.SLA {
			ch <- prometheus.MustNewConstMetric(overdueDesc, prometheus.GaugeValue, float64(counts[site][cat]), site, cat)
		}
	}
}

// overdueCounts counts overdue reports by site and category.
func (a *API) overdueCounts(now time.Time) map[string]map[string]int {
	return a.countOverdue(now, func(rep merge.Report) string { return rep.Category })
}

// overdueByBuilding counts overdue reports by site and building, for the
// map.
func (a *API) overdueByBuilding(now time.Time) map[string]map[string]int {
	return a.countOverdue(now, func(rep merge.Report) string { return rep.Building })
}

// countOverdue counts the overdue reports of every site with time limits
// by site and by what key says of each. Only reports old enough to be
// overdue are built.
func (a *API) countOverdue(now time.Time, key func(merge.Report) string) map[string]map[string]int {
	out := map[string]map[string]int{}
	if a.State == nil {
		return out
	}
	a.State.Read(func(m *merge.State) {
		for site, plan := range a.Plans {
			if len(plan.SLA) == 0 {
				continue
			}
			for _, rep := range m.OpenReportsWhere(site, func(h merge.ReportHead) bool {
				d, ok := plan.SLA[h.Category]
				return ok && now.After(h.Created.Time().Add(time.Duration(d)))
			}) {
				if overdue(rep, a.due(site, rep.Category, rep.Created.Time()), now) {
					if out[site] == nil {
						out[site] = map[string]int{}
					}
					out[site][key(rep)]++
				}
			}
		}
	})
	return out
}
