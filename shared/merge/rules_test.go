package merge_test

import (
	"errors"
	"slices"
	"testing"

	"linli/shared/event"
	"linli/shared/merge"
)

var fire = &event.Report{Category: "fire_safety", Title: "楼道堆物", Building: "B3", Unit: "1-402", Resident: "R1"}

func patch(status, note, assignee string) *event.ReportPatch {
	return &event.ReportPatch{Report: "k1.1", Status: status, Note: note, Assignee: assignee, Who: "op1"}
}

func TestReportLifecycle(t *testing.T) {
	filed := fact(t, "k1", 1, 0, fire)
	tests := []struct {
		name     string
		patches  []*event.ReportPatch
		status   string
		note     string
		assignee string
		history  int // entries, "created" included
	}{
		{"new", nil, "submitted", "", "", 1},
		{"forward", []*event.ReportPatch{patch("accepted", "", ""), patch("in_progress", "", "wang"), patch("resolved", "done", "")},
			"resolved", "done", "wang", 4},
		{"skip ahead", []*event.ReportPatch{patch("resolved", "", "")}, "resolved", "", "", 2},
		{"reject open", []*event.ReportPatch{patch("accepted", "", ""), patch("rejected", "duplicate", "")}, "rejected", "duplicate", "", 3},
		{"resolved is final", []*event.ReportPatch{patch("resolved", "", ""), patch("accepted", "", ""), patch("rejected", "", "")},
			"resolved", "", "", 2},
		{"no way back", []*event.ReportPatch{patch("in_progress", "", ""), patch("accepted", "", "")}, "in_progress", "", "", 2},
		{"bad status keeps note", []*event.ReportPatch{patch("resolved", "", ""), patch("accepted", "reopen?", "")},
			"resolved", "reopen?", "", 3},
		{"note and assignee LWW", []*event.ReportPatch{patch("", "first", "li"), patch("", "second", ""), patch("", "", "zhao")},
			"submitted", "second", "zhao", 4},
		{"same status is a no-op", []*event.ReportPatch{patch("accepted", "", ""), patch("accepted", "", "")}, "accepted", "", "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := []merge.Fact{filed}
			for i, p := range tt.patches {
				facts = append(facts, fact(t, "hub", uint64(i+1), int64(10*(i+1)), p))
			}
			s := sameBothWays(t, facts...)
			got, err := s.Report("k1.1")
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tt.status || got.Note != tt.note || got.Assignee != tt.assignee || len(got.History) != tt.history {
				t.Fatalf("got status %q note %q assignee %q history %d; want %q %q %q %d",
					got.Status, got.Note, got.Assignee, len(got.History), tt.status, tt.note, tt.assignee, tt.history)
			}
			if got.History[0].Event != merge.HistoryCreated || got.Created != at(0) || got.Resident != "R1" || got.Site != site {
				t.Fatalf("got %+v, want created first by R1 at site %s", got, site)
			}
			if want := got.History[len(got.History)-1].HLC; got.Updated != want {
				t.Fatalf("updated = %v, want the last change %v", got.Updated, want)
			}
		})
	}
}

func TestReportHistoryOrder(t *testing.T) {
	// Two operators' patches with the same HLC: ties go by device, then seq.
	s := sameBothWays(t,
		fact(t, "k1", 1, 0, fire),
		fact(t, "hub-b", 1, 10, patch("", "from b", "")),
		fact(t, "hub-a", 2, 10, patch("", "from a 2", "")),
		fact(t, "hub-a", 1, 10, patch("", "from a 1", "")),
	)
	r, _ := s.Report("k1.1")
	var notes []string
	for _, h := range r.History[1:] {
		notes = append(notes, h.Note)
	}
	if want := []string{"from a 1", "from a 2", "from b"}; !slices.Equal(notes, want) || r.Note != "from b" {
		t.Fatalf("history notes %v, note %q; want %v and %q", notes, r.Note, want, "from b")
	}
}

