package api

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
)

type people []Person

func (p people) People() []Person { return p }

// triageSite gives s1 a staff list and time limits, s2 neither, and the
// hub three operator accounts.
func triageSite(a *API) {
	a.Plans = map[string]SitePlan{
		"s1": {Site: "s1", Width: 1, Height: 1, TimeZone: "Asia/Shanghai",
			Staff: []PlanStaff{{Name: "王师傅", Role: "物业维修"}, {Name: "李电工", Role: "contractor"}},
			SLA:   map[string]Duration{"fire_safety": Duration(4 * time.Hour), "noise": Duration(100_000 * time.Hour)}},
		"s2": {Site: "s2", Width: 1, Height: 1},
	}
	a.Directory = people{
		{Name: "op1", Display: "张主任"},
		{Name: "op2", Display: "二号", Sites: []string{"s2"}},
		{Name: "gone", Disabled: true},
		{Name: "watcher", Role: RoleViewer},
	}
}

type listed struct {
	ID       string     `json:"id"`
	Status   string     `json:"status"`
	Assignee string     `json:"assignee"`
	Overdue  bool       `json:"overdue"`
	Due      *time.Time `json:"due"`
}

// edgeFactSite applies an edge event of another site.
func (d *dash) edgeFactSite(t *testing.T, site, device string, seq uint64, ms int64, body event.Body) event.Event {
	t.Helper()
	ev, err := event.NewEvent(device, seq, hlc.New(1_740_000_000_000+ms, 0), body)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.state.Apply(site, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func (d *dash) list(t *testing.T, token, query string) []listed {
	t.Helper()
	code, body := d.call(t, token, "GET", "/api/v1/reports"+query, "", "")
	var out []listed
	if err := json.Unmarshal([]byte(body), &out); code != 200 || err != nil {
		t.Fatalf("GET /api/v1/reports%s: %d %s", query, code, body)
	}
	return out
}

func ids(ls []listed) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

// errField reads the field an error answer names.
func errField(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Field string `json:"field"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error answer %q: %v", body, err)
	}
	return e.Field
}

func TestReportSearch(t *testing.T) {
	d := newDash(t, triageSite)
	// Times: day 0 is 2025-02-20 (Asia/Shanghai) for edgeFact's base.
	day := int64(24 * time.Hour / time.Millisecond)
	a := d.edgeFact(t, "k1", 1, 0, &event.Report{Category: "elevator", Title: "电梯异响", Description: "运行时有怪声", Building: "B2", Unit: "2-501"})
	b := d.edgeFact(t, "k1", 2, day, &event.Report{Category: "noise", Title: "Loud music", Building: "B3"})
	c := d.edgeFact(t, "k2", 1, 2*day, &event.Report{Category: "elevator", Title: "电梯停了", Building: "B3"})
	if code, body := d.call(t, "op", "PATCH", "/api/v1/reports/"+c.ID(), "", `{"status":"accepted","assignee":"王师傅"}`); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	from := func(ms int64) string {
		return url.QueryEscape(hlc.New(1_740_000_000_000+ms, 0).Time().Format(time.RFC3339Nano))
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{a.ID(), b.ID(), c.ID()}},
		{"?q=电梯", []string{a.ID(), c.ID()}},
		{"?q=怪声", []string{a.ID()}},    // the description
		{"?q=LOUD", []string{b.ID()}},  // any case
		{"?q=2-501", []string{a.ID()}}, // the unit
		{"?q=k2.1", []string{c.ID()}},  // the number
		{"?q=电梯&building=B3", []string{c.ID()}},
		{"?category=elevator&status=accepted", []string{c.ID()}},
		{"?assignee=" + url.QueryEscape("王师傅"), []string{c.ID()}},
		{"?from=" + from(day), []string{b.ID(), c.ID()}},
		{"?from=" + from(day) + "&to=" + from(2*day), []string{b.ID()}},
		{"?to=" + hlc.New(1_740_000_000_000, 0).Time().In(time.FixedZone("CST", 8*3600)).Format(time.DateOnly), []string{a.ID()}}, // a date: its whole day
		{"?q=nothing-like-it", []string{}},
	} {
		if got := ids(d.list(t, "op", tc.query)); !slices.Equal(got, tc.want) {
			t.Errorf("GET /api/v1/reports%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	for _, tc := range []struct{ query, field string }{
		{"?from=yesterday", "from"},
		{"?to=2026-13-01", "to"},
		{"?from=2026-02-02&to=2026-02-01", "to"},
		{"?status=open", "status"},
		{"?category=fire", "category"},
		{"?overdue=yes", "overdue"},
		{"?q=" + strings.Repeat("x", 201), "q"},
	} {
		code, body := d.call(t, "op", "GET", "/api/v1/reports"+tc.query, "", "")
		if code != 400 || errField(t, body) != tc.field {
			t.Errorf("GET /api/v1/reports%s: %d %s, want 400 naming %s", tc.query, code, body, tc.field)
		}
	}
}

// A search of 10,000 reports builds only the matches: it answers well
// within what an operator waits for, even under the race detector.
func TestReportSearchTenThousand(t *testing.T) {
	d := newDash(t, triageSite)
	cats := []string{"elevator", "noise", "facilities", "sanitation"}
	var facts []merge.Fact
	for i := range 10_000 {
		ev, err := event.NewEvent("k1", uint64(i+1), hlc.New(1_740_000_000_000+int64(i), 0), &event.Report{
			Category: cats[i%len(cats)], Title: fmt.Sprintf("report %d", i), Building: fmt.Sprintf("B%d", i%7)})
		if err != nil {
			t.Fatal(err)
		}
		facts = append(facts, merge.Fact{Site: "s1", Event: ev})
	}
	var err error
	d.state.Read(func(m *merge.State) { _, err = m.ApplyBatch(facts) })
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got := d.list(t, "op", "?q=report%201234&building=B2&category=facilities") // 1234 % 7 = 2, 1234 % 4 = 2
	took := time.Since(start)
	if len(got) != 1 || got[0].ID != "k1.1235" {
		t.Fatalf("search for report 1234: %v", ids(got))
	}
	start = time.Now()
	got = d.list(t, "op", "?q=report%209999")
	if took = max(took, time.Since(start)); len(got) != 1 || got[0].ID != "k1.10000" {
		t.Fatalf("search for report 9999: %v", ids(got))
	}
	t.Logf("a search of 10,000 reports: %v", took)
	if took > 2*time.Second {
		t.Fatalf("a search of 10,000 reports took %v", took)
	}
}

func TestAssigneeFromTheSiteList(t *testing.T) {
	d := newDash(t, triageSite)
	r1 := d.edgeFact(t, "k1", 1, 0, &event.Report{Category: "noise", Title: "t", Building: "B1"})
	other := d.edgeFactSite(t, "s2", "k9", 1, 0, &event.Report{Category: "noise", Title: "t", Building: "B1"})
	for _, tc := range []struct {
		id, assignee string
		code         int
	}{
		{r1.ID(), "王师傅", 200},     // staff
		{r1.ID(), "op1", 200},     // an operator of every site
		{r1.ID(), "op2", 400},     // an operator of s2 only
		{r1.ID(), "gone", 400},    // a disabled account
		{r1.ID(), "Wang", 400},    // free text
		{other.ID(), "Wang", 200}, // s2 has no list: any name
	} {
		code, body := d.call(t, "op", "PATCH", "/api/v1/reports/"+tc.id, "", `{"assignee":"`+tc.assignee+`"}`)
		if code != tc.code || code == 400 && errField(t, body) != "assignee" {
			t.Errorf("assign %s to %s: %d %s, want %d", tc.id, tc.assignee, code, body, tc.code)
		}
	}
	var got struct {
		Closed    bool          `json:"closed"`
		Assignees []assigneeOut `json:"assignees"`
	}
	code, body := d.call(t, "op", "GET", "/api/v1/sites/s1/assignees", "", "")
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
		t.Fatalf("assignees: %d %s", code, body)
	}
	var names []string
	for _, a := range got.Assignees {
		names = append(names, a.Name+"/"+a.Kind)
	}
	if !got.Closed || strings.Join(names, " ") != "王师傅/staff 李电工/staff op1/operator" {
		t.Fatalf("assignees of s1: closed %v %v", got.Closed, names)
	}
}

func TestBulkPatch(t *testing.T) {
	d := newDash(t, triageSite)
	var reps []string
	for i := range 3 {
		ev := d.edgeFact(t, "k1", uint64(i+1), int64(i), &event.Report{Category: "noise", Title: "t", Building: "B1"})
		reps = append(reps, ev.ID())
	}
	body := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	code, out := d.call(t, "op", "POST", "/api/v1/reports/bulk", "", body(map[string]any{"ids": reps, "status": "accepted", "assignee": "李电工"}))
	if code != 200 {
		t.Fatalf("bulk accept: %d %s", code, out)
	}
	for _, l := range d.list(t, "op", "") {
		if l.Status != "accepted" || l.Assignee != "李电工" {
			t.Fatalf("after bulk accept: %+v", l)
		}
	}
	// One report cannot take the action: nothing is recorded, and the
	// answer names it.
	if code, out := d.call(t, "op", "PATCH", "/api/v1/reports/"+reps[1], "", `{"status":"resolved"}`); code != 200 {
		t.Fatalf("resolve one: %d %s", code, out)
	}
	code, out = d.call(t, "op", "POST", "/api/v1/reports/bulk", "", body(map[string]any{"ids": reps, "status": "in_progress"}))
	if code != 400 || errField(t, out) != "status" || !strings.Contains(out, reps[1]) {
		t.Fatalf("bulk with a resolved report: %d %s, want 400 naming it", code, out)
	}
	if l := d.list(t, "op", "?status=in_progress"); len(l) != 0 {
		t.Fatalf("a refused bulk action recorded %v", ids(l))
	}
	for _, tc := range []struct {
		body, field string
	}{
		{body(map[string]any{"ids": []string{}, "status": "accepted"}), "ids"},
		{body(map[string]any{"ids": []string{reps[0], reps[0]}, "status": "accepted"}), "ids"},
		{body(map[string]any{"ids": []string{reps[0]}, "assignee": "nobody"}), "assignee"},
		{body(map[string]any{"ids": []string{reps[0]}, "note": "x", "visibility": "secret"}), "visibility"},
	} {
		if code, out := d.call(t, "op", "POST", "/api/v1/reports/bulk", "", tc.body); code != 400 || errField(t, out) != tc.field {
			t.Errorf("bulk %s: %d %s, want 400 naming %s", tc.body, code, out, tc.field)
		}
	}
	if code, _ := d.call(t, "viewer", "POST", "/api/v1/reports/bulk", "", body(map[string]any{"ids": reps[:1], "status": "accepted"})); code != 403 {
		t.Fatalf("a viewer's bulk action: %d, want 403", code)
	}
	// Each report has its own step, by op1 (张主任).
	code, out = d.call(t, "op", "GET", "/api/v1/reports/"+reps[2], "", "")
	var det struct {
		History []historyView `json:"history"`
	}
	if err := json.Unmarshal([]byte(out), &det); code != 200 || err != nil || len(det.History) != 2 {
		t.Fatalf("history after bulk: %d %s", code, out)
	}
	if h := det.History[1]; h.Status != "accepted" || h.Who != "op1" || h.WhoName != "张主任" {
		t.Fatalf("bulk step %+v, want accepted by op1 shown as 张主任", h)
	}
}

func TestOverdueBySiteLimit(t *testing.T) {
	var a *API
	d := newDash(t, triageSite, func(x *API) { a = x })
	fire := d.edgeFact(t, "k1", 1, 0, &event.Report{Category: "fire_safety", Title: "t", Building: "B1"})
	fire2 := d.edgeFact(t, "k1", 2, 1, &event.Report{Category: "fire_safety", Title: "t", Building: "B2"})
	done := d.edgeFact(t, "k1", 3, 2, &event.Report{Category: "fire_safety", Title: "t", Building: "B1"})
	dup := d.edgeFact(t, "k1", 4, 3, &event.Report{Category: "fire_safety", Title: "t", Building: "B1"})
	young := d.edgeFact(t, "k1", 5, 4, &event.Report{Category: "noise", Title: "t", Building: "B1"})   // 100,000 h
	free := d.edgeFact(t, "k1", 6, 5, &event.Report{Category: "elevator", Title: "t", Building: "B1"}) // no limit
	for _, c := range []struct{ method, path, body string }{
		{"PATCH", "/api/v1/reports/" + done.ID(), `{"status":"resolved"}`},
		{"POST", "/api/v1/reports/" + dup.ID() + "/merge", `{"into":"` + fire.ID() + `"}`},
	} {
		if code, body := d.call(t, "op", c.method, c.path, "", c.body); code != 200 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
	got := map[string]listed{}
	for _, l := range d.list(t, "op", "") {
		got[l.ID] = l
	}
	for id, want := range map[string]bool{fire.ID(): true, fire2.ID(): true, done.ID(): false, dup.ID(): false, young.ID(): false, free.ID(): false} {
		if got[id].Overdue != want {
			t.Errorf("report %s overdue %v, want %v", id, got[id].Overdue, want)
		}
	}
	if got[free.ID()].Due != nil || got[fire.ID()].Due == nil || !got[fire.ID()].Due.Equal(hlc.New(1_740_000_000_000, 0).Time().Add(4*time.Hour)) {
		t.Errorf("due: elevator %v, fire %v", got[free.ID()].Due, got[fire.ID()].Due)
	}
	if l := ids(d.list(t, "op", "?overdue=1")); !slices.Equal(l, []string{fire.ID(), fire2.ID()}) {
		t.Errorf("?overdue=1: %v", l)
	}
	// The map's count, by building.
	code, body := d.call(t, "op", "GET", "/api/v1/sites", "", "")
	var sites []siteOut
	if err := json.Unmarshal([]byte(body), &sites); code != 200 || err != nil {
		t.Fatalf("sites: %d %s", code, body)
	}
	i := slices.IndexFunc(sites, func(s siteOut) bool { return s.ID == "s1" })
	if i < 0 || sites[i].Overdue != 2 || sites[i].OverdueByBuilding["B1"] != 1 || sites[i].OverdueByBuilding["B2"] != 1 {
		t.Fatalf("sites: %s, want s1 with 2 overdue (B1 1, B2 1)", body)
	}
	// The metric: every limited category of the site, 0 included.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.OverdueCollector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var series []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			series = append(series, fmt.Sprintf("%s{%s} %g", mf.GetName(), strings.Join(labels, ","), m.GetGauge().GetValue()))
		}
	}
	slices.Sort(series)
	if got, want := strings.Join(series, "\n"), "linli_hub_reports_overdue{category=fire_safety,site=s1} 2\nlinli_hub_reports_overdue{category=noise,site=s1} 0"; got != want {
		t.Fatalf("metrics:\n%s\nwant:\n%s", got, want)
	}
}

// Internal notes stay at the hub: not in the kiosks' view (nor its
// timeline), not in Open311, not on the public status page, not in what
// the API shows without a login. Public replies reach all.
func TestInternalNotesStayAtTheHub(t *testing.T) {
	d := newDash(t, triageSite)
	rep := d.edgeFact(t, "k1", 1, 0, &event.Report{Category: "noise", Title: "t", Building: "B1"})
	for _, b := range []string{
		`{"note":"PUBLIC-1","visibility":"public"}`,
		`{"status":"accepted","note":"SECRET-1","visibility":"internal"}`,
		`{"note":"SECRET-2","visibility":"internal"}`,
	} {
		if code, body := d.call(t, "op", "PATCH", "/api/v1/reports/"+rep.ID(), "", b); code != 200 {
			t.Fatalf("PATCH %s: %d %s", b, code, body)
		}
	}
	if code, body := d.call(t, "op", "PATCH", "/api/v1/reports/"+rep.ID(), "", `{"note":"x","visibility":"secret"}`); code != 400 || errField(t, body) != "visibility" {
		t.Fatalf("an unknown visibility: %d %s, want 400 naming visibility", code, body)
	}
	if code, body := d.call(t, "op", "PATCH", "/api/v1/reports/"+rep.ID(), "", `{"status":"in_progress","visibility":"internal"}`); code != 400 || errField(t, body) != "visibility" {
		t.Fatalf("a visibility without a note: %d %s, want 400 naming visibility", code, body)
	}
	var view merge.ReportView
	d.state.Read(func(m *merge.State) { view, _ = m.ReportView(rep.ID()) })
	viewJSON, _ := json.Marshal(view)
	_, anon := d.call(t, "", "GET", "/api/v1/reports/"+rep.ID(), "", "")
	_, o311 := d.call(t, "", "GET", "/open311/v2/requests/"+rep.ID()+".json", "", "")
	_, o311x := d.call(t, "", "GET", "/open311/v2/requests.xml", "", "")
	_, page := d.call(t, "", "GET", "/r/s1/"+rep.ID(), "", "")
	for name, out := range map[string]string{"kiosk view": string(viewJSON), "anonymous GET": anon, "Open311": o311, "Open311 XML": o311x,
		"public status page": page} {
		if strings.Contains(out, "SECRET") {
			t.Errorf("%s carries an internal note: %s", name, out)
		}
		if !strings.Contains(out, "PUBLIC-1") {
			t.Errorf("%s lacks the public reply: %s", name, out)
		}
	}
	if !strings.Contains(anon, `"accepted"`) {
		t.Errorf("anonymous GET lost the status step of an internal note: %s", anon)
	}
	_, op := d.call(t, "op", "GET", "/api/v1/reports/"+rep.ID(), "", "")
	var det struct {
		Note         string        `json:"note"`
		InternalNote string        `json:"internal_note"`
		History      []historyView `json:"history"`
	}
	if err := json.Unmarshal([]byte(op), &det); err != nil || det.Note != "PUBLIC-1" || det.InternalNote != "SECRET-2" || len(det.History) != 4 {
		t.Fatalf("operator GET: %s", op)
	}
	for i, want := range []string{"", VisibilityPublic, VisibilityInternal, VisibilityInternal} {
		if det.History[i].Visibility != want {
			t.Errorf("history[%d] visibility %q, want %q", i, det.History[i].Visibility, want)
		}
	}
}

func TestUnmergeRoute(t *testing.T) {
	d := newDash(t, triageSite)
	a := d.edgeFact(t, "k1", 1, 0, &event.Report{Category: "noise", Title: "t", Building: "B1"})
	b := d.edgeFact(t, "k1", 2, 1, &event.Report{Category: "noise", Title: "t", Building: "B1"})
	if code, body := d.call(t, "op", "POST", "/api/v1/reports/"+b.ID()+"/unmerge", "", ""); code != 409 {
		t.Fatalf("unmerge a report never merged: %d %s, want 409", code, body)
	}
	if code, body := d.call(t, "op", "POST", "/api/v1/reports/"+b.ID()+"/merge", "", `{"into":"`+a.ID()+`"}`); code != 200 {
		t.Fatalf("merge: %d %s", code, body)
	}
	code, body := d.call(t, "op", "POST", "/api/v1/reports/"+b.ID()+"/unmerge", "", "")
	var det struct {
		MergedInto string        `json:"merged_into"`
		History    []historyView `json:"history"`
	}
	if err := json.Unmarshal([]byte(body), &det); code != 200 || err != nil || det.MergedInto != "" {
		t.Fatalf("unmerge: %d %s", code, body)
	}
	last := det.History[len(det.History)-1]
	if last.Event != merge.HistoryUnmerged || last.Note != a.ID() || last.WhoName != "张主任" {
		t.Fatalf("last step %+v, want unmerged from %s by 张主任", last, a.ID())
	}
}
