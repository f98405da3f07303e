package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"linli/shared/merge"
)

// An operator edits a notice, withdraws it (gone from the list kiosks and
// residents read, deleted from the downlink, kept in the history) and
// publishes it again; each write answers with the notice.
func TestNoticeEditWithdrawHistory(t *testing.T) {
	d := newDash(t)
	exp := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	if code, body := d.call(t, "op", "POST", "/api/v1/notices", "", `{"id":"N1","site":"s1","title":"停水通知","body":"周六停水","expires":"`+exp+`"}`); code != 201 {
		t.Fatalf("publish: %d %s", code, body)
	}
	code, body := d.call(t, "op", "PATCH", "/api/v1/notices/N1", "", `{"title":"停水通知（更正）","buildings":["B1"]}`)
	if code != 200 || !strings.Contains(body, `"title":"停水通知（更正）"`) || !strings.Contains(body, `"body":"周六停水"`) ||
		!strings.Contains(body, `"buildings":["B1"]`) || !strings.Contains(body, `"category":"announcement"`) {
		t.Fatalf("edit: %d %s; want the new title and buildings, the rest kept", code, body)
	}
	for _, c := range []struct{ body, field, code string }{
		{`{"title":""}`, "title", "required"},
		{`{"category":"gossip"}`, "category", "not_allowed"},
		{`{"expires":"2020-01-01T00:00:00+08:00"}`, "expires", "past"},
		{`{"expires":"tomorrow"}`, "expires", "invalid"},
		{`{"site":"s2"}`, "site", "invalid"}, // a notice stays on its site
	} {
		code, body := d.call(t, "op", "PATCH", "/api/v1/notices/N1", "", c.body)
		var e struct{ Error, Field, Code string }
		if err := json.Unmarshal([]byte(body), &e); err != nil || code != 400 || e.Field != c.field || e.Code != c.code || e.Error == "" {
			t.Errorf("PATCH %s: %d %s, want 400 field %s code %s", c.body, code, body, c.field, c.code)
		}
	}
	if code, _ := d.call(t, "viewer", "POST", "/api/v1/notices/N1/withdraw", "", ""); code != 403 {
		t.Fatalf("a viewer's withdraw: %d, want 403", code)
	}
	if code, _ := d.call(t, "s2", "POST", "/api/v1/notices/N1/withdraw", "", ""); code != 404 {
		t.Fatalf("another site's operator's withdraw: %d, want 404 (as for a missing notice)", code)
	}
	if code, _ := d.call(t, "op", "POST", "/api/v1/notices/nope/withdraw", "", ""); code != 404 {
		t.Fatalf("withdrawing an unknown notice: %d, want 404", code)
	}
	if code, body := d.call(t, "op", "POST", "/api/v1/notices/N1/withdraw", "", `{"note":"已恢复供水"}`); code != 200 || !strings.Contains(body, `"withdrawn":true`) {
		t.Fatalf("withdraw: %d %s", code, body)
	}
	if _, body := d.call(t, "", "GET", "/api/v1/notices?site=s1", "", ""); strings.Contains(body, "N1") {
		t.Fatalf("a withdrawn notice is still listed: %s", body)
	}
	d.state.Read(func(m *merge.State) {
		if v, ok := m.View(merge.Ref{Kind: merge.RefNotice, Site: "s1", ID: "N1"}); ok {
			t.Fatalf("the downlink still sends the withdrawn notice: %+v", v)
		}
	})
	if code, _ := d.call(t, "", "GET", "/api/v1/notices?site=s1&history=1", "", ""); code != 401 {
		t.Fatalf("anonymous history: %d, want 401", code)
	}
	_, body = d.call(t, "op", "GET", "/api/v1/notices?site=s1&history=1", "", "")
	if !strings.Contains(body, `"id":"N1"`) || !strings.Contains(body, `"withdrawn":true`) {
		t.Fatalf("the history lacks the withdrawn notice: %s", body)
	}
	if code, body := d.call(t, "op", "PATCH", "/api/v1/notices/N1", "", `{"withdrawn":false}`); code != 200 || strings.Contains(body, "withdrawn") {
		t.Fatalf("publish again: %d %s", code, body)
	}
	if _, body := d.call(t, "", "GET", "/api/v1/notices?site=s1", "", ""); !strings.Contains(body, `"id":"N1"`) {
		t.Fatalf("the notice published again is not listed: %s", body)
	}
}

