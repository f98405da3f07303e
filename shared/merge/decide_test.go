package merge_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"linli/shared/event"
	"linli/shared/merge"
)

func activitySet(capacity uint32, end int64) *event.ActivitySet {
	return &event.ActivitySet{ID: act, Title: "t", Type: "activity", Site: site, Capacity: capacity, End: end}
}

func checkin(resident, action, status string) *event.Checkin {
	return &event.Checkin{Resident: resident, Activity: act, Action: action, Status: status}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		facts  func(t *testing.T) []merge.Fact
		kiosks []string
		want   []event.Body
	}{
		{"first grants: 80% split, 20% kept",
			func(t *testing.T) []merge.Fact { return []merge.Fact{fact(t, "hub", 1, 0, activitySet(10, 0))} },
			[]string{"k2", "k1", "k2"},
			[]event.Body{&event.Grant{Activity: act, Kiosk: "k1", Seats: 4}, &event.Grant{Activity: act, Kiosk: "k2", Seats: 4}}},
		{"no second grant",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{fact(t, "hub", 1, 0, activitySet(10, 0)), fact(t, "hub", 2, 1, &event.Grant{Activity: act, Kiosk: "k1", Seats: 4})}
			},
			[]string{"k1"}, nil},
		{"a late kiosk gets what the reserve allows",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{fact(t, "hub", 1, 0, activitySet(10, 0)), fact(t, "hub", 2, 1, &event.Grant{Activity: act, Kiosk: "k1", Seats: 9})}
			},
			[]string{"k1", "k2"}, []event.Body{&event.Grant{Activity: act, Kiosk: "k2", Seats: 1}}},
		{"ended activity is left alone",
			func(t *testing.T) []merge.Fact { return []merge.Fact{fact(t, "hub", 1, 0, activitySet(10, base+5))} },
			[]string{"k1"}, nil},
		{"other sites are left alone",
			func(t *testing.T) []merge.Fact {
				a := activitySet(10, 0)
				a.Site = "S2"
				return []merge.Fact{fact(t, "hub", 1, 0, a)}
			},
			[]string{"k1"}, nil},
		{"promote in check-in order, then recall",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					fact(t, "hub", 1, 0, activitySet(3, 0)),
					fact(t, "hub", 2, 1, &event.Grant{Activity: act, Kiosk: "k1", Seats: 1}),
					fact(t, "hub", 3, 1, &event.Grant{Activity: act, Kiosk: "k2", Seats: 1}),
					fact(t, "k1", 1, 10, checkin("R1", "in", "confirmed")),
					fact(t, "k1", 2, 12, checkin("R3", "in", "waitlisted")),
					fact(t, "k1", 3, 11, checkin("R2", "in", "recorded")),
				}
			},
			[]string{"k1", "k2"},
			[]event.Body{&event.Promote{Activity: act, Resident: "R2", From: "k1.3"}, &event.Recall{Activity: act, Kiosk: "k2", Granted: 1}}},
		{"no second recall",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					fact(t, "hub", 1, 0, activitySet(1, 0)),
					fact(t, "hub", 2, 1, &event.Grant{Activity: act, Kiosk: "k2", Seats: 1}),
					fact(t, "hub", 3, 2, &event.Recall{Activity: act, Kiosk: "k2", Granted: 1}),
					fact(t, "k1", 1, 10, checkin("R1", "in", "recorded")),
				}
			},
			[]string{"k1", "k2"}, nil},
		{"a release refills the reserve",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					fact(t, "hub", 1, 0, activitySet(1, 0)),
					fact(t, "hub", 2, 1, &event.Grant{Activity: act, Kiosk: "k2", Seats: 1}),
					fact(t, "hub", 3, 2, &event.Recall{Activity: act, Kiosk: "k2", Granted: 1}),
					fact(t, "k1", 1, 10, checkin("R1", "in", "recorded")),
					fact(t, "k2", 1, 20, &event.Release{Activity: act, Granted: 1, Used: 0, Returned: 1}),
				}
			},
			[]string{"k1", "k2"}, []event.Body{&event.Promote{Activity: act, Resident: "R1", From: "k1.1"}}},
		{"residents who left are not promoted",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					fact(t, "hub", 1, 0, activitySet(2, 0)),
					fact(t, "k1", 1, 10, checkin("R1", "in", "waitlisted")),
					fact(t, "k1", 2, 11, checkin("R1", "out", "")),
					fact(t, "k1", 3, 12, checkin("R2", "in", "waitlisted")),
				}
			},
			[]string{"k1"},
			[]event.Body{&event.Promote{Activity: act, Resident: "R2", From: "k1.3"}, &event.Grant{Activity: act, Kiosk: "k1", Seats: 1}}},
		{"a check-out frees a seat",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					fact(t, "hub", 1, 0, activitySet(1, 0)),
					fact(t, "hub", 2, 1, &event.Grant{Activity: act, Kiosk: "k1", Seats: 1}),
					fact(t, "k1", 1, 10, checkin("R1", "in", "confirmed")),
					fact(t, "k1", 2, 11, checkin("R2", "in", "waitlisted")),
					fact(t, "k1", 3, 12, checkin("R1", "out", "")),
				}
			},
			[]string{"k1"}, []event.Body{&event.Promote{Activity: act, Resident: "R2", From: "k1.2"}}},
		{"a resident confirmed at two kiosks holds one seat",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					fact(t, "hub", 1, 0, activitySet(2, 0)),
					fact(t, "hub", 2, 1, &event.Grant{Activity: act, Kiosk: "k1", Seats: 1}),
					fact(t, "hub", 3, 1, &event.Grant{Activity: act, Kiosk: "k2", Seats: 1}),
					fact(t, "k1", 1, 10, checkin("R1", "in", "confirmed")),
					fact(t, "k2", 1, 11, checkin("R1", "in", "confirmed")),
					fact(t, "k2", 2, 12, checkin("R2", "in", "waitlisted")),
				}
			},
			[]string{"k1", "k2"}, []event.Body{&event.Promote{Activity: act, Resident: "R2", From: "k2.2"}}},
		{"no limit: every recorded check-in is confirmed",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					fact(t, "hub", 1, 0, activitySet(0, 0)),
					fact(t, "k1", 1, 10, checkin("R1", "in", "recorded")),
					fact(t, "k1", 2, 11, checkin("R2", "in", "confirmed")),
				}
			},
			[]string{"k1"}, []event.Body{&event.Promote{Activity: act, Resident: "R1", From: "k1.1"}}},
		{"capacity lowered below what is out: recall",
			func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					fact(t, "hub", 1, 0, activitySet(10, 0)),
					fact(t, "hub", 2, 1, &event.Grant{Activity: act, Kiosk: "k1", Seats: 8}),
					fact(t, "hub", 3, 2, activitySet(5, 0)),
				}
			},
			[]string{"k1"}, []event.Body{&event.Recall{Activity: act, Kiosk: "k1", Granted: 8}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := tt.facts(t)
			s := sameBothWays(t, facts...)
			got := s.Decide(site, tt.kiosks, at(10_000))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decide:\n got %s\nwant %s", render(got), render(tt.want))
			}
			// Recording the decisions settles them: deciding again at once
			// adds nothing that was decided already.
			for i, b := range got {
				applyAll(t, s, fact(t, "hub", uint64(100+i), 20_000, b))
			}
			for _, b := range s.Decide(site, tt.kiosks, at(10_000)) {
				if slices.ContainsFunc(got, func(g event.Body) bool { return reflect.DeepEqual(g, b) }) {
					t.Fatalf("decided %s twice", render([]event.Body{b}))
				}
			}
		})
	}
}

