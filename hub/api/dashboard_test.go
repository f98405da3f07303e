package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/hub/store"
	"linli/hub/stream"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

type fakeDevices []store.DeviceRecord

func (f fakeDevices) Devices() []store.DeviceRecord { return f }
func (f fakeDevices) Device(id string) (store.DeviceRecord, bool) {
	for _, d := range f {
		if d.ID == id {
			return d, true
		}
	}
	return store.DeviceRecord{}, false
}

type fakeDelivery struct {
	mu   sync.Mutex
	seqs map[string]uint64
}

func (f *fakeDelivery) Seq(site, entity, id string) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.seqs[site+"/"+entity+"/"+id]
	return s, ok
}

func (f *fakeDelivery) set(key string, seq uint64) {
	f.mu.Lock()
	f.seqs[key] = seq
	f.mu.Unlock()
}

type dash struct {
	srv      *httptest.Server
	state    *testkit.MemState
	stream   *stream.Stream
	delivery *fakeDelivery
}

// edgeFact applies an edge event of site straight to the state.
func (d *dash) edgeFact(t *testing.T, device string, seq uint64, ms int64, body event.Body) event.Event {
	t.Helper()
	ev, err := event.NewEvent(device, seq, hlc.New(1_740_000_000_000+ms, 0), body)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.state.Apply("s1", ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func newDash(t *testing.T, opts ...func(*API)) *dash {
	t.Helper()
	st := testkit.NewMemState()
	live := stream.New(nil)
	del := &fakeDelivery{seqs: map[string]uint64{}}
	a := &API{State: StreamingState{State: st, Stream: live}, Stream: live, Telemetry: NewTelemetry(),
		Logger: slog.New(slog.DiscardHandler),
		Devices: fakeDevices{
			{ID: "kiosk-1", Site: "s1", Role: "kiosk", Online: true, Down: 7},
			{ID: "kiosk-2", Site: "s1", Role: "kiosk", Down: 3},
			{ID: "gw-1", Site: "s1", Role: "gateway", Down: 9},
		},
		Delivery: del,
		Auth: roles{
			"op":     {Name: "op1", Role: RoleOperator},
			"viewer": {Name: "v1", Role: RoleViewer},
			"s2":     {Name: "op2", Role: RoleOperator, Sites: []string{"s2"}},
		}}
	for _, o := range opts {
		o(a)
	}
	d := &dash{state: st, stream: live, delivery: del}
	d.srv = httptest.NewServer(a.Handler())
	t.Cleanup(d.srv.Close)
	t.Cleanup(live.Close) // before the server: open streams end first
	return d
}

func (d *dash) call(t *testing.T, token, method, path, ctype, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, d.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestOpen311ServicesAndRequests(t *testing.T) {
	d := newDash(t)
	code, body := d.call(t, "", "GET", "/open311/v2/services.json", "", "")
	var svcs []struct {
		Code string `json:"service_code"`
		Name string `json:"service_name"`
	}
	if err := json.Unmarshal([]byte(body), &svcs); code != 200 || err != nil || len(svcs) != len(event.Categories) {
		t.Fatalf("services.json (open to all): %d %s", code, body)
	}
	if svcs[0].Code != event.Categories[0] || svcs[0].Name != "消防安全" {
		t.Fatalf("first service %+v: want fire_safety named 消防安全", svcs[0])
	}
	open := d.edgeFact(t, "k1", 1, 0, &event.Report{Category: "elevator", Title: "电梯异响", Building: "B2", Unit: "1-301", Resident: "R1"})
	done := d.edgeFact(t, "k1", 2, 10, &event.Report{Category: "noise", Title: "噪音", Building: "B3", Resident: "R2"})
	if code, body := d.call(t, "op", "PATCH", "/api/v1/reports/"+done.ID(), "", `{"status":"resolved","note":"已处理"}`); code != 200 {
		t.Fatalf("resolve: %d %s", code, body)
	}
	for _, tc := range []struct {
		query string
		want  []string // ids, newest first
	}{
		{"", []string{done.ID(), open.ID()}},
		{"?status=open", []string{open.ID()}},
		{"?status=closed", []string{done.ID()}},
		{"?service_code=elevator", []string{open.ID()}},
		{"?service_request_id=" + done.ID(), []string{done.ID()}},
		{"?jurisdiction_id=s1&start_date=" + url.QueryEscape(time.UnixMilli(1_740_000_000_005).UTC().Format(time.RFC3339Nano)), []string{done.ID()}},
	} {
		code, body := d.call(t, "", "GET", "/open311/v2/requests.json"+tc.query, "", "")
		var reqs []struct {
			ID     string `json:"service_request_id"`
			Status string `json:"status"`
			Notes  string `json:"status_notes"`
			Addr   string `json:"address"`
		}
		if err := json.Unmarshal([]byte(body), &reqs); code != 200 || err != nil {
			t.Fatalf("requests.json%s: %d %s", tc.query, code, body)
		}
		var ids []string
		for _, r := range reqs {
			ids = append(ids, r.ID)
		}
		if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
			t.Errorf("requests.json%s: %v, want %v", tc.query, ids, tc.want)
		}
		if strings.Contains(body, "R1") || strings.Contains(body, "R2") {
			t.Fatalf("requests.json shows resident ids: %s", body)
		}
		for _, r := range reqs {
			if r.ID == done.ID() && (r.Status != "closed" || r.Notes != "已处理") || r.ID == open.ID() && (r.Status != "open" || r.Addr != "B2 1-301") {
				t.Errorf("request %+v: status or address mapped wrongly", r)
			}
		}
	}
	if code, body := d.call(t, "", "GET", "/open311/v2/requests/"+open.ID()+".json", "", ""); code != 200 || !strings.Contains(body, `"service_code":"elevator"`) {
		t.Fatalf("one request: %d %s", code, body)
	}
	if code, _ := d.call(t, "", "GET", "/open311/v2/requests/k9.9.json", "", ""); code != 404 {
		t.Fatalf("unknown request: %d, want 404", code)
	}
}

func TestOpen311PostIsIdempotentWithAClientID(t *testing.T) {
	d := newDash(t)
	form := url.Values{"jurisdiction_id": {"s1"}, "service_code": {"facilities"}, "description": {"3号楼路灯不亮\n已经两天了"},
		"address_string": {"B3 2-101"}, "attribute[client_id]": {"app-7f3a"}}.Encode()
	const ctype = "application/x-www-form-urlencoded"
	if code, body := d.call(t, "", "POST", "/open311/v2/requests.json", ctype, form); code != 401 {
		t.Fatalf("POST without a token: %d %s, want 401", code, body)
	}
	if code, _ := d.call(t, "viewer", "POST", "/open311/v2/requests.json", ctype, form); code != 403 {
		t.Fatalf("POST by a viewer: %d, want 403", code)
	}
	if code, _ := d.call(t, "s2", "POST", "/open311/v2/requests.json", ctype, form); code != 403 {
		t.Fatalf("POST to s1 by an s2 operator: %d, want 403", code)
	}
	var first []map[string]string
	code, body := d.call(t, "op", "POST", "/open311/v2/requests.json", ctype, form)
	if err := json.Unmarshal([]byte(body), &first); code != 201 || err != nil || first[0]["service_request_id"] == "" {
		t.Fatalf("first POST: %d %s", code, body)
	}
	id := first[0]["service_request_id"]
	for range 2 {
		code, body := d.call(t, "op", "POST", "/open311/v2/requests.json", ctype, form)
		if code != 200 || !strings.Contains(body, id) {
			t.Fatalf("retry: %d %s, want 200 naming %s", code, body, id)
		}
	}
	// The same client id as JSON names the same request too.
	js := `{"jurisdiction_id":"s1","service_code":"facilities","description":"路灯","address_id":"B3","client_id":"app-7f3a"}`
	if code, body := d.call(t, "op", "POST", "/open311/v2/requests.json", "application/json", js); code != 200 || !strings.Contains(body, id) {
		t.Fatalf("JSON retry: %d %s", code, body)
	}
	var n int
	var rep merge.Report
	d.state.Read(func(m *merge.State) { n = len(m.Reports("s1")); rep, _ = m.Report(id) })
	if n != 1 || rep.Building != "B3" || rep.Unit != "2-101" || rep.Title != "3号楼路灯不亮" || rep.Category != "facilities" {
		t.Fatalf("%d reports, report %+v: want exactly one, in B3 2-101 titled by the description's first line", n, rep)
	}
	// Without a client id every POST is a new request.
	plain := url.Values{"jurisdiction_id": {"s1"}, "service_code": {"noise"}, "description": {"装修噪音"}, "address_id": {"B1"}}.Encode()
	for range 2 {
		if code, body := d.call(t, "op", "POST", "/open311/v2/requests.json", ctype, plain); code != 201 {
			t.Fatalf("POST without client id: %d %s", code, body)
		}
	}
	d.state.Read(func(m *merge.State) { n = len(m.Reports("s1")) })
	if n != 3 {
		t.Fatalf("%d reports, want 3", n)
	}
	bad := url.Values{"jurisdiction_id": {"s1"}, "service_code": {"parking"}, "description": {"x"}, "address_id": {"B1"}}.Encode()
	code, body = d.call(t, "op", "POST", "/open311/v2/requests.json", ctype, bad)
	if code != 400 || !strings.Contains(body, `"code":400`) || !strings.Contains(body, "service_code") {
		t.Fatalf("unknown service code: %d %s, want a GeoReport error naming service_code", code, body)
	}
}

func TestAlarmAckClearMergeCSVRatingsDelivery(t *testing.T) {
	d := newDash(t)
	d.edgeFact(t, "gw-1", 1, 0, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: true, Building: "B3", Value: 1})
	id := merge.AlarmID("s1", "B3-smoke-1", "smoke")
	if code, _ := d.call(t, "viewer", "POST", "/api/v1/alarms/"+id+"/ack", "", ""); code != 403 {
		t.Fatalf("viewer ack: %d, want 403", code)
	}
	if code, _ := d.call(t, "s2", "POST", "/api/v1/alarms/"+id+"/ack", "", ""); code != 404 {
		t.Fatalf("ack by an operator of another site: %d, want 404 (as for a missing alarm)", code)
	}
	code, body := d.call(t, "op", "POST", "/api/v1/alarms/"+id+"/ack", "", `{"note":"已派保安"}`)
	if code != 200 || !strings.Contains(body, `"acked":true`) || !strings.Contains(body, `"acked_by":"op1"`) {
		t.Fatalf("ack: %d %s", code, body)
	}
	// The detector still reports smoke: clearing is refused, and the alarm
	// stays on every screen.
	if code, body := d.call(t, "op", "POST", "/api/v1/alarms/"+id+"/clear", "", ""); code != 409 || !strings.Contains(body, "source") {
		t.Fatalf("clear while the source is active: %d %s, want 409", code, body)
	}
	if code, body := d.call(t, "op", "GET", "/api/v1/alarms?site=s1", "", ""); code != 200 || !strings.Contains(body, `"id":"`+id+`"`) || !strings.Contains(body, `"active":true`) {
		t.Fatalf("alarms after the refused clear: %d %s", code, body)
	}
	d.edgeFact(t, "gw-1", 2, 0, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: false, Building: "B3"})
	if code, body := d.call(t, "op", "GET", "/api/v1/alarms?site=s1", "", ""); code != 200 || !strings.Contains(body, `"active":false`) || !strings.Contains(body, `"acked":true`) {
		t.Fatalf("alarms after the source cleared: %d %s, want it listed, source cleared, still acknowledged", code, body)
	}
	if code, body := d.call(t, "op", "POST", "/api/v1/alarms/"+id+"/clear", "", `{"note":"探测器复位"}`); code != 200 || !strings.Contains(body, `"open":false`) || !strings.Contains(body, `"cleared_by":"op1"`) {
		t.Fatalf("clear after the source cleared: %d %s", code, body)
	}
	if code, body := d.call(t, "op", "GET", "/api/v1/alarms?site=s1", "", ""); code != 200 || body != "[]\n" {
		t.Fatalf("alarms after the clear: %d %q, want none", code, body)
	}
	if code, _ := d.call(t, "op", "POST", "/api/v1/alarms/"+id+"/clear", "", ""); code != 409 {
		t.Fatalf("second clear: %d, want 409", code)
	}
	// The source reports smoke again: the alarm re-opens at once, unacknowledged.
	later := time.Now().UnixMilli() - 1_740_000_000_000 + 60_000 // after the operator's decisions, stamped by the hub's clock
	d.edgeFact(t, "gw-1", 3, later, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: true, Building: "B3", Value: 1})
	if code, body := d.call(t, "op", "GET", "/api/v1/alarms?site=s1&kind=smoke&building=B3", "", ""); code != 200 || !strings.Contains(body, `"active":true`) || !strings.Contains(body, `"acked":false`) {
		t.Fatalf("alarms after the source reported again: %d %s", code, body)
	}
	code, body = d.call(t, "op", "GET", "/api/v1/alarms/history?site=s1&kind=smoke&from=2000-01-01T00:00:00Z", "", "")
	if code != 200 || strings.Count(body, `"what":"raised"`) != 2 || !strings.Contains(body, `"what":"cleared"`) || !strings.Contains(body, `"what":"source_cleared"`) {
		t.Fatalf("history: %d %s, want both raises, the source clear and the operator's clear", code, body)
	}
	if code, body := d.call(t, "op", "GET", "/api/v1/alarms/history?kind=fire", "", ""); code != 400 || !strings.Contains(body, `"field":"kind"`) {
		t.Fatalf("history with a bad kind: %d %s, want 400 naming kind", code, body)
	}
	if code, _ := d.call(t, "op", "POST", "/api/v1/alarms/s1:nope:smoke/ack", "", ""); code != 404 {
		t.Fatalf("ack of an unknown alarm: %d", code)
	}

	c := d.edgeFact(t, "k1", 1, 10, &event.Report{Category: "elevator", Title: "电梯异响", Building: "B2", Resident: "R1"})
	dup := d.edgeFact(t, "k2", 1, 20, &event.Report{Category: "elevator", Title: "电梯有声音", Building: "B2", Resident: "R3"})
	d.edgeFact(t, "k2", 2, 30, &event.Vote{Report: dup.ID(), Resident: "R4"})
	code, body = d.call(t, "op", "POST", "/api/v1/reports/"+dup.ID()+"/merge", "", `{"into":"`+c.ID()+`"}`)
	if code != 200 || !strings.Contains(body, `"votes":2`) || !strings.Contains(body, `"duplicates":["`+dup.ID()+`"]`) {
		t.Fatalf("merge: %d %s; want the target with R3 and R4 as votes", code, body)
	}
	if code, _ := d.call(t, "op", "POST", "/api/v1/reports/"+c.ID()+"/merge", "", `{"into":"`+dup.ID()+`"}`); code != 409 {
		t.Fatalf("merging a report into its own duplicate: %d, want 409", code)
	}
	if code, _ := d.call(t, "op", "PATCH", "/api/v1/reports/"+dup.ID(), "", `{"status":"accepted"}`); code != 400 {
		t.Fatalf("patching a merged duplicate: %d, want 400", code)
	}

	if code, body := d.call(t, "op", "POST", "/api/v1/activities", "", `{"id":"V1","title":"楼道清洁","kind":"volunteer","site":"s1","capacity":1}`); code != 201 {
		t.Fatalf("activity: %d %s", code, body)
	}
	d.edgeFact(t, "k1", 2, 1000, &event.Checkin{Resident: "R5", Activity: "V1", Action: "in", Status: event.StatusConfirmed})
	d.edgeFact(t, "k1", 3, 1000+90*60_000, &event.Checkin{Resident: "R5", Activity: "V1", Action: "out"})
	d.edgeFact(t, "k1", 4, 2000, &event.Checkin{Resident: "R6", Activity: "V1", Action: "in"})
	// Headers and words in the UI's language (Chinese unless ?lang=en),
	// times in the site's zone (Asia/Shanghai by default) with the offset.
	for _, c := range []struct{ query, want string }{
		{"", "\ufeff活动编号,活动名称,居民,状态,候补序号,已到场签到,首次签到时间,已签退,时长（小时）,已报名\n" +
			"V1,楼道清洁,R5,已确认,,是,2025-02-20 05:20:01 +08:00,是,1.50,否\n" +
			"V1,楼道清洁,R6,候补,1,是,2025-02-20 05:20:02 +08:00,否,0.00,否\n"},
		{"?lang=zh-CN", "\ufeff活动编号,活动名称,居民,状态,候补序号,已到场签到,首次签到时间,已签退,时长（小时）,已报名\n" +
			"V1,楼道清洁,R5,已确认,,是,2025-02-20 05:20:01 +08:00,是,1.50,否\n" +
			"V1,楼道清洁,R6,候补,1,是,2025-02-20 05:20:02 +08:00,否,0.00,否\n"},
		{"?lang=en", "\ufeffActivity,Title,Resident,Status,Waitlist place,Checked in,First check-in,Checked out,Hours,Signed up\n" +
			"V1,楼道清洁,R5,confirmed,,yes,2025-02-20 05:20:01 +08:00,yes,1.50,no\n" +
			"V1,楼道清洁,R6,waitlisted,1,yes,2025-02-20 05:20:02 +08:00,no,0.00,no\n"},
	} {
		code, body = d.call(t, "op", "GET", "/api/v1/activities/V1/attendance.csv"+c.query, "", "")
		if code != 200 || body != c.want {
			t.Fatalf("attendance.csv%s: %d\n got %q\nwant %q", c.query, code, body, c.want)
		}
	}
	if code, body := d.call(t, "op", "GET", "/api/v1/activities/V1/attendance.csv?lang=fr", "", ""); code != 400 || !strings.Contains(body, `"field":"lang"`) {
		t.Fatalf("attendance.csv?lang=fr: %d %s, want 400 naming lang", code, body)
	}
	// A sign-up two days ahead (a seat) is not attendance: checked_in
	// false, signed_up true, and the activity counts it apart.
	start := time.UnixMilli(1_740_000_000_000 + 2*24*3_600_000).UTC().Format(time.RFC3339)
	if code, body := d.call(t, "op", "POST", "/api/v1/activities", "", `{"id":"V2","title":"义诊","kind":"volunteer","site":"s1","capacity":5,"start":"`+start+`"}`); code != 201 ||
		!strings.Contains(body, `"checkin_opens_time":"`) {
		t.Fatalf("activity with a start: %d %s", code, body)
	}
	d.edgeFact(t, "k1", 5, 3000, &event.Checkin{Resident: "R7", Activity: "V2", Action: "in", Status: event.StatusConfirmed, Act: event.ActSignup})
	d.edgeFact(t, "k1", 6, 4000, &event.Checkin{Resident: "R8", Activity: "V2", Action: "in", Status: event.StatusRecorded})
	code, body = d.call(t, "op", "GET", "/api/v1/activities/V2/attendance.csv?lang=en", "", "")
	if code != 200 || !strings.Contains(body, "V2,义诊,R7,confirmed,,no,2025-02-20 05:20:03 +08:00,no,0.00,yes\n") ||
		!strings.Contains(body, ",R8,waitlisted,1,no,") {
		t.Fatalf("attendance.csv of sign-ups: %d %q", code, body)
	}
	code, body = d.call(t, "op", "GET", "/api/v1/activities/V2", "", "")
	if code != 200 || !strings.Contains(body, `"attendance":0`) || !strings.Contains(body, `"signups":2`) {
		t.Fatalf("activity with two sign-ups: %d %s", code, body)
	}
	for _, bad := range []string{`-1`, `100000`, `"x"`} {
		code, body := d.call(t, "op", "POST", "/api/v1/activities", "", `{"id":"V3","title":"x","site":"s1","capacity":1,"checkin_opens":`+bad+`}`)
		if code != 400 || !strings.Contains(body, `"field":"checkin_opens"`) {
			t.Fatalf("checkin_opens %s: %d %s", bad, code, body)
		}
	}
	if code, _ := d.call(t, "", "GET", "/api/v1/activities/V1/attendance.csv", "", ""); code != 401 {
		t.Fatalf("anonymous CSV (personal data): %d, want 401", code)
	}

	d.edgeFact(t, "k1", 5, 3000, &event.Rating{Resident: "R5", Target: "V1", Score: 5})
	d.edgeFact(t, "k1", 6, 4000, &event.Rating{Resident: "R1", Target: c.ID(), Score: 2})
	d.edgeFact(t, "k1", 7, 5000, &event.Rating{Resident: "R3", Target: c.ID(), Score: 4, Comment: "修得快"})
	code, body = d.call(t, "op", "GET", "/api/v1/ratings?site=s1&bucket=day", "", "")
	var rs ratingsOut
	if err := json.Unmarshal([]byte(body), &rs); code != 200 || err != nil {
		t.Fatalf("ratings: %d %s", code, body)
	}
	if rs.Overall.Count != 3 || len(rs.ByCategory) != 1 || rs.ByCategory[0].Key != "elevator" || rs.ByCategory[0].Mean != 3 ||
		len(rs.ByActivity) != 1 || rs.ByActivity[0].Title != "楼道清洁" || rs.ByActivity[0].Mean != 5 || len(rs.OverTime) != 1 ||
		rs.OverTime[0].Count != 3 || rs.OverTime[0].Key != "2025-02-20" || rs.Recent[0].Comment != "修得快" { // 21:20 UTC on the 19th is the 20th in Shanghai
		t.Fatalf("ratings %+v", rs)
	}
	if strings.Contains(body, "R3") {
		t.Fatalf("ratings name residents: %s", body)
	}

	code, body = d.call(t, "op", "POST", "/api/v1/notices", "", `{"id":"N1","site":"s1","title":"停水通知","buildings":["B2"]}`)
	if code != 201 {
		t.Fatalf("notice: %d %s", code, body)
	}
	// kiosk-1's cursor (7) has reached the notice's change (5), kiosk-2's (3) has not.
	d.delivery.set("s1/"+wire.EntityNotice+"/N1", 5)
	code, body = d.call(t, "op", "GET", "/api/v1/notices/N1/delivery", "", "")
	var out deliveryOut
	if err := json.Unmarshal([]byte(body), &out); code != 200 || err != nil {
		t.Fatalf("delivery: %d %s", code, body)
	}
	if out.Held != 1 || out.Missing != 1 || len(out.Kiosks) != 2 || !out.Kiosks[0].Received || out.Kiosks[1].Received {
		t.Fatalf("delivery %+v: want kiosk-1 received, kiosk-2 not, the gateway not listed", out)
	}
}

