package kiosk

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/edge/api"
	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/edge/seats"
	"linli/shared/event"
	"linli/shared/merge"
	"linli/shared/test/edgetest"
	"linli/shared/wire"
)

// testClock is a settable clock for the outbox (it stamps events and
// decides sign-up or attendance) and the mirror.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// seatsKiosk is a kiosk API over a real outbox, replica and seats on
// Badger, with the clock the test sets; views are what the hub sent down.
type seatsKiosk struct {
	url   string
	ob    *outbox.Log
	rep   *replica.Replica
	clock *testClock
	seq   uint64
}

func newSeatsKiosk(t *testing.T, now time.Time) *seatsKiosk {
	t.Helper()
	clock := &testClock{t: now}
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := replica.Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st := seats.New(db, ob, rep, slog.New(slog.DiscardHandler))
	edge := &api.API{Role: api.RoleKiosk, Log: ob, Sync: offline{}, Seats: st, Registry: prometheus.NewRegistry(),
		Replica: &Mirror{Rep: rep, Own: ob, Mine: st, Now: clock.Now}}
	srv := httptest.NewServer(serve(edge, &Handlers{}))
	t.Cleanup(func() {
		srv.Close()
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	})
	return &seatsKiosk{url: srv.URL, ob: ob, rep: rep, clock: clock}
}

// view applies the hub's view of an activity, as the downlink does.
func (k *seatsKiosk) view(t *testing.T, v merge.ActivityView) {
	t.Helper()
	b, err := event.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	k.seq++
	if err := k.rep.Apply(wire.Down{Site: "s1", Prev: k.seq - 1, Last: k.seq,
		Changes: []wire.Change{{Seq: k.seq, Entity: wire.EntityActivity, ID: v.ID, Body: b}}}); err != nil {
		t.Fatal(err)
	}
}

func (k *seatsKiosk) last() uint64 { last, _, _ := k.ob.Cursors(); return last }

// An activity two days from now, 09:00–11:00; attendance opens at 08:00.
var (
	actStart = time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)
	actEnd   = actStart.Add(2 * time.Hour)
)

func windowView(capacity, share, seatsLeft uint32) merge.ActivityView {
	v := merge.ActivityView{ID: "A1", Title: "社区义诊", Kind: "volunteer", Site: "s1", Start: actStart.UnixMilli(),
		End: actEnd.UnixMilli(), Capacity: capacity, SeatsLeft: seatsLeft, CheckinOpens: actStart.Add(-time.Hour).UnixMilli(),
		Kiosks: []merge.KioskShare{}}
	if share > 0 {
		v.Kiosks = []merge.KioskShare{{Device: "kiosk-1", Granted: share}}
	}
	return v
}