// render shows decisions readably in failure messages.
func render(bodies []event.Body) string {
	out := ""
	for _, b := range bodies {
		data, _ := json.Marshal(b)
		out += b.Kind().String() + string(data) + " "
	}
	return "[" + out + "]"
}

func TestReserveAccounting(t *testing.T) {
	grant := fact(t, "hub", 2, 1, &event.Grant{Activity: act, Kiosk: "k1", Seats: 4})
	tests := []struct {
		name    string
		facts   []merge.Fact
		reserve int64
		unused  uint32
	}{
		{"granted", nil, 6, 4},
		{"some used", []merge.Fact{fact(t, "k1", 1, 5, checkin("R1", "in", "confirmed"))}, 6, 3},
		{"a kiosk's repeat does not count twice", []merge.Fact{
			fact(t, "k1", 1, 5, checkin("R1", "in", "confirmed")), fact(t, "k1", 2, 6, checkin("R1", "in", "confirmed"))}, 6, 3},
		{"released", []merge.Fact{
			fact(t, "k1", 1, 5, checkin("R1", "in", "confirmed")),
			fact(t, "k1", 2, 6, &event.Release{Activity: act, Granted: 4, Used: 1, Returned: 3})}, 9, 0},
		// The release says the kiosk used 2 seats; the hub has seen only
		// one of those check-ins so far, and must not count the other seat
		// as free: it stays among the kiosk's unused until it arrives.
		{"release before a check-in it counts", []merge.Fact{
			fact(t, "k1", 1, 5, checkin("R1", "in", "confirmed")),
			fact(t, "k1", 3, 7, &event.Release{Activity: act, Granted: 4, Used: 2, Returned: 2})}, 8, 1},
		{"release replayed", []merge.Fact{
			fact(t, "k1", 3, 7, &event.Release{Activity: act, Granted: 4, Used: 2, Returned: 2}),
			fact(t, "k1", 3, 7, &event.Release{Activity: act, Granted: 4, Used: 2, Returned: 2})}, 8, 2},
		{"the check-in it counted arrives", []merge.Fact{
			fact(t, "k1", 1, 5, checkin("R1", "in", "confirmed")),
			fact(t, "k1", 2, 6, checkin("R2", "in", "confirmed")),
			fact(t, "k1", 3, 7, &event.Release{Activity: act, Granted: 4, Used: 2, Returned: 2})}, 8, 0},
		{"checked out: seat back to the reserve", []merge.Fact{
			fact(t, "k1", 1, 5, checkin("R1", "in", "confirmed")), fact(t, "k2", 1, 6, checkin("R1", "out", ""))}, 7, 3},
		{"promoted", []merge.Fact{
			fact(t, "hub", 3, 5, &event.Promote{Activity: act, Resident: "R9", From: event.PromoteReserve})}, 5, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sameBothWays(t, append([]merge.Fact{fact(t, "hub", 1, 0, activitySet(10, 0)), grant}, tt.facts...)...)
			a, _ := s.Activity(act)
			if a.Reserve != tt.reserve || findKiosk(a, "k1").Unused != tt.unused {
				t.Fatalf("reserve %d, k1 unused %d; want %d, %d (%+v)", a.Reserve, findKiosk(a, "k1").Unused, tt.reserve, tt.unused, a)
			}
		})
	}
}

