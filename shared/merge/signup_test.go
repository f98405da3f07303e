package merge_test

import (
	"slices"
	"testing"

	"linli/shared/event"
	"linli/shared/merge"
)

// The activity of these tests starts two days after base and lasts two
// hours; attendance opens an hour before its start (the default).
const (
	day     = int64(24 * 3_600_000)
	hour    = int64(3_600_000)
	startMs = 2 * day
)

func signupActivity(t *testing.T) merge.Fact {
	return fact(t, "hub", 1, 0, &event.ActivitySet{ID: "A1", Title: "义诊", Type: "volunteer", Site: site,
		Start: base + startMs, End: base + startMs + 2*hour, Capacity: 2})
}

func signIn(t *testing.T, dev string, seq uint64, ms int64, resident, action, status, act string) merge.Fact {
	return fact(t, dev, seq, ms, &event.Checkin{Resident: resident, Activity: "A1", Action: action, Status: status, Act: act})
}

// TestSignupIsNotAttendance: a check-in before the window is a sign-up
// (a seat, no attendance, no hours, no say in the rating); inside it,
// attendance; after the end, nothing. Each case holds in every order.
func TestSignupIsNotAttendance(t *testing.T) {
	tests := []struct {
		name       string
		facts      func(t *testing.T) []merge.Fact
		confirmed  []string
		attended   []string
		signups    uint32
		attendance uint32
		millis     map[string]int64
		waitlist   []string
	}{
		{
			name: "sign-up two days ahead takes a seat, is not attendance",
			facts: func(t *testing.T) []merge.Fact {
				return []merge.Fact{signIn(t, "k1", 1, 10, "R1", "in", event.StatusConfirmed, event.ActSignup)}
			},
			confirmed: []string{"R1"}, attended: []string{}, signups: 1,
		},
		{
			name: "a kiosk that did not know the activity: the hub judges by the event's time",
			facts: func(t *testing.T) []merge.Fact {
				return []merge.Fact{signIn(t, "k1", 1, 10, "R1", "in", event.StatusRecorded, "")}
			},
			confirmed: []string{}, attended: []string{}, signups: 1, waitlist: []string{"R1"},
		},
		{
			name: "signed up, then came: keeps the seat, attended, hours from the attendance only",
			facts: func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					signIn(t, "k1", 1, 10, "R1", "in", event.StatusConfirmed, event.ActSignup),
					signIn(t, "k1", 2, startMs-30*60_000, "R1", "in", event.StatusConfirmed, event.ActAttendance),
					signIn(t, "k1", 3, startMs+hour, "R1", "out", event.StatusRecorded, ""),
				}
			},
			confirmed: []string{"R1"}, attended: []string{"R1"}, signups: 1, attendance: 1,
			millis: map[string]int64{"R1": hour + 30*60_000},
		},
		{
			name: "a sign-up and a check-out before the window: no hours",
			facts: func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					signIn(t, "k1", 1, 10, "R1", "in", event.StatusConfirmed, event.ActSignup),
					signIn(t, "k1", 2, 20, "R1", "out", event.StatusRecorded, ""),
				}
			},
			confirmed: []string{"R1"}, attended: []string{}, signups: 1,
		},
		{
			name: "checked out after the end: hours stop at the end",
			facts: func(t *testing.T) []merge.Fact {
				return []merge.Fact{
					signIn(t, "k1", 1, startMs, "R2", "in", event.StatusConfirmed, event.ActAttendance),
					signIn(t, "k1", 2, startMs+5*hour, "R2", "out", event.StatusRecorded, ""),
				}
			},
			confirmed: []string{"R2"}, attended: []string{"R2"}, attendance: 1,
			millis: map[string]int64{"R2": 2 * hour},
		},
		{
			name: "a check-in after the end, recorded by a kiosk that did not know: ignored",
			facts: func(t *testing.T) []merge.Fact {
				return []merge.Fact{signIn(t, "k1", 1, startMs+3*hour, "R3", "in", event.StatusRecorded, "")}
			},
			confirmed: []string{}, attended: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sameBothWays(t, append(tt.facts(t), signupActivity(t))...)
			a, err := s.Activity("A1")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Confirmed, tt.confirmed) || !slices.Equal(a.Attended, tt.attended) ||
				a.Signups != tt.signups || a.Attendance != tt.attendance {
				t.Fatalf("confirmed %v attended %v signups %d attendance %d\nwant %v %v %d %d",
					a.Confirmed, a.Attended, a.Signups, a.Attendance, tt.confirmed, tt.attended, tt.signups, tt.attendance)
			}
			if !slices.Equal(a.Waitlist, tt.waitlist) && len(a.Waitlist)+len(tt.waitlist) > 0 {
				t.Fatalf("waitlist %v, want %v", a.Waitlist, tt.waitlist)
			}
			got := map[string]int64{}
			for _, h := range a.Hours {
				got[h.Resident] = h.Millis
			}
			if len(got) != len(tt.millis) {
				t.Fatalf("hours %v, want %v", got, tt.millis)
			}
			for r, ms := range tt.millis {
				if got[r] != ms {
					t.Fatalf("hours %v, want %v", got, tt.millis)
				}
			}
			rows, _ := s.Attendance("A1")
			for _, row := range rows {
				if row.Attended != slices.Contains(tt.attended, row.Resident) {
					t.Fatalf("attendance row %+v", row)
				}
			}
		})
	}
}