// TestCheckinBeforeInsideAfterTheWindow: before the window a check-in is a
// sign-up that takes a seat; inside it attendance (the resident keeps the
// seat); after the end a 409 naming activity, with nothing stored. A
// resident may rate the activity only once they attended.
func TestCheckinBeforeInsideAfterTheWindow(t *testing.T) {
	k := newSeatsKiosk(t, actStart.Add(-48*time.Hour))
	k.view(t, windowView(10, 4, 10))
	steps := []struct {
		name   string
		at     time.Time
		path   string
		body   string
		code   int
		status string
		act    string
		field  string
	}{
		{"two days ahead: a sign-up, with a seat", actStart.Add(-48 * time.Hour), "/api/v1/checkins",
			`{"resident":"R1","activity":"A1"}`, 201, "confirmed", "signup", ""},
		{"a sign-up is not attendance: no rating", actStart.Add(-47 * time.Hour), "/api/v1/ratings",
			`{"resident":"R1","target":"A1","score":5}`, 409, "", "", "target"},
		{"an hour before the start the window is open: attendance", actStart.Add(-time.Hour), "/api/v1/checkins",
			`{"resident":"R1","activity":"A1"}`, 201, "confirmed", "attendance", ""},
		{"no sign-up, inside the window: attendance with a seat", actStart.Add(time.Minute), "/api/v1/checkins",
			`{"resident":"R2","activity":"A1","action":"in"}`, 201, "confirmed", "attendance", ""},
		{"attended: may rate", actEnd.Add(-time.Minute), "/api/v1/ratings",
			`{"resident":"R1","target":"A1","score":5}`, 201, "", "", ""},
		{"check-out after the end is kept", actEnd.Add(time.Minute), "/api/v1/checkins",
			`{"resident":"R2","activity":"A1","action":"out"}`, 201, "recorded", "", ""},
		{"after the end: 409 naming activity", actEnd, "/api/v1/checkins",
			`{"resident":"R3","activity":"A1"}`, 409, "", "", "activity"},
		{"days after the end too", actEnd.Add(72 * time.Hour), "/api/v1/checkins",
			`{"resident":"R1","activity":"A1"}`, 409, "", "", "activity"},
		{"an activity the kiosk does not know: recorded for the hub", actEnd.Add(72 * time.Hour), "/api/v1/checkins",
			`{"resident":"R1","activity":"A9"}`, 201, "recorded", "", ""},
		{"a rating of an unknown activity is left to the hub", actEnd.Add(72 * time.Hour), "/api/v1/ratings",
			`{"resident":"R1","target":"A9","score":4}`, 201, "", "", ""},
	}
	for _, s := range steps {
		k.clock.Set(s.at)
		before := k.last()
		code, out := edgetest.PostJSON(t, k.url+s.path, s.body)
		if code != s.code {
			t.Fatalf("%s: %d %v, want %d", s.name, code, out, s.code)
		}
		if code >= 400 {
			if out["field"] != s.field || out["error"] == "" {
				t.Fatalf("%s: %v, want an error naming %q", s.name, out, s.field)
			}
			if k.last() != before {
				t.Fatalf("%s: refused, yet an event was stored", s.name)
			}
			continue
		}
		if s.status != "" && out["status"] != s.status {
			t.Fatalf("%s: status %v, want %s", s.name, out["status"], s.status)
		}
		if got, _ := out["act"].(string); got != s.act {
			t.Fatalf("%s: act %q, want %q", s.name, got, s.act)
		}
	}
	// The stored events carry the act, for the hub.
	evs, err := k.ob.Read(0, 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, ev := range evs {
		if b, _ := ev.Decode(); b != nil {
			if c, ok := b.(*event.Checkin); ok && c.Action == "in" {
				acts = append(acts, c.Resident+":"+c.Act+":"+c.Status)
			}
		}
	}
	want := []string{"R1:signup:confirmed", "R1:attendance:confirmed", "R2:attendance:confirmed", "R1::recorded"}
	if len(acts) != len(want) {
		t.Fatalf("stored check-ins %v, want %v", acts, want)
	}
	for i := range want {
		if acts[i] != want[i] {
			t.Fatalf("stored check-ins %v, want %v", acts, want)
		}
	}
	// The list tells the UI what a check-in would be now.
	for _, c := range []struct {
		at  time.Time
		act string
	}{{actStart.Add(-2 * time.Hour), "signup"}, {actStart, "attendance"}, {actEnd, "ended"}} {
		k.clock.Set(c.at)
		var list []replica.Activity
		if code := getJSON(t, k.url+"/api/v1/activities?resident=R1", &list); code != 200 || len(list) != 1 {
			t.Fatalf("activities: %d %+v", code, list)
		}
		if list[0].Act != c.act || !list[0].Attended || list[0].CheckinOpens == nil {
			t.Fatalf("at %v: %+v, want act %s, attended", c.at, list[0], c.act)
		}
	}
}

// TestSeatsLeftCountsSignupsHere: a seat given at this kiosk (offline,
// before the hub lists it) lowers the seats left the kiosk shows at once;
// it did not change until the hub's next view.
func TestSeatsLeftCountsSignupsHere(t *testing.T) {
	k := newSeatsKiosk(t, actStart.Add(-48*time.Hour))
	k.view(t, windowView(10, 4, 10))
	if code, out := edgetest.PostJSON(t, k.url+"/api/v1/checkins", `{"resident":"R1","activity":"A1"}`); code != 201 || out["status"] != "confirmed" {
		t.Fatalf("sign-up: %d %v", code, out)
	}
	var list []replica.Activity
	if code := getJSON(t, k.url+"/api/v1/activities", &list); code != 200 || len(list) != 1 || list[0].SeatsLeft != 9 {
		t.Fatalf("after a sign-up here: %d %+v, want 9 seats left", code, list)
	}
	// The hub's view lists R1 now: counted once, not twice.
	v := windowView(10, 4, 9)
	v.Confirmed = []string{"R1"}
	k.view(t, v)
	if code := getJSON(t, k.url+"/api/v1/activities", &list); code != 200 || list[0].SeatsLeft != 9 {
		t.Fatalf("after the hub's view: %+v, want 9 seats left", list)
	}
}

// TestNoShareAnswersRecordedWhileTheHubHasSeats: a kiosk with no share of
// a one-seat activity told the first resident "full, waitlisted" while the
// hub still had the seat; it answers recorded (awaiting confirmation), and
// waitlisted only when the hub's view shows no seat left.
func TestNoShareAnswersRecordedWhileTheHubHasSeats(t *testing.T) {
	tests := []struct {
		name      string
		seatsLeft uint32
		want      string
	}{
		{"the hub's reserve holds the seat", 1, event.StatusRecorded},
		{"no seat left anywhere", 0, event.StatusWaitlisted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newSeatsKiosk(t, actStart.Add(-48*time.Hour))
			k.view(t, windowView(1, 0, tt.seatsLeft))
			code, out := edgetest.PostJSON(t, k.url+"/api/v1/checkins", `{"resident":"R1","activity":"A1"}`)
			if code != http.StatusCreated || out["status"] != tt.want || out["act"] != "signup" {
				t.Fatalf("%d %v, want 201 %s (signup)", code, out, tt.want)
			}
		})
	}
}
