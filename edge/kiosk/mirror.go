package kiosk

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"linli/edge/api"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/wire"
)

// LocalAnswers tells what this kiosk answered a resident itself (a check-in
// the hub may not have seen yet).
type LocalAnswers interface {
	Mine(activity, resident string) (string, error)
	Attended(activity, resident string) (known, attended bool, err error)
	// Unseen counts seats this kiosk gave that v does not list yet.
	Unseen(v *merge.ActivityView) (uint32, error)
}

// OwnEvents reads events this edge recorded and still holds.
type OwnEvents interface {
	Device() string
	Read(after uint64, maxEvents, maxBytes int) ([]event.Event, error)
}

// Mirror answers the API's reads from the replica: what the hub last sent
// down, plus what this kiosk did itself since.
type Mirror struct {
	Rep      *replica.Replica
	Mine     LocalAnswers // optional
	Own      OwnEvents    // optional
	Building string       // notices for other buildings are not shown here
	// Now is the kiosk's clock for what a check-in is now (sign-up,
	// attendance, ended); nil is time.Now.
	Now func() time.Time
	// AlarmKinds are the alarm kinds residents see here (nil:
	// DefaultAlarmKinds).
	AlarmKinds []string
}

var _ api.Replica = (*Mirror)(nil)

func decodeAll[T any](rep *replica.Replica, entity string) ([]T, error) {
	cs, err := rep.List(entity)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(cs))
	for _, c := range cs {
		var v T
		if err := event.UnmarshalOwn(c.Body, &v); err != nil {
			return nil, fmt.Errorf("%s %s: %w", entity, c.ID, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// legacyAlarmNotice starts the ids of the notices a hub once sent for
// alarms; a replica may still hold some.
const legacyAlarmNotice = "alarm-"

// Notices lists the notices in force for this kiosk's building, safety
// first (alarms before other safety notices), then newest first.
func (m *Mirror) Notices(now time.Time) ([]replica.Notice, error) {
	all, err := decodeAll[merge.NoticeView](m.Rep, wire.EntityNotice)
	if err != nil {
		return nil, err
	}
	ts := hlc.FromTime(now)
	out := []replica.Notice{}
	for _, n := range all {
		if !n.InForce(ts) || (m.Building != "" && len(n.Buildings) > 0 && !slices.Contains(n.Buildings, m.Building)) {
			continue
		}
		if strings.HasPrefix(n.ID, legacyAlarmNotice) {
			continue // alarms are served as alarms (Alarms) now
		}
		o := replica.Notice{NoticeView: n, Time: n.Updated.Time()}
		if n.Expires != 0 {
			t := time.UnixMilli(n.Expires).UTC()
			o.Expires = &t
		}
		out = append(out, o)
	}
	rank := func(n replica.Notice) int {
		switch {
		case n.Alarm:
			return 0
		case n.Category == "safety":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(out, func(a, b replica.Notice) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		return cmp.Compare(b.Updated, a.Updated)
	})
	return out, nil
}

// Activities lists the activities last synced, with resident's standing
// when resident is set.
func (m *Mirror) Activities(resident string) ([]replica.Activity, error) {
	all, err := decodeAll[merge.ActivityView](m.Rep, wire.EntityActivity)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	at := now().UnixMilli()
	out := []replica.Activity{}
	for _, v := range all {
		o := replica.Activity{ID: v.ID, Title: v.Title, Kind: v.Kind, Capacity: v.Capacity, SeatsLeft: v.SeatsLeft,
			Confirmed: len(v.Confirmed), Waitlist: len(v.Waitlist), Act: v.Window().Act(at),
			Venue: v.Venue, Description: v.Description, Cancelled: v.Cancelled}
		if v.CheckinOpens != 0 {
			t := time.UnixMilli(v.CheckinOpens).UTC()
			o.CheckinOpens = &t
		}
		if m.Mine != nil && v.Capacity > 0 {
			// A seat given here, offline too, is gone before the hub says so.
			n, err := m.Mine.Unseen(&v)
			if err != nil {
				return nil, err
			}
			o.SeatsLeft -= min(n, o.SeatsLeft)
		}
		if m.Own != nil {
			o.Share = v.Share(m.Own.Device()).Granted
		}
		if v.Start != 0 {
			t := time.UnixMilli(v.Start).UTC()
			o.Start = &t
		}
		if v.End != 0 {
			t := time.UnixMilli(v.End).UTC()
			o.End = &t
		}
		if resident != "" {
			switch {
			case slices.Contains(v.Confirmed, resident):
				o.Status, o.Synced = event.StatusConfirmed, true
			case slices.Contains(v.Waitlist, resident):
				o.Status, o.Synced = event.StatusWaitlisted, true
			case m.Mine != nil:
				if o.Status, err = m.Mine.Mine(v.ID, resident); err != nil {
					return nil, err
				}
			}
			// A confirmation given here stands even before the hub lists it.
			if o.Status == event.StatusWaitlisted && m.Mine != nil {
				if mine, err := m.Mine.Mine(v.ID, resident); err == nil && mine == event.StatusConfirmed {
					o.Status, o.Synced = event.StatusConfirmed, false
				}
			}
			if m.Mine != nil {
				if _, o.Attended, err = m.Mine.Attended(v.ID, resident); err != nil {
					return nil, err
				}
			} else {
				_, o.Attended = slices.BinarySearch(v.Attended, resident)
			}
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b replica.Activity) int {
		as, bs := time.Time{}, time.Time{}
		if a.Start != nil {
			as = *a.Start
		}
		if b.Start != nil {
			bs = *b.Start
		}
		if c := as.Compare(bs); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Report returns a report as last synced, or one filed here that the hub
// has not answered for yet (status submitted, synced false).
func (m *Mirror) Report(id string) (replica.Report, bool, error) {
	c, ok, err := m.Rep.Get(wire.EntityReport, id)
	if err != nil {
		return replica.Report{}, false, err
	}
	if ok {
		var v merge.ReportView
		if err := event.UnmarshalOwn(c.Body, &v); err != nil {
			return replica.Report{}, false, err
		}
		return replica.Report{ReportView: v, Synced: true, Updated: v.Updated.Time()}, true, nil
	}
	device, seq, err := event.ParseID(id)
	if err != nil || m.Own == nil || device != m.Own.Device() {
		return replica.Report{}, false, nil
	}
	evs, err := m.Own.Read(seq-1, 1, 1)
	if err != nil || len(evs) == 0 || evs[0].Seq != seq || evs[0].Kind != event.KindReport {
		return replica.Report{}, false, err
	}
	b, err := evs[0].Decode()
	if err != nil {
		return replica.Report{}, false, err
	}
	r := b.(*event.Report)
	v := merge.ReportView{ID: id, Status: event.ReportSubmitted, Category: r.Category, Title: r.Title,
		Building: r.Building, Unit: r.Unit, Updated: evs[0].HLC, Number: r.Number,
		Steps: []merge.ReportStep{{Event: merge.HistoryCreated, HLC: evs[0].HLC, Status: event.ReportSubmitted}}}
	return replica.Report{ReportView: v, Updated: evs[0].HLC.Time()}, true, nil
}

// Reports lists synced reports, filtered by category and building, and by
// openness (not resolved or rejected) when open is set: what a resident
// is shown before filing a duplicate.
func (m *Mirror) Reports(category, building string, open bool) ([]replica.Report, error) {
	all, err := decodeAll[merge.ReportView](m.Rep, wire.EntityReport)
	if err != nil {
		return nil, err
	}
	out := []replica.Report{}
	for _, v := range all {
		if (category != "" && v.Category != category) || (building != "" && v.Building != building) {
			continue
		}
		if open && (v.Status == event.ReportResolved || v.Status == event.ReportRejected) {
			continue
		}
		out = append(out, replica.Report{ReportView: v, Synced: true, Updated: v.Updated.Time()})
	}
	slices.SortFunc(out, func(a, b replica.Report) int {
		if c := cmp.Compare(b.Votes, a.Votes); c != 0 {
			return c
		}
		return cmp.Compare(b.ReportView.Updated, a.ReportView.Updated)
	})
	return out, nil
}