func TestCheckPatch(t *testing.T) {
	s := build(t, fact(t, "k1", 1, 0, fire), fact(t, "hub", 1, 5, patch("resolved", "", "")))
	tests := []struct {
		name  string
		patch *event.ReportPatch
		want  error
	}{
		{"unknown report", &event.ReportPatch{Report: "k9.9", Status: "accepted", Who: "op"}, merge.ErrNotFound},
		{"after resolved", patch("accepted", "", ""), merge.ErrBadTransition},
		{"note only", patch("", "thanks", ""), nil},
		{"same status", patch("resolved", "", ""), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CheckPatch(tt.patch); !errors.Is(err, tt.want) {
				t.Fatalf("CheckPatch = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPatchBeforeReport(t *testing.T) {
	s := merge.New()
	refs, err := s.Apply(fact(t, "hub", 1, 50, patch("accepted", "seen", "li")))
	if err != nil || len(refs) != 1 || refs[0] != (merge.Ref{Kind: merge.RefReport, ID: "k1.1"}) {
		t.Fatalf("Apply(patch) = %v, %v; want the report's ref with no site yet", refs, err)
	}
	if _, ok := s.View(refs[0]); ok {
		t.Fatal("a report that has not arrived has a view")
	}
	if _, err := s.Report("k1.1"); !errors.Is(err, merge.ErrNotFound) {
		t.Fatalf("Report = %v, want ErrNotFound", err)
	}
	refs, _ = s.Apply(fact(t, "k1", 1, 0, fire))
	if refs[0].Site != site {
		t.Fatalf("ref %v, want site %s", refs[0], site)
	}
	v, ok := s.View(refs[0])
	rv := v.(merge.ReportView)
	if !ok || rv.Status != "accepted" || rv.Note != "seen" || rv.Updated != at(50) || rv.Building != "B3" {
		t.Fatalf("view %+v, want the early patch applied", rv)
	}
	sameBothWays(t, fact(t, "hub", 1, 50, patch("accepted", "seen", "li")), fact(t, "k1", 1, 0, fire))
}

func TestVotes(t *testing.T) {
	vote := func(dev string, seq uint64, ms int64, resident string) merge.Fact {
		return fact(t, dev, seq, ms, &event.Vote{Report: "k1.1", Resident: resident})
	}
	tests := []struct {
		name    string
		facts   []merge.Fact
		votes   uint32
		updated int64
	}{
		{"none", nil, 0, 0},
		{"two residents", []merge.Fact{vote("k2", 1, 10, "R2"), vote("k2", 2, 20, "R3")}, 2, 20},
		{"a resident counts once", []merge.Fact{vote("k2", 1, 10, "R2"), vote("k3", 1, 30, "R2")}, 1, 10},
		{"the reporter is not counted", []merge.Fact{vote("k2", 1, 10, "R1"), vote("k2", 2, 20, "R2")}, 1, 20},
		{"before the report", []merge.Fact{vote("k2", 1, -50, "R2")}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := append(slices.Clone(tt.facts), fact(t, "k1", 1, 0, fire))
			s := sameBothWays(t, facts...)
			r, err := s.Report("k1.1")
			if err != nil {
				t.Fatal(err)
			}
			if r.Votes != tt.votes || r.Updated != at(tt.updated) {
				t.Fatalf("votes %d updated %v; want %d %v", r.Votes, r.Updated, tt.votes, at(tt.updated))
			}
		})
	}
}

func TestRatingLatestWins(t *testing.T) {
	rate := func(dev string, seq uint64, ms int64, resident string, score int) merge.Fact {
		return fact(t, dev, seq, ms, &event.Rating{Resident: resident, Target: "k1.1", Score: score})
	}
	tests := []struct {
		name  string
		facts []merge.Fact
		count uint32
		mean  float64
	}{
		{"one", []merge.Fact{rate("k1", 2, 10, "R2", 4)}, 1, 4},
		{"latest counts", []merge.Fact{rate("k1", 2, 10, "R2", 1), rate("k2", 1, 20, "R2", 5)}, 1, 5},
		{"same HLC: greater device wins", []merge.Fact{rate("k2", 1, 10, "R2", 1), rate("k1", 2, 10, "R2", 5)}, 1, 1},
		{"same HLC and device: greater seq wins", []merge.Fact{rate("k1", 3, 10, "R2", 2), rate("k1", 2, 10, "R2", 5)}, 1, 2},
		{"mean of residents", []merge.Fact{rate("k1", 2, 10, "R2", 2), rate("k1", 3, 10, "R3", 5)}, 2, 3.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sameBothWays(t, append(slices.Clone(tt.facts), fact(t, "k1", 1, 0, fire))...)
			r, _ := s.Report("k1.1")
			if r.Rating.Count != tt.count || r.Rating.Mean != tt.mean {
				t.Fatalf("rating %+v, want count %d mean %v", r.Rating, tt.count, tt.mean)
			}
		})
	}
	// Activities are rated too, by those who attended; their id has no dot.
	s := build(t, fact(t, "k1", 1, 0, &event.Rating{Resident: "R1", Target: "A7", Score: 3}),
		fact(t, "k1", 2, 0, &event.Checkin{Resident: "R1", Activity: "A7", Action: "in", Act: event.ActAttendance}))
	if got := s.Rating("A7"); got.Count != 1 || got.Sum != 3 {
		t.Fatalf("activity rating %+v", got)
	}
	if got := s.Ratings("A7"); len(got) != 1 || got[0].Resident != "R1" {
		t.Fatalf("activity ratings %+v", got)
	}
}

func TestAlarms(t *testing.T) {
	smoke := func(dev string, seq uint64, ms int64, active bool) merge.Fact {
		return fact(t, dev, seq, ms, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: active, Building: "B3"})
	}
	op := &event.AlarmAck{Site: site, Source: "B3-smoke-1", Type: "smoke", Who: "op1"}
	ack := func(seq uint64, ms int64) merge.Fact { return fact(t, "hub", seq, ms, op) }
	clr := func(seq uint64, ms int64) merge.Fact { return fact(t, "hub", seq, ms, (*event.AlarmClear)(op)) }
	id := merge.AlarmID(site, "B3-smoke-1", "smoke")
	tests := []struct {
		name   string
		facts  []merge.Fact
		active bool // the source
		acked  bool
		open   bool // not yet cleared by an operator
		first  int64
	}{
		{"raised", []merge.Fact{smoke("g1", 1, 10, true)}, true, false, true, 10},
		{"source cleared: open until an operator clears it", []merge.Fact{smoke("g1", 1, 10, true), smoke("g1", 2, 20, false)}, false, false, true, 10},
		{"clear before raise in HLC order", []merge.Fact{smoke("g1", 1, 10, false), smoke("g1", 2, 20, true)}, true, false, true, 20},
		{"raised twice keeps first", []merge.Fact{smoke("g1", 1, 10, true), smoke("g1", 2, 20, true)}, true, false, true, 10},
		{"acknowledged", []merge.Fact{smoke("g1", 1, 10, true), ack(1, 15)}, true, true, true, 10},
		{"ack before raise does nothing", []merge.Fact{ack(1, 5), smoke("g1", 1, 10, true)}, true, false, true, 10},
		{"operator clear while the source is active does nothing", []merge.Fact{smoke("g1", 1, 10, true), ack(1, 15), clr(2, 16)}, true, true, true, 10},
		{"operator clear after the source cleared closes", []merge.Fact{smoke("g1", 1, 10, true), smoke("g1", 2, 12, false), ack(1, 15), clr(2, 16)}, false, true, false, 10},
		{"acknowledged at any time, also after the source cleared", []merge.Fact{smoke("g1", 1, 10, true), smoke("g1", 2, 12, false), ack(1, 15)}, false, true, true, 10},
		{"source active again needs a new acknowledgement", []merge.Fact{smoke("g1", 1, 10, true), ack(1, 11), smoke("g1", 2, 12, false), smoke("g1", 3, 13, true)}, true, false, true, 10},
		{"raised again after closed: a new episode", []merge.Fact{smoke("g1", 1, 10, true), smoke("g1", 2, 12, false), clr(1, 15), smoke("g1", 3, 30, true)}, true, false, true, 30},
		{"same HLC: greater device wins", []merge.Fact{smoke("g2", 1, 10, false), smoke("g1", 1, 10, true)}, false, false, true, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sameBothWays(t, tt.facts...)
			a, err := s.Alarm(id)
			if err != nil {
				t.Fatal(err)
			}
			if a.Active != tt.active || a.Acked != tt.acked || a.Open != tt.open || a.First != at(tt.first) || a.Building != "B3" {
				t.Fatalf("alarm %+v; want active %v acked %v open %v first %v", a, tt.active, tt.acked, tt.open, at(tt.first))
			}
			if a.Severity != merge.SeverityCritical {
				t.Fatalf("severity %q, want critical for smoke", a.Severity)
			}
			if open := s.OpenAlarms(site); (len(open) == 1) != tt.open {
				t.Fatalf("open alarms %+v, want open=%v", open, tt.open)
			}
		})
	}
}

