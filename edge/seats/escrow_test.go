package seats

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/merge"
	"linli/shared/test/edgetest"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

// kiosk is a kiosk's outbox, replica and seats on a real Badger.
type kiosk struct {
	ob  *outbox.Log
	rep *replica.Replica
	s   *Seats
	seq uint64 // downlink seq applied
}

func newKiosk(t *testing.T) *kiosk {
	t.Helper()
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	rep, err := replica.Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &kiosk{ob: ob, rep: rep, s: New(db, ob, rep, slog.New(slog.DiscardHandler))}
}

// apply syncs a new version of the activity view, as the hub sends it.
func (k *kiosk) apply(t *testing.T, v merge.ActivityView) {
	t.Helper()
	body, err := event.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	k.seq++
	if err := k.rep.Apply(wire.Down{Site: "s1", Prev: k.seq - 1, Last: k.seq,
		Changes: []wire.Change{{Seq: k.seq, Entity: wire.EntityActivity, ID: v.ID, Body: body}}}); err != nil {
		t.Fatal(err)
	}
}

func (k *kiosk) checkin(t *testing.T, activity, resident, action string) (Answer, error) {
	t.Helper()
	_, a, err := k.s.Checkin(context.Background(), &event.Checkin{Resident: resident, Activity: activity, Action: action})
	return a, err
}

// releases are the releases in the kiosk's outbox.
func (k *kiosk) releases(t *testing.T) []event.Release {
	t.Helper()
	evs, err := k.ob.Read(0, 1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Release
	for _, ev := range evs {
		if ev.Kind != event.KindRelease {
			continue
		}
		b, err := ev.Decode()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *b.(*event.Release))
	}
	return out
}

// signup is an activity whose check-ins are sign-ups (it starts in two
// days), with capacity seats of which this kiosk holds granted.
func signup(capacity, seatsLeft, granted uint32) merge.ActivityView {
	now := time.Now()
	return merge.ActivityView{ID: "A1", Title: "义诊", Kind: "activity", Site: "s1", Capacity: capacity, SeatsLeft: seatsLeft,
		Kiosks: []merge.KioskShare{{Device: "kiosk-1", Granted: granted}},
		Start:  now.Add(48 * time.Hour).UnixMilli(), End: now.Add(50 * time.Hour).UnixMilli(), CheckinOpens: now.Add(47 * time.Hour).UnixMilli()}
}

// The kiosk confirms from its share at once, offline; when the share is
// used up it records (the hub may still seat) or waitlists (no seat is
// left anywhere); a resident confirmed here or by the hub is confirmed
// again without taking a seat.
func TestShareAllocation(t *testing.T) {
	k := newKiosk(t)
	v := signup(3, 3, 2)
	k.apply(t, v)
	for _, step := range []struct {
		resident, want string
	}{
		{"R1", event.StatusConfirmed},
		{"R2", event.StatusConfirmed},
		{"R3", event.StatusRecorded},  // share used; the hub holds the third seat
		{"R1", event.StatusConfirmed}, // a repeat takes no second seat
	} {
		a, err := k.checkin(t, "A1", step.resident, "in")
		if err != nil || a.Status != step.want || a.Act != event.ActSignup {
			t.Fatalf("%s checks in: %+v, %v; want %s sign-up", step.resident, a, err, step.want)
		}
	}
	if n, err := k.s.Unseen(&v); err != nil || n != 2 {
		t.Errorf("Unseen = %d, %v; want the 2 residents confirmed here", n, err)
	}
	// The hub seated R3 from its reserve and R9 at another kiosk: no seat
	// is left anywhere.
	v.SeatsLeft, v.Confirmed = 0, []string{"R1", "R2", "R3", "R9"}
	k.apply(t, v)
	for _, step := range []struct {
		resident, want string
	}{
		{"R4", event.StatusWaitlisted},
		{"R9", event.StatusConfirmed}, // the hub confirmed them
	} {
		if a, err := k.checkin(t, "A1", step.resident, "in"); err != nil || a.Status != step.want {
			t.Fatalf("%s checks in: %+v, %v; want %s", step.resident, a, err, step.want)
		}
	}
	for resident, want := range map[string]string{"R1": event.StatusConfirmed, "R3": event.StatusRecorded, "R4": event.StatusWaitlisted, "R7": ""} {
		if got, err := k.s.Mine("A1", resident); err != nil || got != want {
			t.Errorf("Mine(%s) = %q, %v; want %q", resident, got, err, want)
		}
	}
	// An activity the kiosk does not know is the hub's to decide.
	if a, err := k.checkin(t, "A2", "R1", "in"); err != nil || a.Status != event.StatusRecorded || a.Act != "" {
		t.Errorf("unknown activity: %+v, %v; want recorded, no act", a, err)
	}
}