func TestLedger(t *testing.T) {
	view := func(capacity, granted uint32, recalled bool) *merge.ActivityView {
		return &merge.ActivityView{ID: act, Capacity: capacity, Kiosks: []merge.KioskShare{{Device: "k1", Granted: granted, Recalled: recalled}}}
	}
	confirm := func(l *merge.Ledger, r string, hubConfirmed bool) string {
		answer, status := l.Decide(r, hubConfirmed, false)
		l.Record(checkin(r, "in", status))
		return answer
	}
	l := merge.NewLedger(act)
	if got := confirm(l, "R1", false); got != event.StatusRecorded {
		t.Fatalf("before any view: %s, want recorded", got)
	}
	if rel := l.Sync(view(10, 2, false), "k1"); rel != nil {
		t.Fatalf("release %+v without a recall", rel)
	}
	for _, step := range []struct {
		resident     string
		hubConfirmed bool
		want         string
	}{
		{"R1", false, event.StatusConfirmed},
		{"R1", false, event.StatusConfirmed}, // again: no second seat
		{"R2", false, event.StatusConfirmed},
		{"R3", false, event.StatusWaitlisted},
		{"R4", true, event.StatusConfirmed}, // the hub promoted R4: never revoked, no seat used
		{"R2", true, event.StatusConfirmed},
	} {
		if got := confirm(l, step.resident, step.hubConfirmed); got != step.want {
			t.Fatalf("%s: %s, want %s", step.resident, got, step.want)
		}
	}
	if l.Used != 2 || l.Available() != 0 {
		t.Fatalf("used %d available %d, want 2 and 0", l.Used, l.Available())
	}
	if _, status := l.Decide("R4", true, false); status != "" {
		t.Fatalf("a check-in of a resident the hub confirmed records status %q, want none", status)
	}
	// A stale view changes nothing; a recall asks for what is left.
	if rel := l.Sync(view(10, 1, true), "k1"); rel != nil || l.Granted != 2 || l.Recalled {
		t.Fatalf("stale view: release %+v, ledger %+v", rel, l)
	}
	l2 := merge.NewLedger(act)
	l2.Sync(view(10, 5, false), "k1")
	confirm(l2, "R1", false)
	rel := l2.Sync(view(10, 5, true), "k1")
	if want := (&event.Release{Activity: act, Granted: 5, Used: 1, Returned: 4}); !reflect.DeepEqual(rel, want) {
		t.Fatalf("release %+v, want %+v", rel, want)
	}
	if got := confirm(l2, "R2", false); got != event.StatusWaitlisted {
		t.Fatalf("after a recall, before the release is recorded: %s, want waitlisted", got)
	}
	l2.Record(rel)
	l2.Record(rel)
	if again := l2.Sync(view(10, 5, true), "k1"); again != nil || l2.Returned != 4 || l2.Available() != 0 {
		t.Fatalf("after the release: again %+v, ledger %+v", again, l2)
	}
	// A larger grant lifts the recall.
	l2.Sync(view(10, 7, false), "k1")
	if got := confirm(l2, "R3", false); got != event.StatusConfirmed || l2.Available() != 1 {
		t.Fatalf("after a new grant: %s, available %d; want confirmed, 1", got, l2.Available())
	}
	// No limit: everyone is confirmed.
	l3 := merge.NewLedger(act)
	l3.Sync(view(0, 0, false), "k1")
	if got := confirm(l3, "R1", false); got != event.StatusConfirmed {
		t.Fatalf("no limit: %s", got)
	}
	// Rebuilding from the kiosk's own events gives the same ledger.
	l4 := merge.NewLedger(act)
	l4.Sync(view(10, 5, false), "k1")
	l4.Record(checkin("R1", "in", "confirmed"))
	l4.Record(checkin("R1", "in", "confirmed"))
	l4.Record(checkin("R9", "in", "waitlisted"))
	l4.Record(checkin("R1", "out", ""))
	l4.Record(&event.Checkin{Resident: "R8", Activity: "other", Action: "in", Status: "confirmed"})
	if l4.Used != 1 || !slices.Equal(l4.Residents, []string{"R1"}) {
		t.Fatalf("rebuilt ledger %+v", l4)
	}
}