func TestAlarmHistoryKeepsTransitions(t *testing.T) {
	op := &event.AlarmAck{Site: site, Source: "B3-smoke-1", Type: "smoke", Who: "op1", Note: "保安已到"}
	s := sameBothWays(t,
		fact(t, "g1", 1, 10, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: true, Building: "B3", Place: "3号楼 1单元 楼道烟感", Value: 1}),
		fact(t, "hub", 1, 11, op),
		fact(t, "hub", 2, 12, (*event.AlarmClear)(op)), // refused: the source is active
		fact(t, "g1", 2, 20, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: false, Building: "B3"}),
		fact(t, "hub", 3, 30, (*event.AlarmClear)(op)),
	)
	h := s.AlarmHistory(nil)
	if len(h) != 1 || h[0].Open || h[0].ClosedBy != "op1" || h[0].Place != "3号楼 1单元 楼道烟感" || h[0].AckNote != "保安已到" {
		t.Fatalf("history %+v", h)
	}
	var got []string
	for _, tr := range h[0].Transitions {
		got = append(got, tr.What)
	}
	want := []string{merge.TransRaised, merge.TransAcked, merge.TransSource, merge.TransCleared}
	if !slices.Equal(got, want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	if open := s.OpenAlarms(site); len(open) != 0 {
		t.Fatalf("open alarms %+v after the operator's clear", open)
	}
}

