package merge

import (
	"slices"

	"linli/shared/event"
	"linli/shared/hlc"
)

// Policy is how the hub splits an activity's seats between its kiosks and
// its own reserve.
type Policy struct {
	// KioskShare is the percentage of capacity split evenly among the
	// site's kiosks at their first grant; the rest is the hub's reserve,
	// from which it promotes residents waitlisted at kiosks whose share ran
	// out. Values above 100 count as 100.
	KioskShare uint32
}

// DefaultPolicy gives kiosks 80% of the seats and keeps 20% in reserve:
// most residents get an answer at once, offline too, and the hub can still
// serve a crowd at one kiosk from its reserve without waiting for recalls.
var DefaultPolicy = Policy{KioskShare: 80}

// Decide runs DefaultPolicy; see Policy.Decide.
func (s *State) Decide(site string, kiosks []string, now hlc.Timestamp) []event.Body {
	return DefaultPolicy.Decide(s, site, kiosks, now)
}

// Decide returns the new decisions the hub should record for the
// activities of site, given the site's kiosks: Promote, Recall and Grant
// bodies in a deterministic order (see the package doc for the rules).
// Activities that ended before now are left alone. Decide does not change
// the state: the hub records each decision as an event and applies it, and
// must do so before it calls Decide again, or it would decide twice.
func (p Policy) Decide(s *State, site string, kiosks []string, now hlc.Timestamp) []event.Body {
	ks := make([]string, 0, len(kiosks))
	for _, k := range kiosks {
		if event.ValidID(k) == nil {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	ks = slices.Compact(ks)
	var out []event.Body
	for _, id := range sortedKeys(s.activities) {
		a := s.activities[id]
		if a.Def == nil || a.Def.Set.Site != site || a.Def.Set.End > 0 && now.WallMillis() >= a.Def.Set.End {
			continue
		}
		out = p.decideActivity(a, ks, out)
	}
	return out
}

func (p Policy) decideActivity(a *activity, kiosks []string, out []event.Body) []event.Body {
	capacity := a.Def.Set.Capacity
	reserve := a.Reserve
	waiting := 0
	for _, r := range a.Waitlist {
		at := a.attendee(r)
		if at.Left {
			continue // gave up their place in the queue
		}
		if capacity > 0 && reserve <= 0 {
			waiting++
			continue
		}
		out = append(out, &event.Promote{Activity: a.ID, Resident: r, From: at.FirstIn.id()})
		reserve--
	}
	if capacity == 0 {
		return out // no limit: nothing to grant or recall
	}
	if waiting > 0 || reserve < 0 {
		for _, kiosk := range sortedKeys(a.Shares) {
			if sh := a.Shares[kiosk]; sh.Unused > 0 && !sh.recalled() {
				out = append(out, &event.Recall{Activity: a.ID, Kiosk: kiosk, Granted: sh.Granted})
			}
		}
		return out
	}
	if len(kiosks) == 0 {
		return out
	}
	per := int64(capacity) * int64(min(p.KioskShare, 100)) / 100 / int64(len(kiosks))
	for _, kiosk := range kiosks {
		if reserve <= 0 || per == 0 {
			break
		}
		if sh := a.Shares[kiosk]; sh != nil && sh.Granted > 0 {
			continue
		}
		g := min(per, reserve)
		out = append(out, &event.Grant{Activity: a.ID, Kiosk: kiosk, Seats: uint32(g)})
		reserve -= g
	}
	return out
}

// DecisionSite is the site a hub decision concerns: named in it, or that
// of the activity or report it acts on ("" when that is not known here).
// The hub keys a decision's fact by it and streams it to that site.
func (s *State) DecisionSite(b event.Body) string {
	activitySite := func(id string) string {
		if a, err := s.Activity(id); err == nil {
			return a.Site
		}
		return ""
	}
	reportSite := func(id string) string {
		if r, err := s.Report(id); err == nil {
			return r.Site
		}
		return ""
	}
	switch b := b.(type) {
	case *event.ActivitySet:
		return b.Site
	case *event.NoticeSet:
		return b.Site
	case *event.AlarmAck:
		return b.Site
	case *event.AlarmClear:
		return b.Site
	case *event.AccessListSet:
		return b.Site
	case *event.ReportFile:
		return b.Site
	case *event.Grant:
		return activitySite(b.Activity)
	case *event.Recall:
		return activitySite(b.Activity)
	case *event.Promote:
		return activitySite(b.Activity)
	case *event.ReportPatch:
		return reportSite(b.Report)
	case *event.ReportMerge:
		return reportSite(b.Report)
	}
	return ""
}
