package api

import (
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"linli/hub/stream"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/httpx"
	"linli/shared/merge"
	"linli/shared/wire"
)

// Routes for the operator dashboard (hub/web) beyond the contract's:
//
//	GET  /api/v1/stream                          live events (SSE), served by hub/stream
//	GET  /api/v1/sites                           sites in the caller's scope, with names and plans
//	GET  /api/v1/sites/{site}/buildings/{b}      a building: reports, alarms, doors, sensors, devices
//	POST /api/v1/alarms/{id}/ack                 {"note"}: acknowledge an alarm's current episode
//	POST /api/v1/alarms/{id}/clear               {"note"}: clear it once its source has (409 before)
//	POST /api/v1/reports/{id}/merge              {"into","note"}: merge a duplicate into a report
//	GET  /api/v1/activities/{id}/attendance.csv  attendance and volunteer hours
//	GET  /api/v1/ratings?site=&bucket=day|week   ratings per category, per activity, over time
//	GET  /api/v1/notices/{id}/delivery           which kiosks hold the notice
func (a *API) mountDashboard(mux *http.ServeMux) {
	if a.Stream != nil {
		mux.HandleFunc("GET /api/v1/stream", a.wrap(a.requireAuth(a.stream)))
	}
	mux.HandleFunc("GET /api/v1/sites", a.wrap(a.requireAuth(a.listSites)))
	mux.HandleFunc("GET /api/v1/district", a.wrap(a.requireAuth(a.district)))
	mux.HandleFunc("GET /api/v1/sites/{site}/buildings/{building}", a.wrap(a.requireAuth(a.building)))
	mux.HandleFunc("POST /api/v1/alarms/{id}/ack", a.wrap(a.requireAuth(a.alarmDecision(false))))
	mux.HandleFunc("POST /api/v1/alarms/{id}/clear", a.wrap(a.requireAuth(a.alarmDecision(true))))
	mux.HandleFunc("POST /api/v1/reports/{id}/merge", a.wrap(a.requireAuth(a.mergeReport)))
	mux.HandleFunc("GET /api/v1/activities/{id}/attendance.csv", a.wrap(a.requireAuth(a.attendanceCSV)))
	mux.HandleFunc("GET /api/v1/ratings", a.wrap(a.requireAuth(a.ratings)))
	mux.HandleFunc("GET /api/v1/notices/{id}/delivery", a.wrap(a.requireAuth(a.noticeDelivery)))
}

// stream serves GET /api/v1/stream: the live events of the sites in the
// caller's scope (?site= narrows it), filtered by ?kind=, ?building=,
// ?device= (see stream.ParseFilter).
func (a *API) stream(w http.ResponseWriter, r *http.Request) error {
	sites, err := a.Scope(r, r.URL.Query().Get("site"))
	if err != nil {
		return err
	}
	return a.Stream.Serve(w, r, stream.ParseFilter(r, sites))
}

// Delivery knows how far each site's downlink log has got.
type Delivery interface {
	// Seq is the change seq of a site-wide entity's newest version.
	Seq(site, entity, id string) (uint64, bool)
}

// Telemetry keeps the latest state of every door and sensor the hub hears
// of, for the building view. It lives in memory: after a restart it fills
// again as gateways report (readings are telemetry, never merged state).
type Telemetry struct {
	mu      sync.Mutex
	doors   map[string]map[string]DoorState   // site → door → state
	sensors map[string]map[string]SensorState // site → sensor → state
}

// DoorState is a door's last access event.
type DoorState struct {
	Door     string    `json:"door"`
	Building string    `json:"building,omitempty"`
	Device   string    `json:"device"`
	Result   string    `json:"result"`
	Reason   string    `json:"reason,omitempty"`
	Time     time.Time `json:"time"`
}

