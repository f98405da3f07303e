package merge_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"linli/shared/event"
	"linli/shared/merge"
)

// genFacts draws a set of facts from three kiosks, a gateway and two hub
// ids, over few residents, activities and milliseconds so that ties and
// collisions are common.
func genFacts(t *rapid.T) []merge.Fact {
	seqs := map[string]uint64{}
	var reports []string
	var facts []merge.Fact
	kiosks := []string{"k1", "k2", "k3"}
	resident := rapid.SampledFrom([]string{"R1", "R2", "R3", "R4", "R5"})
	activity := rapid.SampledFrom([]string{"A1", "A2"})
	ms := rapid.Int64Range(0, 40)
	add := func(device string, body event.Body) {
		seqs[device]++
		ev, err := event.NewEvent(device, seqs[device], at(ms.Draw(t, "ms")), body)
		if err != nil {
			t.Fatalf("new event: %v", err)
		}
		facts = append(facts, merge.Fact{Site: site, Event: ev})
		if body.Kind() == event.KindReport {
			reports = append(reports, ev.ID())
		}
	}
	reportID := func() string {
		if len(reports) == 0 || rapid.IntRange(0, 5).Draw(t, "stray") == 0 {
			return "k9.1" // a report that never arrives
		}
		return rapid.SampledFrom(reports).Draw(t, "report")
	}
	kiosk := rapid.SampledFrom(kiosks)
	hub := rapid.SampledFrom([]string{"hub", "hub-b"})
	n := rapid.IntRange(1, 40).Draw(t, "n")
	for range n {
		switch rapid.IntRange(0, 18).Draw(t, "kind") {
		case 0:
			add(kiosk.Draw(t, "dev"), &event.Report{Category: "noise", Title: "t", Building: "B1",
				Resident: rapid.SampledFrom([]string{"", "R1", "R2"}).Draw(t, "reporter"),
				Number:   rapid.SampledFrom([]string{"", "B1-0001", "B2-0001"}).Draw(t, "number")})
		case 1:
			add(kiosk.Draw(t, "dev"), &event.Vote{Report: reportID(), Resident: resident.Draw(t, "res")})
		case 2:
			target := activity.Draw(t, "act")
			if rapid.Bool().Draw(t, "report target") {
				target = reportID()
			}
			add(kiosk.Draw(t, "dev"), &event.Rating{Resident: resident.Draw(t, "res"), Target: target,
				Score: rapid.IntRange(1, 5).Draw(t, "score")})
		case 3, 4, 5:
			add(kiosk.Draw(t, "dev"), &event.Checkin{Resident: resident.Draw(t, "res"), Activity: activity.Draw(t, "act"),
				Action: rapid.SampledFrom([]string{"in", "in", "out"}).Draw(t, "action"),
				Status: rapid.SampledFrom([]string{"", "confirmed", "waitlisted", "recorded"}).Draw(t, "status"),
				// "" leaves the act to the hub (the event's time against
				// the window); a kiosk's own judgement stands.
				Act: rapid.SampledFrom([]string{"", "", event.ActSignup, event.ActAttendance}).Draw(t, "check-in act")})
		case 6:
			g := rapid.Uint32Range(1, 4).Draw(t, "granted")
			u := rapid.Uint32Range(0, 4).Draw(t, "used")
			add(kiosk.Draw(t, "dev"), &event.Release{Activity: activity.Draw(t, "act"), Granted: g, Used: u,
				Returned: g - min(g, u)})
		case 7:
			// Windows that open and end amid the facts' times (0–40 ms):
			// sign-ups, attendance and check-ins after the end all occur.
			set := &event.ActivitySet{ID: activity.Draw(t, "act"), Title: "t", Type: "activity", Site: site,
				Capacity: rapid.Uint32Range(0, 5).Draw(t, "capacity")}
			if start := rapid.SampledFrom([]int64{0, 10, 20}).Draw(t, "start"); start > 0 {
				zero := uint32(0)
				set.Start, set.CheckinOpens = base+start, &zero
				set.End = rapid.SampledFrom([]int64{0, set.Start + 10}).Draw(t, "end")
			}
			add(hub.Draw(t, "dev"), set)
		case 8:
			add(hub.Draw(t, "dev"), &event.Grant{Activity: activity.Draw(t, "act"), Kiosk: kiosk.Draw(t, "kiosk"),
				Seats: rapid.Uint32Range(1, 4).Draw(t, "seats")})
		case 9:
			add(hub.Draw(t, "dev"), &event.Recall{Activity: activity.Draw(t, "act"), Kiosk: kiosk.Draw(t, "kiosk"),
				Granted: rapid.Uint32Range(1, 4).Draw(t, "granted")})
		case 10:
			add(hub.Draw(t, "dev"), &event.Promote{Activity: activity.Draw(t, "act"), Resident: resident.Draw(t, "res"),
				From: event.PromoteReserve})
		case 11:
			add(hub.Draw(t, "dev"), &event.ReportPatch{Report: reportID(), Who: "op",
				Status:   rapid.SampledFrom(append([]string{""}, event.ReportStatuses...)).Draw(t, "status"),
				Note:     rapid.SampledFrom([]string{"", "n1", "n2"}).Draw(t, "note"),
				Assignee: rapid.SampledFrom([]string{"a", "b"}).Draw(t, "assignee")})
			// An internal note ("i…", never a public reply's text) beside it.
			add(hub.Draw(t, "dev"), &event.ReportPatch{Report: reportID(), Who: "op", Internal: true,
				Note: rapid.SampledFrom([]string{"i1", "i2"}).Draw(t, "internal note")})
		case 12:
			add(hub.Draw(t, "dev"), &event.NoticeSet{ID: rapid.SampledFrom([]string{"N1", "N2"}).Draw(t, "notice"), Site: site,
				Title: rapid.SampledFrom([]string{"x", "y"}).Draw(t, "title"), Category: "safety",
				Expires: rapid.Int64Range(0, 2).Draw(t, "expires") * (base + 20)})
		case 13:
			add("g1", &event.Alarm{Sensor: "s1", Type: "smoke", Active: rapid.Bool().Draw(t, "active"),
				Building: rapid.SampledFrom([]string{"", "B1", "B2"}).Draw(t, "building")})
		case 14:
			add("g1", &event.Access{Door: "s1", Result: rapid.SampledFrom(event.AccessResults).Draw(t, "result")})
		case 15:
			ack := &event.AlarmAck{Site: site, Source: "s1", Type: rapid.SampledFrom([]string{"smoke", "forced"}).Draw(t, "type"), Who: "op"}
			if rapid.Bool().Draw(t, "clear") {
				add(hub.Draw(t, "dev"), (*event.AlarmClear)(ack))
			} else {
				add(hub.Draw(t, "dev"), ack)
			}
		case 16:
			// Two keys and two card sets: ties by HLC and device decide which
			// list of a building wins, and which key the site reuses.
			add(hub.Draw(t, "dev"), &event.AccessListSet{Site: site, Building: rapid.SampledFrom([]string{"B1", "B2"}).Draw(t, "building"),
				Key: bytes.Repeat([]byte{rapid.ByteRange(1, 2).Draw(t, "key")}, event.AccessKeySize), Who: "op",
				Doors: []event.AccessDoor{{Door: "D1", Cards: [][]byte{bytes.Repeat([]byte{rapid.ByteRange(1, 3).Draw(t, "card")}, event.CardHashSize)}}}})
		case 17:
			// A resident's "still not fixed": before, between and after
			// resolutions, so only some of them reopen.
			add(kiosk.Draw(t, "dev"), &event.ReportReopen{Report: reportID(),
				Resident: rapid.SampledFrom([]string{"", "R1"}).Draw(t, "reopener"),
				Reason:   rapid.SampledFrom([]string{"", "still broken"}).Draw(t, "reason")})
		case 18:
			// Merges, merges back, cycles and undos (into ""), from two hubs.
			dup, into := reportID(), rapid.SampledFrom([]string{"", "", "k9.1"}).Draw(t, "into")
			if into != "" && len(reports) > 0 {
				into = reportID()
			}
			if dup == into {
				into = ""
			}
			add(hub.Draw(t, "dev"), &event.ReportMerge{Report: dup, Into: into, Who: "op"})
		}
	}
	return facts
}