// TestRatingNeedsAttendance: the merge counts an activity's ratings only
// from residents who attended; a rating by someone who only signed up is
// kept and shown as ignored, and counts once they attend, whatever order
// the facts arrive in.
func TestRatingNeedsAttendance(t *testing.T) {
	rate := func(seq uint64, resident string, score int) merge.Fact {
		return fact(t, "k1", seq, startMs+3*hour, &event.Rating{Resident: resident, Target: "A1", Score: score})
	}
	facts := []merge.Fact{
		signupActivity(t),
		signIn(t, "k1", 1, 10, "R1", "in", event.StatusConfirmed, event.ActSignup),
		signIn(t, "k1", 2, 20, "R2", "in", event.StatusConfirmed, event.ActSignup),
		signIn(t, "k1", 3, startMs, "R2", "in", event.StatusConfirmed, event.ActAttendance),
		rate(4, "R1", 1), // signed up, never came
		rate(5, "R2", 5),
	}
	s := sameBothWays(t, facts...)
	if got := s.Rating("A1"); got.Count != 1 || got.Sum != 5 || got.Ignored != 1 {
		t.Fatalf("rating %+v, want R2's 5 counted and R1's ignored", got)
	}
	rs := s.Ratings("A1")
	if len(rs) != 2 || !rs[0].Ignored || rs[1].Ignored {
		t.Fatalf("ratings %+v", rs)
	}
	if pts := s.RatingPoints(site); len(pts) != 1 || pts[0].Score != 5 {
		t.Fatalf("dashboard rating points %+v: only the attendee's", pts)
	}
	// R1 comes after all: their rating counts now.
	s = sameBothWays(t, append(facts, signIn(t, "k1", 6, startMs+10, "R1", "in", event.StatusConfirmed, event.ActAttendance))...)
	if got := s.Rating("A1"); got.Count != 2 || got.Ignored != 0 {
		t.Fatalf("rating %+v after R1 attended", got)
	}
}

// TestDecodeRefoldsAttendance: a state decoded from its snapshot shows the
// same sign-ups and attendance as the state that wrote it.
func TestDecodeRefoldsAttendance(t *testing.T) {
	s := build(t, signupActivity(t),
		signIn(t, "k1", 1, 10, "R1", "in", event.StatusConfirmed, event.ActSignup),
		signIn(t, "k1", 2, startMs, "R2", "in", event.StatusConfirmed, event.ActAttendance))
	d, err := merge.Decode(encode(t, s))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := d.Activity("A1")
	if a.Signups != 1 || a.Attendance != 1 || !slices.Equal(a.Attended, []string{"R2"}) {
		t.Fatalf("decoded %+v", a)
	}
}