// SensorState is a sensor's last reading or alarm.
type SensorState struct {
	Sensor   string    `json:"sensor"`
	Building string    `json:"building,omitempty"`
	Device   string    `json:"device"`
	Kind     string    `json:"kind"`
	Value    float64   `json:"value"`
	Alarm    bool      `json:"alarm"`
	Time     time.Time `json:"time"`
}

// NewTelemetry returns an empty tracker.
func NewTelemetry() *Telemetry {
	return &Telemetry{doors: map[string]map[string]DoorState{}, sensors: map[string]map[string]SensorState{}}
}

// Observe is an ingest OnEvents hook.
func (t *Telemetry) Observe(site string, evs []event.Event) {
	for i := range evs {
		ev := &evs[i]
		if ev.Kind != event.KindAccess && ev.Kind != event.KindReading && ev.Kind != event.KindAlarm {
			continue
		}
		body, err := ev.Decode()
		if err != nil {
			continue
		}
		at := ev.HLC.Time().UTC()
		t.mu.Lock()
		switch b := body.(type) {
		case *event.Access:
			m := t.doors[site]
			if m == nil {
				m = map[string]DoorState{}
				t.doors[site] = m
			}
			if old, ok := m[b.Door]; !ok || !old.Time.After(at) {
				m[b.Door] = DoorState{Door: b.Door, Building: b.Building, Device: ev.Device, Result: b.Result, Reason: b.Reason, Time: at}
			}
		case *event.Reading:
			t.sensor(site, SensorState{Sensor: b.Sensor, Building: b.Building, Device: ev.Device, Kind: b.Type, Value: b.Value, Time: at})
		case *event.Alarm:
			t.sensor(site, SensorState{Sensor: b.Sensor, Building: b.Building, Device: ev.Device, Kind: b.Type, Value: b.Value, Alarm: b.Active, Time: at})
		}
		t.mu.Unlock()
	}
}

// sensor records s unless a newer state is known. Callers hold mu.
func (t *Telemetry) sensor(site string, s SensorState) {
	m := t.sensors[site]
	if m == nil {
		m = map[string]SensorState{}
		t.sensors[site] = m
	}
	if old, ok := m[s.Sensor]; !ok || !old.Time.After(s.Time) {
		m[s.Sensor] = s
	}
}