// A decision's site is named in it or is that of what it acts on.
func TestDecisionSite(t *testing.T) {
	rep := fact(t, "k1", 1, 0, &event.Report{Category: "facilities", Title: "灯坏了", Building: "B1"})
	s := build(t, fact(t, "hub", 1, 0, &event.ActivitySet{ID: "A1", Title: "t", Type: "activity", Site: site, Capacity: 3}), rep)
	tests := []struct {
		name string
		body event.Body
		want string
	}{
		{"names its site", &event.NoticeSet{ID: "N1", Site: "s9"}, "s9"},
		{"grant of a known activity", &event.Grant{Activity: "A1", Kiosk: "k1", Seats: 1}, site},
		{"promote in an unknown activity", &event.Promote{Activity: "A9", Resident: "R1"}, ""},
		{"patch of a known report", &event.ReportPatch{Report: rep.Event.ID(), Status: "accepted"}, site},
		{"patch of an unknown report", &event.ReportPatch{Report: "k9.1"}, ""},
		{"an edge's event", &event.Checkin{Resident: "R1", Activity: "A1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.DecisionSite(tt.body); got != tt.want {
				t.Fatalf("DecisionSite = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLedgerFullOnlyWhenTheHubIsToo: a kiosk whose share is used up (or
// was never granted) answers "recorded" while the hub's view shows seats
// it does not hold, and "waitlisted" (full) only when none are left; a
// first resident at a kiosk with no share was told "full" and confirmed
// from the reserve moments later.
func TestLedgerFullOnlyWhenTheHubIsToo(t *testing.T) {
	tests := []struct {
		name          string
		view          merge.ActivityView
		confirmedHere []string
		want          string
	}{
		{"no share, one seat at the hub", merge.ActivityView{ID: act, Capacity: 1, SeatsLeft: 1}, nil, event.StatusRecorded},
		{"no share, nothing left", merge.ActivityView{ID: act, Capacity: 1, SeatsLeft: 0}, nil, event.StatusWaitlisted},
		{"share used, the view has not seen ours yet", merge.ActivityView{ID: act, Capacity: 2, SeatsLeft: 1,
			Kiosks: []merge.KioskShare{{Device: "k1", Granted: 1}}}, []string{"R9"}, event.StatusWaitlisted},
		{"share used and seen, one more at the hub", merge.ActivityView{ID: act, Capacity: 3, SeatsLeft: 2, Confirmed: []string{"R9"},
			Kiosks: []merge.KioskShare{{Device: "k1", Granted: 1}}}, []string{"R9"}, event.StatusRecorded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := merge.NewLedger(act)
			l.Sync(&tt.view, "k1")
			for _, r := range tt.confirmedHere {
				a, st := l.Decide(r, false, false)
				if a != event.StatusConfirmed {
					t.Fatalf("setup: %s answered %s", r, a)
				}
				l.Record(checkin(r, "in", st))
			}
			answer, status := l.Decide("R1", false, l.HubMaySeat(&tt.view))
			if answer != tt.want || status != tt.want {
				t.Fatalf("answer %s status %s, want %s", answer, status, tt.want)
			}
		})
	}
}