func TestAlarmSeverityOrder(t *testing.T) {
	s := sameBothWays(t,
		fact(t, "g1", 1, 10, &event.Access{Door: "B3-main", Result: "held_open", Building: "B3"}),
		fact(t, "g1", 2, 20, &event.Access{Door: "B3-side", Result: "forced", Building: "B3"}),
		fact(t, "g1", 3, 30, &event.Alarm{Sensor: "B3-water-1", Type: "water", Active: true, Building: "B3"}),
		fact(t, "g1", 4, 40, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: true, Building: "B3"}),
	)
	var got []string
	for _, a := range s.OpenAlarms(site) {
		got = append(got, a.Kind+"/"+a.Severity)
	}
	want := []string{"smoke/critical", "water/major", "forced/minor", "held_open/warning"}
	if !slices.Equal(got, want) {
		t.Fatalf("open alarms by severity %v, want %v", got, want)
	}
}

func TestForcedDoor(t *testing.T) {
	s := sameBothWays(t,
		fact(t, "g1", 1, 10, &event.Access{Door: "B3-main", Result: "granted", Credential: "C1", Building: "B3"}),
		fact(t, "g1", 2, 20, &event.Access{Door: "B3-main", Result: "forced", Building: "B3", Place: "3号楼 正门"}),
	)
	open := s.OpenAlarms(site)
	if len(open) != 1 || open[0].Kind != "forced" || open[0].Source != "B3-main" || open[0].First != at(20) || open[0].Place != "3号楼 正门" {
		t.Fatalf("open alarms %+v, want one forced door", open)
	}
	// A forced opening is an event: no source stays active, so an
	// operator can clear it once looked at.
	if open[0].Active || !open[0].Momentary {
		t.Fatalf("forced door %+v, want momentary, source not active", open[0])
	}
	op := &event.AlarmAck{Site: site, Source: "B3-main", Type: "forced", Who: "op1"}
	applyAll(t, s, fact(t, "hub", 1, 30, (*event.AlarmClear)(op)))
	if open := s.OpenAlarms(site); len(open) != 0 {
		t.Fatalf("open alarms %+v after the operator cleared it", open)
	}
}