// reshuffle draws another delivery of the same facts: a permutation, cut
// into batches delivered in any order, with some facts (and whole batches)
// delivered again.
func reshuffle(t *rapid.T, facts []merge.Fact) [][]merge.Fact {
	perm := rapid.Permutation(facts).Draw(t, "perm")
	var batches [][]merge.Fact
	for len(perm) > 0 {
		n := rapid.IntRange(1, len(perm)).Draw(t, "batch")
		batches = append(batches, perm[:n])
		perm = perm[n:]
	}
	for range rapid.IntRange(0, 3).Draw(t, "resends") {
		batches = append(batches, rapid.SampledFrom(batches).Draw(t, "resend"))
	}
	batches = rapid.Permutation(batches).Draw(t, "batch order")
	for i, b := range batches {
		if rapid.Bool().Draw(t, "dup") {
			batches[i] = append(b[:len(b):len(b)], rapid.SampledFrom(b).Draw(t, "dup fact"))
		}
	}
	return batches
}

// queries renders everything the hub API reads from a state.
func queries(t tb, s *merge.State) []byte {
	t.Helper()
	var views []any
	for _, r := range s.Reports("") {
		v, _ := s.ReportView(r.ID)
		views = append(views, r, v)
	}
	for _, a := range s.Activities("") {
		v, _ := s.ActivityView(a.ID)
		views = append(views, a, v)
	}
	views = append(views, s.OpenAlarms(""), s.Notices("", at(0)))
	data, err := json.Marshal(views)
	if err != nil {
		t.Fatalf("render queries: %v", err)
	}
	return data
}