func TestStreamDeliversFilteredEventsLive(t *testing.T) {
	d := newDash(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func(token, query string) (*bufio.Reader, func()) {
		req, err := http.NewRequestWithContext(ctx, "GET", d.srv.URL+"/api/v1/stream"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream%s: %d %s", query, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
	}
	if code, _ := d.call(t, "", "GET", "/api/v1/stream", "", ""); code != 401 {
		t.Fatalf("anonymous stream: %d, want 401", code)
	}
	if code, _ := d.call(t, "s2", "GET", "/api/v1/stream?site=s1", "", ""); code != 403 {
		t.Fatalf("stream of another site: %d, want 403", code)
	}
	all, closeAll := open("op", "")
	defer closeAll()
	alarms, closeAlarms := open("op", "?kind=alarm&building=B3")
	defer closeAlarms()
	other, closeOther := open("s2", "")
	defer closeOther()
	waitOpen := func(r *bufio.Reader) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == ": open\n" {
				return
			}
		}
	}
	waitOpen(all)
	waitOpen(alarms)
	waitOpen(other)
	mk := func(seq uint64, body event.Body) event.Event {
		ev, err := event.NewEvent("gw-1", seq, hlc.New(1_740_000_000_000+int64(seq), 0), body)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	d.stream.Publish("s1", []event.Event{
		mk(1, &event.Reading{Sensor: "B3-t-1", Type: "temperature", Value: 21, Building: "B3"}),
		mk(2, &event.Alarm{Sensor: "B1-smoke-1", Type: "smoke", Active: true, Building: "B1"}),
		mk(3, &event.Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: true, Building: "B3"}),
	})
	next := func(r *bufio.Reader) (kind string, e stream.Event) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read stream: %v", err)
			}
			if k, ok := strings.CutPrefix(line, "event: "); ok {
				kind = strings.TrimSpace(k)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				if err := json.Unmarshal([]byte(data), &e); err != nil {
					t.Fatal(err)
				}
				return kind, e
			}
		}
	}
	for _, want := range []uint64{1, 2, 3} {
		if kind, e := next(all); e.Seq != want || kind != e.Kind {
			t.Fatalf("unfiltered stream: %s seq %d, want seq %d", kind, e.Seq, want)
		}
	}
	if kind, e := next(alarms); kind != "alarm" || e.Seq != 3 || e.Building != "B3" || e.Site != "s1" {
		t.Fatalf("filtered stream: %s %+v, want only the B3 alarm", kind, e)
	}
	// An operator's decision goes out too; the s2 operator sees none of it.
	if code, _ := d.call(t, "op", "POST", "/api/v1/notices", "", `{"site":"s1","title":"演练"}`); code != 201 {
		t.Fatal("notice")
	}
	if kind, e := next(all); kind != "notice_set" || e.Device != "hub" {
		t.Fatalf("after a notice: %s %+v", kind, e)
	}
	d.stream.Publish("s2", []event.Event{mk(9, &event.Reading{Sensor: "X-1", Type: "humidity", Value: 50})})
	if _, e := next(other); e.Site != "s2" || e.Seq != 9 {
		t.Fatalf("s2 operator's first event %+v: want s2's reading, nothing of s1", e)
	}
}