func TestAttendancePairs(t *testing.T) {
	def := fact(t, "hub", 1, 0, &event.ActivitySet{ID: "A1", Title: "清扫", Type: "volunteer", Site: site})
	in := func(dev string, seq uint64, ms int64) merge.Fact {
		return fact(t, dev, seq, ms, &event.Checkin{Resident: "R1", Activity: "A1", Action: "in", Status: "confirmed"})
	}
	out := func(dev string, seq uint64, ms int64) merge.Fact {
		return fact(t, dev, seq, ms, &event.Checkin{Resident: "R1", Activity: "A1", Action: "out"})
	}
	const hour = 3_600_000
	tests := []struct {
		name   string
		facts  []merge.Fact
		millis int64
	}{
		{"one pair", []merge.Fact{in("k1", 1, hour), out("k1", 2, 3*hour)}, 2 * hour},
		{"two pairs", []merge.Fact{in("k1", 1, 0), out("k1", 2, hour), in("k2", 1, 2*hour), out("k2", 2, 4*hour)}, 3 * hour},
		{"repeated in: the latest counts", []merge.Fact{in("k1", 1, 0), in("k2", 1, hour), out("k1", 2, 2*hour)}, hour},
		{"out without in", []merge.Fact{out("k1", 1, 0), in("k1", 2, hour), out("k1", 3, 2*hour)}, hour},
		{"second out ignored", []merge.Fact{in("k1", 1, 0), out("k1", 2, hour), out("k2", 1, 2*hour)}, hour},
		{"open in counts nothing", []merge.Fact{in("k1", 1, 0)}, 0},
		{"out at another kiosk", []merge.Fact{in("k1", 1, 0), out("k2", 1, hour/2)}, hour / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sameBothWays(t, append([]merge.Fact{def}, tt.facts...)...)
			a, err := s.Activity("A1")
			if err != nil {
				t.Fatal(err)
			}
			var got int64
			if len(a.Hours) == 1 {
				got = a.Hours[0].Millis
			}
			if got != tt.millis {
				t.Fatalf("attended %d ms, want %d (hours %+v)", got, tt.millis, a.Hours)
			}
			if a.Attendance != 1 || !slices.Equal(a.Confirmed, []string{"R1"}) {
				t.Fatalf("attendance %d confirmed %v", a.Attendance, a.Confirmed)
			}
		})
	}
}

