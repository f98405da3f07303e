package api

import (
	"net/http"
	"slices"
	"time"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// alarmView is an alarm as the hub API serves it: the merged view with its
// times as wall-clock times and its age.
type alarmView struct {
	merge.AlarmView
	Since     time.Time  `json:"since"` // first raise of the current (or last) episode
	AgeSec    float64    `json:"age_seconds"`
	AckedTime *time.Time `json:"acked_at,omitempty"`
	ClearedAt *time.Time `json:"source_cleared_at,omitempty"`
	ClosedAt  *time.Time `json:"cleared_at,omitempty"`
}

func newAlarmView(al merge.AlarmView) alarmView {
	at := func(ts hlc.Timestamp) *time.Time {
		if ts == 0 {
			return nil
		}
		t := ts.Time()
		return &t
	}
	return alarmView{AlarmView: al, Since: al.First.Time(), AgeSec: time.Since(al.First.Time()).Round(time.Second).Seconds(),
		AckedTime: at(al.AckedAt), ClearedAt: at(al.Cleared), ClosedAt: at(al.Closed)}
}

// alarmFilter is what GET /api/v1/alarms and its history narrow by.
type alarmFilter struct {
	sites          []string // "" is every site the caller sees
	building, kind string
	from, to       time.Time // history only; zero: unbounded
}

func (a *API) parseAlarmFilter(r *http.Request, history bool) (alarmFilter, error) {
	q := r.URL.Query()
	sites, err := a.Scope(r, q.Get("site"))
	if err != nil {
		return alarmFilter{}, err
	}
	f := alarmFilter{sites: sites, building: q.Get("building"), kind: q.Get("kind")}
	if f.building != "" {
		if err := event.ValidID(f.building); err != nil {
			return f, httpx.BadRequest("building", "building %v", err)
		}
	}
	if f.kind != "" && !slices.Contains(event.AlarmKinds, f.kind) {
		return f, httpx.BadRequest("kind", "kind %q is not one of %v", f.kind, event.AlarmKinds)
	}
	if history {
		for _, p := range []struct {
			name string
			to   *time.Time
		}{{"from", &f.from}, {"to", &f.to}} {
			if v := q.Get(p.name); v != "" {
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return f, httpx.BadRequest(p.name, "%s must be an RFC 3339 time such as 2026-12-06T09:10:00+08:00", p.name)
				}
				*p.to = t
			}
		}
	}
	return f, nil
}

func (f alarmFilter) match(al merge.AlarmView) bool {
	return (f.building == "" || al.Building == f.building) && (f.kind == "" || al.Kind == f.kind)
}

// listAlarms serves the open alarms (raised and not yet cleared by an
// operator, whether or not their source still reports them), most severe
// first, then oldest first (?site=&building=&kind=).
func (a *API) listAlarms(w http.ResponseWriter, r *http.Request) error {
	f, err := a.parseAlarmFilter(r, false)
	if err != nil {
		return err
	}
	var open []merge.AlarmView
	a.State.Read(func(m *merge.State) {
		for _, s := range f.sites { // "" is every site
			open = append(open, m.OpenAlarms(s)...)
		}
	})
	slices.SortStableFunc(open, merge.CompareAlarms)
	out := []alarmView{}
	for _, al := range open {
		if f.match(al) {
			out = append(out, newAlarmView(al))
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

type transitionOut struct {
	merge.AlarmTransition
	At time.Time `json:"at"`
}

type alarmRecordOut struct {
	alarmView
	Transitions []transitionOut `json:"transitions"`
}

// alarmHistory serves every alarm, open or closed, with its transitions
// (?site=&building=&kind=&from=&to=): an alarm is listed when one of its
// transitions falls between from and to.
func (a *API) alarmHistory(w http.ResponseWriter, r *http.Request) error {
	f, err := a.parseAlarmFilter(r, true)
	if err != nil {
		return err
	}
	from, to := hlc.FromTime(f.from), hlc.FromTime(f.to)
	inWindow := func(tr []merge.AlarmTransition) bool {
		return slices.ContainsFunc(tr, func(t merge.AlarmTransition) bool {
			return (f.from.IsZero() || t.At >= from) && (f.to.IsZero() || t.At <= to)
		})
	}
	out := []alarmRecordOut{}
	a.State.Read(func(m *merge.State) {
		for _, rec := range m.AlarmHistory(func(al merge.AlarmView, tr []merge.AlarmTransition) bool {
			return (slices.Contains(f.sites, "") || slices.Contains(f.sites, al.Site)) && f.match(al) && inWindow(tr)
		}) {
			o := alarmRecordOut{alarmView: newAlarmView(rec.AlarmView), Transitions: []transitionOut{}}
			for _, t := range rec.Transitions {
				o.Transitions = append(o.Transitions, transitionOut{AlarmTransition: t, At: t.At.Time()})
			}
			out = append(out, o)
		}
	})
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
