package merge_test

import (
	"slices"
	"testing"

	"linli/shared/event"
	"linli/shared/merge"
)

func TestAttendanceAndRatingPoints(t *testing.T) {
	s := build(t,
		fact(t, "hub", 1, 0, &event.ActivitySet{ID: "A1", Title: "社区义诊", Type: "activity", Site: site, Capacity: 1}),
		fact(t, "k1", 1, 10, &event.Checkin{Resident: "R1", Activity: "A1", Action: "in", Status: event.StatusConfirmed}),
		fact(t, "k1", 2, 20, &event.Checkin{Resident: "R2", Activity: "A1", Action: "in"}),
		fact(t, "k1", 3, 3_600_010, &event.Checkin{Resident: "R1", Activity: "A1", Action: "out"}),
		fact(t, "k1", 4, 3_600_020, &event.Report{Category: "noise", Title: "噪音", Building: "B1"}),
		fact(t, "k1", 5, 3_600_030, &event.Rating{Resident: "R1", Target: "A1", Score: 5, Comment: "好"}),
		fact(t, "k1", 6, 3_600_040, &event.Rating{Resident: "R2", Target: "k1.4", Score: 2}),
		fact(t, "k1", 7, 3_600_050, &event.Rating{Resident: "R2", Target: "k1.4", Score: 3}), // latest counts
	)
	rows, err := s.Attendance("A1")
	if err != nil {
		t.Fatal(err)
	}
	want := []merge.AttendanceRow{
		{Resident: "R1", Confirmed: true, CheckedIn: true, Attended: true, FirstIn: at(10), Left: true, Millis: 3_600_000},
		{Resident: "R2", Waitlist: 1, CheckedIn: true, Attended: true, FirstIn: at(20)},
	}
	if !slices.Equal(rows, want) {
		t.Fatalf("attendance\n got %+v\nwant %+v", rows, want)
	}
	if _, err := s.Attendance("nope"); err == nil {
		t.Fatal("attendance of an unknown activity: no error")
	}
	pts := s.RatingPoints(site)
	if len(pts) != 2 {
		t.Fatalf("rating points %+v, want 2", pts)
	}
	if p := pts[0]; p.Target != "A1" || p.Report || p.Title != "社区义诊" || p.Score != 5 {
		t.Fatalf("activity rating %+v", p)
	}
	if p := pts[1]; p.Target != "k1.4" || !p.Report || p.Category != "noise" || p.Score != 3 {
		t.Fatalf("report rating %+v: want the latest score 3 under noise", p)
	}
	if got := s.RatingPoints("other"); len(got) != 0 {
		t.Fatalf("another site's ratings: %+v", got)
	}
	if got := s.Sites(); !slices.Equal(got, []string{site}) {
		t.Fatalf("sites %v", got)
	}
}