func TestNoticeLWW(t *testing.T) {
	n := func(dev string, seq uint64, ms int64, title string, expires int64) merge.Fact {
		return fact(t, dev, seq, ms, &event.NoticeSet{ID: "N1", Site: site, Title: title, Category: "finance", Expires: expires})
	}
	tests := []struct {
		name  string
		facts []merge.Fact
		title string
	}{
		{"one", []merge.Fact{n("hub", 1, 10, "a", 0)}, "a"},
		{"latest wins", []merge.Fact{n("hub", 1, 10, "a", 0), n("hub", 2, 20, "b", 0)}, "b"},
		{"same HLC: greater device wins", []merge.Fact{n("hub-b", 1, 10, "b", 0), n("hub-a", 9, 10, "a", 0)}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sameBothWays(t, tt.facts...)
			got, err := s.Notice("N1")
			if err != nil || got.Title != tt.title {
				t.Fatalf("notice %+v, %v; want title %q", got, err, tt.title)
			}
		})
	}
	s := build(t, n("hub", 1, 10, "a", base+100), fact(t, "hub", 2, 11,
		&event.NoticeSet{ID: "N2", Site: "S2", Title: "elsewhere", Category: "safety"}))
	if got := s.Notices(site, at(99)); len(got) != 1 || got[0].ID != "N1" {
		t.Fatalf("notices before expiry: %+v", got)
	}
	if got := s.Notices(site, at(100)); len(got) != 0 {
		t.Fatalf("notices at expiry: %+v, want none", got)
	}
	if got := s.Notices("", at(0)); len(got) != 2 || got[0].ID != "N2" {
		t.Fatalf("all notices newest first: %+v", got)
	}
}

func TestApplyRejects(t *testing.T) {
	good := fact(t, "k1", 1, 0, fire)
	tests := []struct {
		name string
		edit func(f *merge.Fact)
	}{
		{"no site", func(f *merge.Fact) { f.Site = "" }},
		{"bad device", func(f *merge.Fact) { f.Event.Device = "k 1" }},
		{"seq zero", func(f *merge.Fact) { f.Event.Seq = 0 }},
		{"unknown kind", func(f *merge.Fact) { f.Event.Kind = 63 }},
		{"body of another kind", func(f *merge.Fact) { f.Event.Kind = event.KindVote }},
		{"not cbor", func(f *merge.Fact) { f.Event.Body = []byte{0xff} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good
			tt.edit(&f)
			s := merge.New()
			empty := encode(t, s)
			if _, err := s.Apply(f); !errors.Is(err, merge.ErrInvalid) {
				t.Fatalf("Apply = %v, want ErrInvalid", err)
			}
			if !slices.Equal(encode(t, s), empty) {
				t.Fatal("a rejected fact changed the state")
			}
		})
	}
	// Readings and door decisions are valid and merge to nothing.
	s := merge.New()
	for _, f := range []merge.Fact{
		fact(t, "g1", 1, 0, &event.Reading{Sensor: "t1", Type: "temperature", Value: 20}),
		fact(t, "g1", 2, 0, &event.Access{Door: "d1", Result: "denied"}),
	} {
		if refs, err := s.Apply(f); err != nil || refs != nil {
			t.Fatalf("Apply(%s) = %v, %v; want nothing", f.Event.Kind, refs, err)
		}
	}
}

func TestApplyIdempotentRefs(t *testing.T) {
	s := merge.New()
	f := fact(t, "k1", 1, 0, fire)
	if refs, _ := s.Apply(f); len(refs) != 1 {
		t.Fatalf("first apply refs %v", refs)
	}
	if refs, _ := s.Apply(f); refs != nil {
		t.Fatalf("second apply refs %v, want none", refs)
	}
}

