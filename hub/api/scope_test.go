package api

import (
	"strings"
	"testing"
	"time"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
)

// An operator scoped to other sites gets the same answer for an id of a
// site they do not have as for an id that does not exist, reading or
// writing: the answer does not tell them that the id exists.
func TestOtherSiteIDsAnswerAsMissing(t *testing.T) {
	d := newDash(t)
	ev1 := d.edgeFact(t, "kiosk-1", 1, 0, &event.Report{Category: "elevator", Title: "电梯异响", Building: "B2", Resident: "R1"})
	ev2 := d.edgeFact(t, "kiosk-1", 2, 1, &event.Report{Category: "elevator", Title: "电梯又响", Building: "B2", Resident: "R2"})
	rep, into := ev1.ID(), ev2.ID()
	own, err := event.NewEvent("kiosk-7", 1, hlc.New(1_740_000_000_000, 0), &event.Report{Category: "elevator", Title: "电梯", Building: "C1", Resident: "R3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.state.Apply("s2", own); err != nil {
		t.Fatal(err)
	}
	d.edgeFact(t, "gw-1", 1, 0, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: true, Building: "B3", Value: 1})
	alarm := merge.AlarmID("s1", "B3-smoke-1", "smoke")
	exp := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	if code, body := d.call(t, "op", "POST", "/api/v1/notices", "", `{"id":"N1","site":"s1","title":"停水通知","expires":"`+exp+`"}`); code != 201 {
		t.Fatalf("publish: %d %s", code, body)
	}
	if code, body := d.call(t, "op", "POST", "/api/v1/activities", "", `{"id":"A1","title":"太极拳","site":"s1","capacity":20}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, c := range []struct {
		name, method, path, body string
		id, missing              string // an id of site s1, and one that does not exist
	}{
		{"read report", "GET", "/api/v1/reports/ID", "", rep, "kiosk-9.9"},
		{"patch report", "PATCH", "/api/v1/reports/ID", `{"status":"accepted"}`, rep, "kiosk-9.9"},
		{"patch report to a bad status", "PATCH", "/api/v1/reports/ID", `{"status":"submitted"}`, rep, "kiosk-9.9"},
		{"bulk patch", "POST", "/api/v1/reports/bulk", `{"ids":["ID"],"status":"accepted"}`, rep, "kiosk-9.9"},
		{"merge report", "POST", "/api/v1/reports/ID/merge", `{"into":"` + into + `"}`, rep, "kiosk-9.9"},
		{"merge into report", "POST", "/api/v1/reports/" + own.ID() + "/merge", `{"into":"ID"}`, into, "kiosk-9.9"},
		{"unmerge report", "POST", "/api/v1/reports/ID/unmerge", "", rep, "kiosk-9.9"},
		{"read activity", "GET", "/api/v1/activities/ID", "", "A1", "A9"},
		{"patch activity", "PATCH", "/api/v1/activities/ID", `{"venue":"文化广场"}`, "A1", "A9"},
		{"cancel activity", "POST", "/api/v1/activities/ID/cancel", "", "A1", "A9"},
		{"attendance", "GET", "/api/v1/activities/ID/attendance.csv", "", "A1", "A9"},
		{"patch notice", "PATCH", "/api/v1/notices/ID", `{"title":"更正"}`, "N1", "N9"},
		{"withdraw notice", "POST", "/api/v1/notices/ID/withdraw", "", "N1", "N9"},
		{"notice delivery", "GET", "/api/v1/notices/ID/delivery", "", "N1", "N9"},
		{"ack alarm", "POST", "/api/v1/alarms/ID/ack", "", alarm, merge.AlarmID("s1", "B9-smoke-9", "smoke")},
		{"clear alarm", "POST", "/api/v1/alarms/ID/clear", "", alarm, merge.AlarmID("s1", "B9-smoke-9", "smoke")},
		{"device events", "GET", "/api/v1/events?device=ID", "", "kiosk-1", "kiosk-9"},
		{"open311 request", "GET", "/open311/v2/requests/ID.json", "", rep, "kiosk-9.9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			answer := func(id string) (int, string) {
				code, body := d.call(t, "s2", c.method, strings.ReplaceAll(c.path, "ID", id), "", strings.ReplaceAll(c.body, "ID", id))
				return code, strings.ReplaceAll(body, id, "ID")
			}
			code, body := answer(c.id)
			mcode, mbody := answer(c.missing)
			if code != 404 || code != mcode || body != mbody {
				t.Fatalf("another site's %s: %d %s; a missing id: %d %s; want the same 404", c.id, code, body, mcode, mbody)
			}
		})
	}
	// The site's own operator still gets through.
	if code, body := d.call(t, "op", "GET", "/api/v1/reports/"+rep, "", ""); code != 200 {
		t.Fatalf("own site's report: %d %s", code, body)
	}
}
