package kiosk

import (
	"cmp"
	"net/http"
	"time"

	"linli/edge/api"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// Info is what the kiosk UI needs to know about the kiosk it runs on.
type Info struct {
	Device      string
	Site        string
	Building    string        // the lobby's building: the default of a report's building
	IdleTimeout time.Duration // the UI forgets the resident after this long idle
	Version     string
	TimeZone    string // the site's: the UI shows alarm times in it
	// Plan is the site's buildings and one-tap report choices; nil when
	// the kiosk has no site plan (the building is then typed, unchecked).
	Plan *Plan

	// Following reports up: where the QR codes point (the hub's public
	// address; "" shows no QR code), how long after its resolution a
	// report may be reopened here, and the property office's phone
	// number for the one-touch call button ("" hides it).
	PublicURL    string
	ReopenWindow time.Duration
	OfficePhone  string
	Code         string // this kiosk's code in report numbers
}

// Residents answers what one resident did at this kiosk (see Index).
type Residents interface {
	// Reports, Checkins and Ratings list resident's entries newest first;
	// an error means the store could not be read.
	Reports(resident string) ([]IndexedReport, error)
	Checkins(resident string) ([]IndexedCheckin, error)
	Ratings(resident string) ([]IndexedRating, error)
	// Seen and MarkSeen keep when the resident last looked at their
	// reports here (zero: never).
	Seen(resident string) (time.Time, error)
	MarkSeen(resident string, t time.Time) error
}

var _ Residents = (*Index)(nil)

// maxMine bounds a resident's listings: a kiosk screen shows a few dozen
// at most, and the oldest matter least.
const maxMine = 50

// getKiosk answers the kiosk's own settings, so the UI needs no
// configuration of its own.
func (a *Handlers) getKiosk(w http.ResponseWriter, r *http.Request) error {
	info := a.Kiosk
	if info == nil {
		info = &Info{IdleTimeout: 60 * time.Second}
	}
	plan := info.Plan
	if plan == nil {
		plan = &Plan{}
	}
	if plan.Buildings == nil {
		plan = &Plan{Buildings: []PlanBuilding{}, Choices: plan.Choices}
	}
	if plan.Choices == nil {
		plan = &Plan{Buildings: plan.Buildings, Choices: map[string][]Choice{}}
	}
	reopen := cmp.Or(info.ReopenWindow, DefaultReopenWindow)
	httpx.WriteJSON(w, http.StatusOK, struct {
		Device        string   `json:"device"`
		Site          string   `json:"site"`
		Building      string   `json:"building"`
		IdleTimeoutMS int64    `json:"idle_timeout_ms"`
		Version       string   `json:"version"`
		Categories    []string `json:"categories"`
		TimeZone      string   `json:"time_zone"`
		// Extensions: the site's buildings to pick from and the common
		// problems per category; empty without a site plan.
		Buildings []PlanBuilding      `json:"buildings"`
		Choices   map[string][]Choice `json:"report_choices"`

		OfficePhone string  `json:"office_phone,omitempty"`
		ReopenDays  float64 `json:"reopen_days"`
		QR          bool    `json:"qr"` // report QR codes are served
		Code        string  `json:"code,omitempty"`
	}{info.Device, info.Site, info.Building, info.IdleTimeout.Milliseconds(), info.Version, event.Categories,
		cmp.Or(info.TimeZone, "Asia/Shanghai"), plan.Buildings, plan.Choices, info.OfficePhone, reopen.Hours() / 24, info.PublicURL != "", info.Code})
	return nil
}

func (a *Handlers) residents() (Residents, error) {
	if a.Residents == nil {
		return nil, api.ErrNoIndex
	}
	return a.Residents, nil
}

// MyReport is a report as the kiosk shows it to the resident who filed it
// here ("filed") or said "me too" to it ("voted").
type MyReport struct {
	replica.Report
	Mine string `json:"mine"`
	// Changed: the report changed since the resident last looked at
	// their reports here (POST /api/v1/reports/seen).
	Changed bool `json:"changed,omitempty"`
	// Reopenable: resolved, not merged, and still inside the kiosk's
	// reopen window; ReopenUntil is the window's end.
	Reopenable  bool       `json:"reopenable,omitempty"`
	ReopenUntil *time.Time `json:"reopen_until,omitempty"`
}

// getResidentReports lists the reports resident filed or voted for here,
// newest first, each as last synced (or as filed, before the hub answered),
// filtered like the other report listing.
func (a *Handlers) getResidentReports(w http.ResponseWriter, resident, category, building string, open bool) error {
	idx, err := a.residents()
	if err != nil {
		return err
	}
	refs, err := idx.Reports(resident)
	if err != nil {
		return err
	}
	seen, err := idx.Seen(resident)
	if err != nil {
		return err
	}
	window := DefaultReopenWindow
	if a.Kiosk != nil && a.Kiosk.ReopenWindow > 0 {
		window = a.Kiosk.ReopenWindow
	}
	out := []MyReport{}
	for _, ref := range refs {
		if len(out) == maxMine || a.Replica == nil {
			break
		}
		ro, ok, err := a.Replica.Report(ref.ID)
		if err != nil {
			return err
		}
		if !ok {
			continue // voted for a report this kiosk no longer holds
		}
		if (category != "" && ro.Category != category) || (building != "" && ro.Building != building) ||
			(open && (ro.Status == event.ReportResolved || ro.Status == event.ReportRejected)) {
			continue
		}
		mine := "filed"
		if ref.Voted {
			mine = "voted"
		}
		m := MyReport{Report: ro, Mine: mine}
		m.Changed = ro.Synced && changedSince(ro.Steps, seen)
		if at := resolvedAt(&ro.ReportView); ro.Status == event.ReportResolved && ro.MergedInto == "" && !at.IsZero() {
			until := at.Add(window).UTC()
			m.Reopenable, m.ReopenUntil = time.Now().Before(until), &until
		}
		out = append(out, m)
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// getCheckins lists ?resident='s last check-in or -out per activity here.
func (a *Handlers) getCheckins(w http.ResponseWriter, r *http.Request) error {
	return listMine(a, w, r, Residents.Checkins)
}

// getRatings lists ?resident='s latest rating per target here.
func (a *Handlers) getRatings(w http.ResponseWriter, r *http.Request) error {
	return listMine(a, w, r, Residents.Ratings)
}

// listMine answers with what list gives for ?resident= from the index.
func listMine[T any](a *Handlers, w http.ResponseWriter, r *http.Request, list func(Residents, string) ([]T, error)) error {
	resident, err := a.ResidentParam(r)
	if err != nil {
		return err
	}
	idx, err := a.residents()
	if err != nil {
		return err
	}
	v, err := list(idx, resident)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, nonNil(v))
	return nil
}

// nonNil makes an empty listing [] rather than null.
func nonNil[T any](v []T) []T {
	if len(v) > maxMine {
		v = v[:maxMine]
	}
	if v == nil {
		return []T{}
	}
	return v
}

// changedSince tells whether the office moved a report on after seen:
// filing and reopening are what residents did themselves, so they do
// not count.
func changedSince(steps []merge.ReportStep, seen time.Time) bool {
	for i := len(steps) - 1; i >= 0; i-- {
		switch steps[i].Event {
		case merge.HistoryCreated, merge.HistoryReopened:
			continue
		}
		return steps[i].HLC.Time().After(seen)
	}
	return false
}