func TestEncodeDecode(t *testing.T) {
	s := build(t,
		fact(t, "k1", 1, 0, fire),
		fact(t, "k1", 2, 1, &event.Vote{Report: "k1.1", Resident: "R2"}),
		fact(t, "hub", 1, 2, &event.ActivitySet{ID: "A1", Title: "t", Type: "culture", Site: site, Capacity: 5}),
		fact(t, "hub", 2, 3, &event.Grant{Activity: "A1", Kiosk: "k1", Seats: 2}),
		fact(t, "k1", 3, 4, &event.Checkin{Resident: "R1", Activity: "A1", Action: "in", Status: "confirmed"}),
		fact(t, "g1", 1, 5, &event.Alarm{Sensor: "s1", Type: "water", Active: true}),
		fact(t, "hub", 3, 6, &event.NoticeSet{ID: "N1", Site: site, Title: "t", Category: "election"}),
	)
	data := encode(t, s)
	back, err := merge.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(encode(t, back), data) {
		t.Fatal("Decode(Encode(s)) encodes differently")
	}
	// The decoded state keeps merging like the original.
	more := fact(t, "k1", 4, 7, &event.Checkin{Resident: "R2", Activity: "A1", Action: "in", Status: "confirmed"})
	applyAll(t, s, more)
	applyAll(t, back, more)
	if !slices.Equal(encode(t, back), encode(t, s)) {
		t.Fatal("decoded state merges differently")
	}
	if _, err := merge.Decode([]byte{0xff}); err == nil {
		t.Fatal("Decode(garbage) succeeded")
	}
}

func TestViews(t *testing.T) {
	s := build(t,
		fact(t, "k1", 1, 0, fire),
		fact(t, "hub", 1, 2, &event.ActivitySet{ID: "A1", Title: "t", Type: "culture", Site: site, Capacity: 5}),
		fact(t, "g1", 1, 5, &event.Alarm{Sensor: "s1", Type: "water", Active: true}),
		fact(t, "hub", 3, 6, &event.NoticeSet{ID: "N1", Site: site, Title: "t", Category: "election"}),
	)
	for _, ref := range []merge.Ref{
		{Kind: merge.RefReport, ID: "k1.1"},
		{Kind: merge.RefActivity, ID: "A1"},
		{Kind: merge.RefAlarm, ID: merge.AlarmID(site, "s1", "water")},
		{Kind: merge.RefNotice, ID: "N1"},
	} {
		v, ok := s.View(ref)
		if !ok {
			t.Fatalf("View(%v) missing", ref)
		}
		data, err := event.Marshal(v)
		if err != nil || len(data) == 0 {
			t.Fatalf("view %v does not encode: %v", ref, err)
		}
	}
	if _, ok := s.View(merge.Ref{Kind: "bogus", ID: "x"}); ok {
		t.Fatal("View of an unknown kind")
	}
}

func TestApplyBatch(t *testing.T) {
	bad := fact(t, "k1", 9, 0, fire)
	bad.Site = ""
	facts := []merge.Fact{
		fact(t, "k2", 1, 5, &event.Vote{Report: "k1.1", Resident: "R2"}), // before its report
		fact(t, "k1", 1, 0, fire),
		bad,
		fact(t, "k2", 2, 6, &event.Vote{Report: "k1.1", Resident: "R3"}),
		fact(t, "g1", 1, 7, &event.Alarm{Sensor: "s1", Type: "water", Active: true}),
	}
	s := merge.New()
	refs, err := s.ApplyBatch(facts)
	if !errors.Is(err, merge.ErrInvalid) {
		t.Fatalf("ApplyBatch error %v, want the bad fact's ErrInvalid", err)
	}
	want := []merge.Ref{{Kind: merge.RefReport, Site: site, ID: "k1.1"}, {Kind: merge.RefAlarm, Site: site, ID: merge.AlarmID(site, "s1", "water")}}
	if !slices.Equal(refs, want) {
		t.Fatalf("refs %v, want %v", refs, want)
	}
	one := merge.New()
	for _, f := range facts {
		_, _ = one.Apply(f) // the bad fact fails here too
	}
	if !slices.Equal(encode(t, s), encode(t, one)) {
		t.Fatal("ApplyBatch and Apply disagree")
	}
	if r, _ := s.Report("k1.1"); r.Votes != 2 {
		t.Fatalf("votes %d after the batch, want 2", r.Votes)
	}
}