// An activity gets a venue and description, is edited and cancelled; the
// view kiosks get says so.
func TestActivityEditCancel(t *testing.T) {
	d := newDash(t)
	if code, body := d.call(t, "op", "POST", "/api/v1/activities", "", `{"id":"A1","title":"太极拳","site":"s1","capacity":20,"venue":"文化广场","description":"请穿运动鞋"}`); code != 201 ||
		!strings.Contains(body, `"venue":"文化广场"`) || !strings.Contains(body, `"description":"请穿运动鞋"`) {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body := d.call(t, "op", "PATCH", "/api/v1/activities/A1", "", `{"venue":"6号楼活动中心","capacity":25}`)
	if code != 200 || !strings.Contains(body, `"venue":"6号楼活动中心"`) || !strings.Contains(body, `"capacity":25`) || !strings.Contains(body, `"title":"太极拳"`) {
		t.Fatalf("edit: %d %s", code, body)
	}
	for _, c := range []struct{ body, field string }{
		{`{"capacity":-1}`, "capacity"},
		{`{"venue":"` + strings.Repeat("场", 121) + `"}`, "venue"},
		{`{"start":"2026-12-01T09:00:00+08:00","end":"2026-12-01T08:00:00+08:00"}`, "end"},
		{`{"kind":"party"}`, "kind"},
	} {
		if code, body := d.call(t, "op", "PATCH", "/api/v1/activities/A1", "", c.body); code != 400 || !strings.Contains(body, `"field":"`+c.field+`"`) {
			t.Errorf("PATCH %.40s: %d %s, want 400 naming %s", c.body, code, body, c.field)
		}
	}
	if code, _ := d.call(t, "viewer", "POST", "/api/v1/activities/A1/cancel", "", ""); code != 403 {
		t.Fatalf("a viewer's cancel: %d, want 403", code)
	}
	if code, body := d.call(t, "op", "POST", "/api/v1/activities/A1/cancel", "", ""); code != 200 || !strings.Contains(body, `"cancelled":true`) {
		t.Fatalf("cancel: %d %s", code, body)
	}
	d.state.Read(func(m *merge.State) {
		v, ok := m.View(merge.Ref{Kind: merge.RefActivity, Site: "s1", ID: "A1"})
		av, _ := v.(merge.ActivityView)
		if !ok || !av.Cancelled || av.Venue != "6号楼活动中心" {
			t.Fatalf("the kiosks' view: %+v, want it cancelled with its venue", v)
		}
	})
}

// Every site names the zone its times are shown in: its plan's, else the
// hub's setting, else Asia/Shanghai.
func TestSitesNameTheirTimeZone(t *testing.T) {
	d := newDash(t, func(a *API) {
		a.TimeZone = "Europe/Berlin"
		a.Plans = map[string]SitePlan{"s1": {Site: "s1", Width: 1, Height: 1, TimeZone: "Asia/Urumqi"}, "s3": {Site: "s3", Width: 1, Height: 1}}
	})
	_, body := d.call(t, "op", "GET", "/api/v1/sites", "", "")
	var sites []struct {
		ID       string `json:"id"`
		TimeZone string `json:"time_zone"`
	}
	if err := json.Unmarshal([]byte(body), &sites); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range sites {
		got[s.ID] = s.TimeZone
	}
	if got["s1"] != "Asia/Urumqi" || got["s3"] != "Europe/Berlin" {
		t.Fatalf("zones %v, want s1 from its plan and s3 the hub's", got)
	}
	if _, body := newDash(t).call(t, "op", "GET", "/api/v1/sites", "", ""); !strings.Contains(body, `"time_zone":"Asia/Shanghai"`) {
		t.Fatalf("default zone: %s", body)
	}
	bad := SitePlan{Site: "s1", Width: 1, Height: 1, TimeZone: "Mars/Olympus"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "time_zone") {
		t.Fatalf("a plan with an unknown zone: %v", err)
	}
}
