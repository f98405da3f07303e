package api

import (
	"strings"
	"testing"

	"linli/shared/event"
)

// The public page a kiosk's QR code opens needs no login and shows the
// number, category, building, status and the office's replies — never
// the resident, their unit, title or description, nor a resident's
// reason for reopening, nor who handled it.
func TestPublicReportPage(t *testing.T) {
	d := newDash(t, xiangyang)
	d.edgeFact(t, "kiosk-1", 1, 0, &event.Report{Category: "elevator", Title: "RESIDENT-TITLE", Description: "RESIDENT-TEXT",
		Building: "B2", Unit: "3-1201", Resident: "R-SECRET-1", Number: "B2-0007"})
	d.edgeFact(t, "kiosk-1", 2, 10, &event.Report{Category: "elevator", Title: "电梯有怪声", Building: "B2", Resident: "R-SECRET-2", Number: "B2-0008"})
	d.edgeFact(t, "kiosk-1", 3, 20, &event.Vote{Report: "kiosk-1.1", Resident: "R-SECRET-3"})
	for _, patch := range []string{
		`{"status":"accepted","note":"已派维修","assignee":"ASSIGNEE-NAME"}`,
		`{"status":"resolved","note":"已更换导轨"}`,
	} {
		if code, body := d.call(t, "op", "PATCH", "/api/v1/reports/kiosk-1.1", "application/json", patch); code != 200 {
			t.Fatalf("patch: %d %s", code, body)
		}
	}
	if code, body := d.call(t, "op", "POST", "/api/v1/reports/kiosk-1.2/merge", "application/json", `{"into":"kiosk-1.1"}`); code >= 300 {
		t.Fatalf("merge: %d %s", code, body)
	}
	d.edgeFact(t, "kiosk-1", 4, 400_000_000_000, // after the office resolved it
		&event.ReportReopen{Report: "kiosk-1.1", Resident: "R-SECRET-1", Reason: "REOPEN-REASON"})

	code, page := d.call(t, "", "GET", "/r/s1/B2-0007", "", "")
	if code != 200 {
		t.Fatalf("GET /r/s1/B2-0007: %d %s", code, page)
	}
	for _, want := range []string{"B2-0007", "B2", "电梯", "已受理 accepted", "已派维修", "已更换导轨", "居民反馈仍未解决"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	for _, secret := range []string{"R-SECRET", "RESIDENT-TITLE", "RESIDENT-TEXT", "3-1201", "ASSIGNEE-NAME", "REOPEN-REASON", "op1", "kiosk-1.2"} {
		if strings.Contains(page, secret) {
			t.Errorf("the public page shows %q:\n%s", secret, page)
		}
	}
	// The duplicate's page names the report it follows by its number.
	code, page = d.call(t, "", "GET", "/r/s1/B2-0008", "", "")
	if code != 200 || !strings.Contains(page, `id="merged"`) || !strings.Contains(page, "B2-0007") || strings.Contains(page, "R-SECRET") {
		t.Fatalf("GET /r/s1/B2-0008: %d, want the merged note naming B2-0007:\n%s", code, page)
	}
	for _, tc := range []struct {
		path  string
		code  int
		field string
	}{
		{"/r/s1/B2-0009", 404, "number"},
		{"/r/s2/B2-0007", 404, "number"}, // another site's numbers are its own
		{"/r/s1/not%20a%20number", 400, "number"},
		{"/r/s%201/B2-0007", 400, "site"},
	} {
		code, body := d.call(t, "", "GET", tc.path, "", "")
		if code != tc.code || !strings.Contains(body, `"field":"`+tc.field+`"`) {
			t.Errorf("GET %s: %d %s, want %d naming %s", tc.path, code, body, tc.code, tc.field)
		}
	}
}