// TestConvergence is the merge's main property: any permutation,
// duplication and regrouping of the same facts gives byte-identical
// state, and the same answers to every query.
func TestConvergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		facts := genFacts(t)
		want := build(t, facts...)
		wantBytes, wantQueries := encode(t, want), queries(t, want)

		// The same batches, once fact by fact and once batch by batch.
		batches := reshuffle(t, facts)
		got, batched := merge.New(), merge.New()
		prev, prevBatched := encode(t, got), encode(t, batched)
		for _, b := range batches {
			for _, f := range b {
				refs, err := got.Apply(f)
				if err != nil {
					t.Fatalf("apply %s: %v", f.Event.ID(), err)
				}
				// Every change is reported, so the hub never misses one
				// to send down.
				now := encode(t, got)
				if !bytes.Equal(now, prev) && len(refs) == 0 {
					t.Fatalf("apply %s %s changed the state but returned no refs", f.Event.Kind, f.Event.ID())
				}
				prev = now
			}
			refs, err := batched.ApplyBatch(b)
			if err != nil {
				t.Fatalf("apply batch: %v", err)
			}
			now := encode(t, batched)
			if !bytes.Equal(now, prevBatched) && len(refs) == 0 {
				t.Fatal("a batch changed the state but returned no refs")
			}
			prevBatched = now
		}
		for _, r := range want.Reports("") {
			// Internal notes stay at the hub: never in a kiosk's view.
			v, _ := want.ReportView(r.ID)
			if strings.HasPrefix(v.Note, "i") {
				t.Fatalf("report %s: the downlink view carries the internal note %q", r.ID, v.Note)
			}
			for _, st := range v.Steps {
				if strings.HasPrefix(st.Reply, "i") {
					t.Fatalf("report %s: the downlink timeline carries the internal note %q", r.ID, st.Reply)
				}
			}
		}
		for name, s := range map[string]*merge.State{"fact by fact": got, "batch by batch": batched} {
			if data := encode(t, s); !bytes.Equal(data, wantBytes) {
				t.Fatalf("%s: states differ:\n%x\n%x", name, data, wantBytes)
			}
			if q := queries(t, s); !bytes.Equal(q, wantQueries) {
				t.Fatalf("%s: queries differ:\n%s\n%s", name, q, wantQueries)
			}
		}
	})
}

// TestActivityAccounting: whatever the facts, Seated counts the confirmed
// residents who have not left, and nobody is both confirmed and
// waitlisted.
func TestActivityAccounting(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := build(t, genFacts(t)...)
		for _, a := range s.Activities("") {
			// Only attendance counts: hours, the attendance figure and
			// ratings come from residents who checked in inside the
			// window, never from a sign-up alone.
			for _, h := range a.Hours {
				if !slices.Contains(a.Attended, h.Resident) {
					t.Fatalf("%s: %s has hours but did not attend (%+v)", a.ID, h.Resident, a)
				}
			}
			if int(a.Attendance) > len(a.Attended) {
				t.Fatalf("%s: attendance %d of %d attended", a.ID, a.Attendance, len(a.Attended))
			}
			rs := s.Ratings(a.ID)
			if n := a.Rating.Count + a.Rating.Ignored; int(n) != len(rs) {
				t.Fatalf("%s: %d ratings counted or ignored of %d", a.ID, n, len(rs))
			}
			for _, r := range rs {
				if r.Ignored == slices.Contains(a.Attended, r.Resident) {
					t.Fatalf("%s: rating by %s ignored=%v, attended %v", a.ID, r.Resident, r.Ignored, a.Attended)
				}
			}
			left := map[string]bool{}
			for _, r := range a.Left {
				left[r] = true
			}
			var seated uint32
			for _, r := range a.Confirmed {
				if !left[r] {
					seated++
				}
				if s.Outcome(a.ID, r) != event.StatusConfirmed {
					t.Fatalf("%s: %s confirmed but outcome %q", a.ID, r, s.Outcome(a.ID, r))
				}
			}
			if seated != a.Seated {
				t.Fatalf("%s: seated %d, want %d (%+v)", a.ID, a.Seated, seated, a)
			}
			for _, r := range a.Waitlist {
				if s.Outcome(a.ID, r) != event.StatusWaitlisted {
					t.Fatalf("%s: %s waitlisted but outcome %q", a.ID, r, s.Outcome(a.ID, r))
				}
			}
			for _, r := range a.Waitlist {
				if slices.Contains(a.Confirmed, r) {
					t.Fatalf("%s: %s both confirmed and waitlisted", a.ID, r)
				}
			}
		}
	})
}