// A recall gives the unused seats of the share back (one release, however
// often the recall is seen) and the kiosk confirms no more from it.
func TestRecallReleasesUnusedSeats(t *testing.T) {
	k := newKiosk(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	v := signup(10, 10, 5)
	k.apply(t, v)
	for _, r := range []string{"R1", "R2"} {
		if a, err := k.checkin(t, "A1", r, "in"); err != nil || a.Status != event.StatusConfirmed {
			t.Fatalf("%s: %+v, %v", r, a, err)
		}
	}
	v.Kiosks[0].Recalled = true
	k.apply(t, v)
	poll.WaitFor(t, "the release", func() bool { return len(k.releases(t)) == 1 })
	rel := k.releases(t)[0]
	if rel.Granted != 5 || rel.Used != 2 || rel.Returned != 3 {
		t.Errorf("release %+v, want granted 5, used 2, returned 3", rel)
	}
	k.apply(t, v) // the same recall again
	// The hub took the 3 seats back (10 left, none held here): a new
	// resident is recorded for the hub, not confirmed from the share.
	if a, err := k.checkin(t, "A1", "R3", "in"); err != nil || a.Status != event.StatusRecorded {
		t.Errorf("after the recall: %+v, %v; want recorded", a, err)
	}
	if n := len(k.releases(t)); n != 1 {
		t.Errorf("%d releases after the recall was seen twice, want 1", n)
	}
	// A new grant after the recall is a share again.
	v.Kiosks[0] = merge.KioskShare{Device: "kiosk-1", Granted: 7}
	k.apply(t, v)
	if a, err := k.checkin(t, "A1", "R4", "in"); err != nil || a.Status != event.StatusConfirmed {
		t.Errorf("after a new grant: %+v, %v; want confirmed", a, err)
	}
}

// A cancelled or ended activity refuses a check-in and stores nothing; a
// check-out still goes through. Inside the window a check-in is
// attendance.
func TestCancelledEndedAndAttendance(t *testing.T) {
	k := newKiosk(t)
	now := time.Now()
	live := signup(0, 0, 0)
	live.Start, live.End, live.CheckinOpens = now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli(), now.Add(-2*time.Hour).UnixMilli()
	k.apply(t, live)
	if a, err := k.checkin(t, "A1", "R1", "in"); err != nil || a.Act != event.ActAttendance || a.Status != event.StatusConfirmed {
		t.Fatalf("inside the window: %+v, %v; want confirmed attendance", a, err)
	}
	if known, attended, err := k.s.Attended("A1", "R1"); err != nil || !known || !attended {
		t.Errorf("Attended(R1) = %v, %v, %v", known, attended, err)
	}
	if _, attended, _ := k.s.Attended("A1", "R2"); attended {
		t.Error("R2 attended without checking in")
	}

	for _, tc := range []struct {
		name string
		edit func(*merge.ActivityView)
		want error
	}{
		{"cancelled", func(v *merge.ActivityView) { v.Cancelled = true }, ErrCancelled},
		{"ended", func(v *merge.ActivityView) {
			v.Start, v.End = now.Add(-3*time.Hour).UnixMilli(), now.Add(-2*time.Hour).UnixMilli()
		}, ErrEnded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := live
			tc.edit(&v)
			k.apply(t, v)
			last, _, _ := k.ob.Cursors()
			if _, err := k.checkin(t, "A1", "R5", "in"); !errors.Is(err, tc.want) {
				t.Fatalf("check-in: %v, want %v", err, tc.want)
			}
			if now, _, _ := k.ob.Cursors(); now != last {
				t.Errorf("a refused check-in was stored (seq %d → %d)", last, now)
			}
			if a, err := k.checkin(t, "A1", "R1", "out"); err != nil || a.Status != event.StatusRecorded {
				t.Errorf("check-out: %+v, %v; want recorded", a, err)
			}
			k.apply(t, live)
		})
	}
}