func (t *Telemetry) building(site, building string) (doors []DoorState, sensors []SensorState) {
	doors, sensors = []DoorState{}, []SensorState{}
	if t == nil {
		return doors, sensors
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, d := range t.doors[site] {
		if d.Building == building || d.Building == "" && strings.HasPrefix(d.Door, building+"-") {
			doors = append(doors, d)
		}
	}
	for _, s := range t.sensors[site] {
		if s.Building == building || s.Building == "" && strings.HasPrefix(s.Sensor, building+"-") {
			sensors = append(sensors, s)
		}
	}
	slices.SortFunc(doors, func(x, y DoorState) int { return strings.Compare(x.Door, y.Door) })
	slices.SortFunc(sensors, func(x, y SensorState) int { return strings.Compare(x.Sensor, y.Sensor) })
	return doors, sensors
}

type siteOut struct {
	ID     string    `json:"id"`
	Name   string    `json:"name,omitempty"`
	NameEn string    `json:"name_en,omitempty"`
	Plan   *SitePlan `json:"plan,omitempty"` // nil: the dashboard lays buildings out itself
	// TimeZone is the zone the site's times are shown in (IANA name).
	TimeZone string `json:"time_zone"`
	// Overdue counts open reports past their time limit, in all and by
	// building (sla: in the site plan).
	Overdue           int            `json:"overdue"`
	OverdueByBuilding map[string]int `json:"overdue_by_building,omitempty"`
}

// DefaultTimeZone is the zone of a site whose plan names none and of a hub
// given no --time-zone.
const DefaultTimeZone = "Asia/Shanghai"

// siteZone is the zone site's times are shown in: its plan's, else the
// hub's, else DefaultTimeZone.
func (a *API) siteZone(site string) *time.Location {
	name := a.TimeZone
	if p, ok := a.Plans[site]; ok && p.TimeZone != "" {
		name = p.TimeZone
	}
	if name == "" {
		name = DefaultTimeZone
	}
	loc, err := time.LoadLocation(name)
	if err != nil { // checked at start: only a zone removed since
		a.Logger.Warn("time zone", "site", site, "zone", name, "err", err)
		return time.UTC
	}
	return loc
}

// knownSites is every site this hub knows of: those with a plan, those
// the merged state holds, those devices belong to (enrolled or seen).
func (a *API) knownSites() map[string]bool {
	seen := map[string]bool{}
	for id := range a.Plans {
		seen[id] = true
	}
	a.State.Read(func(m *merge.State) {
		for _, s := range m.Sites() {
			seen[s] = true
		}
	})
	if a.Devices != nil {
		for _, d := range a.Devices.Devices() {
			seen[d.Site] = true
		}
	}
	if a.Enrollment != nil {
		for _, d := range a.Enrollment.List() {
			seen[d.Site] = true
		}
	}
	delete(seen, "")
	return seen
}

// listSites names every site the caller may see: those with a plan, those
// the merged state holds, those devices belong to.
func (a *API) listSites(w http.ResponseWriter, r *http.Request) error {
	p, err := a.Caller(r)
	if err != nil {
		return err
	}
	seen := a.knownSites()
	for _, s := range p.Sites {
		seen[s] = true // a scoped operator sees their sites even before anything happened there
	}
	out := []siteOut{}
	overdue := a.overdueByBuilding(time.Now())
	for id := range seen {
		if id == "" || !p.Sees(id) {
			continue
		}
		o := siteOut{ID: id, TimeZone: a.siteZone(id).String(), OverdueByBuilding: overdue[id]}
		for _, n := range overdue[id] {
			o.Overdue += n
		}
		if plan, ok := a.Plans[id]; ok {
			o.Name, o.NameEn, o.Plan = plan.Name, plan.NameEn, &plan
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(x, y siteOut) int { return strings.Compare(x.ID, y.ID) })
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

type buildingOut struct {
	Site     string          `json:"site"`
	Building string          `json:"building"`
	Plan     *PlanBuilding   `json:"plan,omitempty"`
	Reports  []reportSummary `json:"reports"`
	Alarms   []alarmView     `json:"alarms"`
	Doors    []DoorState     `json:"doors"`
	Sensors  []SensorState   `json:"sensors"`
	Access   []accessDoorOut `json:"access_list"`
}

func (a *API) building(w http.ResponseWriter, r *http.Request) error {
	site, building, err := siteBuilding(r)
	if err != nil {
		return err
	}
	if err := a.CheckSite(r, site); err != nil {
		return err
	}
	out := buildingOut{Site: site, Building: building, Reports: []reportSummary{}, Alarms: []alarmView{}, Access: []accessDoorOut{}}
	if plan, ok := a.Plans[site]; ok {
		if b, ok := plan.Building(building); ok {
			out.Plan = &b
		}
	}
	now := time.Now()
	a.State.Read(func(m *merge.State) {
		for _, rep := range m.Reports(site) {
			if rep.Building == building {
				out.Reports = append(out.Reports, a.summarize(rep, now))
			}
		}
		for _, al := range m.OpenAlarms(site) {
			if al.Building == building {
				out.Alarms = append(out.Alarms, newAlarmView(al))
			}
		}
		for _, l := range m.AccessLists(site) {
			if l.Building == building {
				out.Access = summarizeAccess(l).Doors
			}
		}
	})
	out.Doors, out.Sensors = a.Telemetry.building(site, building)
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// alarmDecision records an operator's acknowledgement or clear of an
// alarm named by its id (site:source:kind, see merge.AlarmID).
func (a *API) alarmDecision(clear bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		var req struct {
			Note string `json:"note"`
		}
		if r.ContentLength != 0 {
			if err := httpx.Decode(w, r, &req); err != nil {
				return err
			}
		}
		var al merge.AlarmView
		var err error
		a.State.Read(func(m *merge.State) { al, err = m.Alarm(id) })
		if errors.Is(err, merge.ErrNotFound) {
			return errNoSuch("alarm", id)
		}
		if err != nil {
			return err
		}
		if err := a.seeOrNoSuch(r, al.Site, "alarm", id); err != nil {
			return err
		}
		p, err := a.Caller(r)
		if err != nil {
			return err
		}
		// The merge would ignore either decision here too (it refolds in
		// key order); saying so spares the operator a silent no-op.
		switch {
		case clear && al.Active:
			return &httpx.Error{Status: http.StatusConflict,
				Msg: "the alarm's source still reports " + al.Kind + "; it can be cleared once the source has cleared (acknowledge it meanwhile)"}
		case !al.Open:
			return &httpx.Error{Status: http.StatusConflict, Msg: "alarm " + id + " is already cleared"}
		}
		ack := event.AlarmAck{Site: al.Site, Source: al.Source, Type: al.Kind, Who: p.Name, Note: strings.TrimSpace(req.Note)}
		var body event.Body = &ack
		if clear {
			c := event.AlarmClear(ack)
			body = &c
		}
		if _, err := a.State.Record(body); err != nil {
			return a.recordError(err)
		}
		a.State.Read(func(m *merge.State) { al, err = m.Alarm(id) })
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, newAlarmView(al))
		return nil
	}
}

func (a *API) mergeReport(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req struct {
		Into string `json:"into"`
		Note string `json:"note"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	p, err := a.Caller(r)
	if err != nil {
		return err
	}
	m := &event.ReportMerge{Report: id, Into: strings.TrimSpace(req.Into), Who: p.Name, Note: strings.TrimSpace(req.Note)}
	if err := m.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	if err := a.seeOrNoSuch(r, a.reportSite(id), "report", id); err != nil {
		return err
	}
	if err := a.seeOrNoSuch(r, a.reportSite(m.Into), "report", m.Into); err != nil {
		var he *httpx.Error
		if errors.As(err, &he) {
			he.Field = "into"
		}
		return err
	}
	var cerr error
	a.State.Read(func(st *merge.State) { cerr = st.CheckMerge(m) })
	if cerr != nil {
		return inField("into", cerr)
	}
	if _, err := a.State.Record(m); err != nil {
		return a.recordError(err)
	}
	r.SetPathValue("id", m.Into)
	return a.getReport(w, r)
}

// csvText is the words of an attendance export in one language.
type csvText struct {
	header  []string
	status  map[string]string
	yes, no string
}

// csvWords holds the export's words by ?lang=, the dashboard's languages.
var csvWords = map[string]csvText{
	"zh-CN": {
		header: []string{"活动编号", "活动名称", "居民", "状态", "候补序号", "已到场签到", "首次签到时间", "已签退", "时长（小时）", "已报名"},
		status: map[string]string{"confirmed": "已确认", "waitlisted": "候补", "recorded": "待确认"},
		yes:    "是", no: "否",
	},
	"en": {
		header: []string{"Activity", "Title", "Resident", "Status", "Waitlist place", "Checked in", "First check-in", "Checked out", "Hours", "Signed up"},
		status: map[string]string{"confirmed": "confirmed", "waitlisted": "waitlisted", "recorded": "recorded"},
		yes:    "yes", no: "no",
	},
}

// attendanceCSV exports an activity's residents for the organisers'
// records: spreadsheet programs open it as is (UTF-8 with a BOM).
func (a *API) attendanceCSV(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := event.ValidID(id); err != nil {
		return httpx.BadRequest("id", "id %v", err)
	}
	var act merge.Activity
	var rows []merge.AttendanceRow
	var err error
	a.State.Read(func(m *merge.State) {
		if act, err = m.Activity(id); err == nil {
			rows, err = m.Attendance(id)
		}
	})
	if errors.Is(err, merge.ErrNotFound) {
		return errNoSuch("activity", id)
	}
	if err != nil {
		return err
	}
	if err := a.seeOrNoSuch(r, act.Site, "activity", id); err != nil {
		return err
	}
	lang := r.URL.Query().Get("lang")
	words, ok := csvWords[lang]
	if lang == "" {
		words, ok = csvWords["zh-CN"], true
	}
	if !ok {
		return &httpx.Error{Status: http.StatusBadRequest, Field: "lang", Code: event.CodeNotAllowed, Msg: "lang must be zh-CN or en"}
	}
	zone := a.siteZone(act.Site)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="attendance-%s.csv"`, id))
	if _, err := w.Write([]byte("\ufeff")); err != nil {
		return nil
	}
	cw := csv.NewWriter(w)
	// 已到场签到 / Checked in is attendance inside the check-in window
	// (到场签到); 已报名 / Signed up a check-in before it (报名), which is
	// not attendance.
	rec := [][]string{words.header}
	yes := func(b bool) string {
		if b {
			return words.yes
		}
		return words.no
	}
	for _, row := range rows {
		status := "waitlisted"
		if row.Confirmed {
			status = "confirmed"
		} else if row.Waitlist == 0 {
			status = "recorded"
		}
		first := ""
		if row.FirstIn != 0 {
			// The site's wall clock with its offset: what the organisers'
			// watches said, and still one instant for a program.
			first = row.FirstIn.Time().In(zone).Format("2006-01-02 15:04:05 -07:00")
		}
		place := ""
		if row.Waitlist > 0 {
			place = strconv.Itoa(row.Waitlist)
		}
		rec = append(rec, []string{act.ID, act.Title, row.Resident, words.status[status], place, yes(row.Attended),
			first, yes(row.Left), strconv.FormatFloat(float64(row.Millis)/3.6e6, 'f', 2, 64), yes(row.SignedUp)})
	}
	if err := cw.WriteAll(rec); err != nil {
		a.Logger.Warn("write attendance csv", "err", err)
	}
	return nil
}

type ratingAgg struct {
	Key   string  `json:"key"`
	Title string  `json:"title,omitempty"`
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	Dist  [5]int  `json:"dist"` // how many gave 1..5
}

func (g *ratingAgg) add(score int) {
	g.Mean = (g.Mean*float64(g.Count) + float64(score)) / float64(g.Count+1)
	g.Count++
	if score >= 1 && score <= 5 {
		g.Dist[score-1]++
	}
}

type ratingsOut struct {
	Bucket     string              `json:"bucket"`
	Overall    ratingAgg           `json:"overall"`
	ByCategory []ratingAgg         `json:"by_category"`
	ByActivity []ratingAgg         `json:"by_activity"`
	OverTime   []ratingAgg         `json:"over_time"` // Key: the period's first day (YYYY-MM-DD)
	Recent     []merge.RatingPoint `json:"recent"`    // newest first, with comments
}

// ratings aggregates residents' latest ratings (居民评价).
func (a *API) ratings(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	sites, err := a.Scope(r, q.Get("site"))
	if err != nil {
		return err
	}
	bucket := q.Get("bucket")
	if bucket == "" {
		bucket = "week"
	}
	if bucket != "day" && bucket != "week" && bucket != "month" {
		return httpx.BadRequest("bucket", "bucket must be day, week or month")
	}
	// Periods are the site's days, weeks and months (a rating at 07:00 in
	// Shanghai is that day's, not the day before's as in UTC); across
	// several sites, the hub's zone.
	zone := a.siteZone("")
	if len(sites) == 1 {
		zone = a.siteZone(sites[0])
	}
	var pts []merge.RatingPoint
	a.State.Read(func(m *merge.State) {
		for _, s := range sites {
			pts = append(pts, m.RatingPoints(s)...)
		}
	})
	out := ratingsOut{Bucket: bucket, Overall: ratingAgg{Key: "all"}, ByCategory: []ratingAgg{}, ByActivity: []ratingAgg{},
		OverTime: []ratingAgg{}, Recent: []merge.RatingPoint{}}
	cats, acts, periods := map[string]*ratingAgg{}, map[string]*ratingAgg{}, map[string]*ratingAgg{}
	get := func(m map[string]*ratingAgg, k, title string) *ratingAgg {
		g := m[k]
		if g == nil {
			g = &ratingAgg{Key: k, Title: title}
			m[k] = g
		}
		return g
	}
	for _, p := range pts {
		out.Overall.add(p.Score)
		if p.Report {
			get(cats, p.Category, "").add(p.Score)
		} else {
			get(acts, p.Target, p.Title).add(p.Score)
		}
		get(periods, period(p.HLC, bucket, zone), "").add(p.Score)
	}
	flat := func(m map[string]*ratingAgg) []ratingAgg {
		out := []ratingAgg{}
		for _, g := range m {
			g.Mean = math.Round(g.Mean*100) / 100
			out = append(out, *g)
		}
		slices.SortFunc(out, func(x, y ratingAgg) int { return strings.Compare(x.Key, y.Key) })
		return out
	}
	out.ByCategory, out.ByActivity, out.OverTime = flat(cats), flat(acts), flat(periods)
	out.Overall.Mean = math.Round(out.Overall.Mean*100) / 100
	slices.SortFunc(pts, func(x, y merge.RatingPoint) int { return int(y.HLC) - int(x.HLC) })
	for _, p := range pts {
		if len(out.Recent) == 20 {
			break
		}
		out.Recent = append(out.Recent, p)
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// period names the day, ISO week (its Monday) or month a rating falls in,
// in zone, the community's.
func period(ts hlc.Timestamp, bucket string, zone *time.Location) string {
	t := ts.Time().In(zone)
	switch bucket {
	case "day":
	case "month":
		t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, t.Location())
	default:
		t = t.AddDate(0, 0, -((int(t.Weekday()) + 6) % 7))
	}
	return t.Format("2006-01-02")
}

type deliveryOut struct {
	Notice  merge.NoticeView `json:"notice"`
	Seq     uint64           `json:"seq"` // the notice's change in the site's downlink log
	Kiosks  []kioskDelivery  `json:"kiosks"`
	Held    int              `json:"received"`
	Missing int              `json:"missing"`
}

type kioskDelivery struct {
	Device   string     `json:"device"`
	Online   bool       `json:"online"`
	LastSeen *time.Time `json:"last_seen"`
	Cursor   uint64     `json:"down_cursor"`
	Received bool       `json:"received"`
}

// noticeDelivery tells which kiosks of the notice's site hold its newest
// version: those whose downlink cursor has reached its change.
func (a *API) noticeDelivery(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var n merge.NoticeView
	var err error
	a.State.Read(func(m *merge.State) { n, err = m.Notice(id) })
	if errors.Is(err, merge.ErrNotFound) {
		return errNoSuch("notice", id)
	}
	if err != nil {
		return err
	}
	if err := a.seeOrNoSuch(r, n.Site, "notice", id); err != nil {
		return err
	}
	out := deliveryOut{Notice: n, Kiosks: []kioskDelivery{}}
	seq, known := uint64(0), false
	if a.Delivery != nil {
		seq, known = a.Delivery.Seq(n.Site, wire.EntityNotice, n.ID)
	}
	out.Seq = seq
	for _, d := range a.Devices.Devices() {
		if d.Site != n.Site || d.Role != "kiosk" {
			continue
		}
		v := viewDevice(d)
		k := kioskDelivery{Device: d.ID, Online: d.Online, LastSeen: v.LastSeen, Cursor: d.Down, Received: known && d.Down >= seq}
		if k.Received {
			out.Held++
		} else {
			out.Missing++
		}
		out.Kiosks = append(out.Kiosks, k)
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
