package merge

import (
	"fmt"
	"slices"
	"strings"

	"linli/shared/hlc"
)

// Read-only views for the operator dashboard: per-resident attendance, the
// ratings behind the summaries, and which sites the state knows.

// AttendanceRow is one resident's standing in an activity.
type AttendanceRow struct {
	Resident  string        `json:"resident"`
	Confirmed bool          `json:"confirmed"`
	Waitlist  int           `json:"waitlist,omitempty"` // 1-based place on the waitlist, 0 if not on it
	CheckedIn bool          `json:"checked_in"`         // signed up or attended
	SignedUp  bool          `json:"signed_up"`          // checked in before the window (报名)
	Attended  bool          `json:"attended"`           // checked in inside the window (到场签到)
	FirstIn   hlc.Timestamp `json:"first_in,omitempty"`
	Left      bool          `json:"left"`
	Millis    int64         `json:"millis"` // attended time of matched in/out pairs
}

// Attendance lists an activity's residents by id, or ErrNotFound.
func (s *State) Attendance(id string) ([]AttendanceRow, error) {
	if t := s.fromArchive(RefActivity, id); t != nil {
		return t.Attendance(id)
	}
	a := s.activities[id]
	if a == nil || a.Def == nil {
		return nil, fmt.Errorf("activity %s: %w", id, ErrNotFound)
	}
	place := map[string]int{}
	for i, r := range a.Waitlist {
		place[r] = i + 1
	}
	out := make([]AttendanceRow, 0, len(a.Attendees))
	for _, at := range a.Attendees {
		row := AttendanceRow{Resident: at.Resident, Confirmed: at.Confirmed, Waitlist: place[at.Resident],
			CheckedIn: at.CheckedIn, SignedUp: at.SignedUp, Attended: at.Attended, Left: at.Left, Millis: at.Millis}
		if at.CheckedIn {
			row.FirstIn = at.FirstIn.HLC
		}
		out = append(out, row)
	}
	return out, nil
}

// RatingPoint is one resident's latest rating, without the resident.
type RatingPoint struct {
	Target   string        `json:"target"`
	Report   bool          `json:"report"`             // the target is a report; else an activity
	Category string        `json:"category,omitempty"` // the report's category
	Title    string        `json:"title,omitempty"`    // the report's or activity's title
	Score    int           `json:"score"`
	Comment  string        `json:"comment,omitempty"`
	HLC      hlc.Timestamp `json:"hlc"`
}

// RatingPoints lists the latest ratings of the reports and activities of a
// site ("" for every site), by target then resident. Ratings of targets
// the state does not hold yet are left out: their site is unknown.
func (s *State) RatingPoints(site string) []RatingPoint {
	out := s.ratingPoints(site)
	for _, kind := range []string{RefReport, RefActivity} {
		s.scanArchive(kind, func(_ string, t *State) { out = append(out, t.ratingPoints(site)...) })
	}
	slices.SortStableFunc(out, func(a, b RatingPoint) int { return strings.Compare(a.Target, b.Target) })
	return out
}

func (s *State) ratingPoints(site string) []RatingPoint {
	out := []RatingPoint{}
	for _, target := range sortedKeys(s.ratings) {
		p := RatingPoint{Target: target}
		tsite := ""
		if isReportID(target) {
			r := s.reports[target]
			if r == nil || r.Filed == nil {
				continue
			}
			p.Report, p.Category, p.Title, tsite = true, r.Filed.Body.Category, r.Filed.Body.Title, r.Site
		} else {
			a := s.activities[target]
			if a == nil || a.Def == nil {
				continue
			}
			p.Title, tsite = a.Def.Set.Title, a.Def.Set.Site
		}
		if site != "" && tsite != site {
			continue
		}
		rs := s.ratings[target]
		for _, res := range sortedKeys(rs.Latest) {
			if s.ratingIgnored(target, res) {
				continue // not an attendee's: the summaries leave it out too
			}
			f := rs.Latest[res]
			q := p
			q.Score, q.Comment, q.HLC = f.Score, f.Comment, f.Key.HLC
			out = append(out, q)
		}
	}
	return out
}

// Sites lists every site the state holds an entity of, sorted.
func (s *State) Sites() []string {
	seen := map[string]bool{}
	for _, r := range s.reports {
		if r.Site != "" {
			seen[r.Site] = true
		}
	}
	for _, a := range s.activities {
		if site := a.site(); site != "" {
			seen[site] = true
		}
	}
	for _, n := range s.notices {
		seen[n.Set.Site] = true
	}
	for _, a := range s.alarms {
		seen[a.Site] = true
	}
	if s.archive != nil {
		// A read error leaves the archived entities' sites out; the
		// archive logs it.
		sites, _ := s.archive.Sites()
		for _, site := range sites {
			seen[site] = true
		}
	}
	return sortedKeys(seen)
}
