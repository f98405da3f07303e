package kiosk

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	qrcode "github.com/skip2/go-qrcode"

	"linli/edge/api"
	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/test/edgetest"
	"linli/shared/wire"
)

// followKiosk is a kiosk API with report numbers over a real outbox,
// replica and index in dir; views come from a real merge state fed with
// the kiosk's own events and the office's decisions, as the hub would.
type followKiosk struct {
	url   string
	ob    *outbox.Log
	rep   *replica.Replica
	state *merge.State
	down  uint64
	hub   uint64
	close func()
}

func openFollowKiosk(t *testing.T, dir string, info *Info) *followKiosk {
	t.Helper()
	ob, db, err := edgetest.OpenLog(t, dir, outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := replica.Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := NewIndex(db, ob, nil)
	if err != nil {
		t.Fatal(err)
	}
	nums, err := NewNumbers(db, "B1")
	if err != nil {
		t.Fatal(err)
	}
	edge := &api.API{Role: api.RoleKiosk, Log: ob, Sync: offline{}, Replica: &Mirror{Rep: rep, Own: ob}, Registry: prometheus.NewRegistry()}
	srv := httptest.NewServer(serve(edge, &Handlers{Residents: idx, Kiosk: info, Numbers: nums}))
	k := &followKiosk{url: srv.URL, ob: ob, rep: rep, state: merge.New()}
	closed := false
	k.close = func() {
		if closed {
			return
		}
		closed = true
		srv.Close()
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(k.close)
	return k
}

func postJSON(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	if resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
	}
	return resp.StatusCode, out
}

// sync sends the kiosk's own events to the merge state, applies the
// office's decisions at the given times, and brings the report's view
// down to the kiosk as the downlink does.
func (k *followKiosk) sync(t *testing.T, report string, decisions ...struct {
	at   time.Time
	body event.Body
}) {
	t.Helper()
	evs, err := k.ob.Read(0, 1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if _, err := k.state.Apply(merge.Fact{Site: "s1", Event: ev}); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range decisions {
		k.hub++
		ev, err := event.NewEvent("hub", k.hub, hlc.FromTime(d.at), d.body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.state.Apply(merge.Fact{Site: "s1", Event: ev}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := k.state.ReportView(report)
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	k.down++
	if err := k.rep.Apply(wire.Down{Site: "s1", Prev: k.down - 1, Last: k.down,
		Changes: []wire.Change{{Seq: k.down, Entity: wire.EntityReport, ID: report, HLC: v.Updated, Body: b}}}); err != nil {
		t.Fatal(err)
	}
}

func decision(at time.Time, body event.Body) struct {
	at   time.Time
	body event.Body
} {
	return struct {
		at   time.Time
		body event.Body
	}{at, body}
}

// Report numbers are the kiosk's code and its own counter, kept in the
// store: after a restart the kiosk goes on where it stopped, never giving
// a number twice; a refused report spends none; the event carries it.
func TestReportNumbersSurviveRestarts(t *testing.T) {
	dir := t.TempDir()
	var got []string
	file := func(k *followKiosk) {
		code, out := postJSON(t, k.url+"/api/v1/reports", `{"category":"noise","title":"深夜装修","building":"B1","resident":"R1"}`)
		if code != http.StatusCreated {
			t.Fatalf("report: %d %v", code, out)
		}
		got = append(got, out["number"].(string))
	}
	k := openFollowKiosk(t, dir, &Info{Site: "s1"})
	file(k)
	file(k)
	if code, out := postJSON(t, k.url+"/api/v1/reports", `{"category":"noise","title":"","building":"B1"}`); code != http.StatusBadRequest || out["field"] != "title" {
		t.Fatalf("bad report: %d %v, want 400 naming title", code, out)
	}
	file(k)
	k.close()
	k = openFollowKiosk(t, dir, &Info{Site: "s1"})
	file(k)
	want := []string{"B1-0001", "B1-0002", "B1-0003", "B1-0004"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("numbers %v, want %v", got, want)
	}
	var r struct {
		Number string `json:"number"`
	}
	if code := getJSON(t, k.url+"/api/v1/reports/kiosk-1.4", &r); code != http.StatusOK || r.Number != "B1-0004" {
		t.Fatalf("report kiosk-1.4: %d number %q, want B1-0004", code, r.Number)
	}
}

func TestDefaultKioskCode(t *testing.T) {
	for _, tc := range []struct{ building, device, want string }{
		{"B1", "kiosk-b1", "B1"},
		{"b-3", "kiosk", "B3"},
		{"", "kiosk-b12", "KIOSKB12"},
		{"", "lobby-kiosk-north-2", "SKNORTH2"},
		{"", "--", "K"},
	} {
		if got := DefaultKioskCode(tc.building, tc.device); got != tc.want {
			t.Errorf("DefaultKioskCode(%q, %q) = %q, want %q", tc.building, tc.device, got, tc.want)
		}
		if _, err := NewNumbers(nil, DefaultKioskCode(tc.building, tc.device)); err != nil {
			t.Errorf("default code of %q, %q is refused: %v", tc.building, tc.device, err)
		}
	}
}

// A resident reopens their resolved report within the window; the
// kiosk refuses a report that is not resolved, one resolved too long ago,
// and one merged into another (naming the other's number); the hub's
// merge turns the reopen into accepted with a "reopened" step.
func TestReopenAtKiosk(t *testing.T) {
	k := openFollowKiosk(t, t.TempDir(), &Info{Site: "s1", ReopenWindow: 14 * 24 * time.Hour, PublicURL: "http://hub.example:8080"})
	for range 3 {
		if code, out := postJSON(t, k.url+"/api/v1/reports", `{"category":"elevator","title":"电梯异响","building":"B1","resident":"R1"}`); code != http.StatusCreated {
			t.Fatalf("report: %d %v", code, out)
		}
	}
	reopen := func(id string) (int, map[string]any) {
		return postJSON(t, k.url+"/api/v1/reports/"+id+"/reopen", `{"resident":"R1","reason":"还是响"}`)
	}
	// Not resolved yet (only filed here).
	if code, out := reopen("kiosk-1.1"); code != http.StatusConflict || out["code"] != "not_resolved" {
		t.Fatalf("reopen of an open report: %d %v, want 409 not_resolved", code, out)
	}
	now := time.Now()
	k.sync(t, "kiosk-1.1", decision(now.Add(-2*24*time.Hour), &event.ReportPatch{Report: "kiosk-1.1", Status: event.ReportResolved, Note: "已修好", Who: "op"}))
	k.sync(t, "kiosk-1.2", decision(now.Add(-20*24*time.Hour), &event.ReportPatch{Report: "kiosk-1.2", Status: event.ReportResolved, Who: "op"}))
	k.sync(t, "kiosk-1.3", decision(now.Add(-time.Hour), &event.ReportMerge{Report: "kiosk-1.3", Into: "kiosk-1.1", Who: "op"}))

	var mine []MyReport
	getJSON(t, k.url+"/api/v1/reports?resident=R1", &mine)
	reopenable := map[string]bool{}
	for _, m := range mine {
		reopenable[m.ID] = m.Reopenable
	}
	if !reopenable["kiosk-1.1"] || reopenable["kiosk-1.2"] || reopenable["kiosk-1.3"] {
		t.Fatalf("reopenable %v, want only kiosk-1.1", reopenable)
	}
	if code, out := reopen("kiosk-1.2"); code != http.StatusConflict || out["code"] != "expired" {
		t.Fatalf("reopen after the window: %d %v, want 409 expired", code, out)
	}
	if code, out := reopen("kiosk-1.3"); code != http.StatusConflict || out["code"] != "merged" || !strings.Contains(out["error"].(string), "B1-0001") {
		t.Fatalf("reopen of a merged report: %d %v, want 409 merged naming B1-0001", code, out)
	}
	if code, out := postJSON(t, k.url+"/api/v1/reports/kiosk-1.1/reopen", `{"reason":"x"}`); code != http.StatusBadRequest || out["field"] != "resident" {
		t.Fatalf("reopen without resident: %d %v, want 400 naming resident", code, out)
	}
	code, out := reopen("kiosk-1.1")
	if code != http.StatusCreated {
		t.Fatalf("reopen: %d %v", code, out)
	}
	k.sync(t, "kiosk-1.1")
	var r MyReport
	getJSON(t, k.url+"/api/v1/reports/kiosk-1.1", &r)
	last := r.Steps[len(r.Steps)-1]
	if r.Status != event.ReportAccepted || last.Event != merge.HistoryReopened {
		t.Fatalf("after the reopen reached the hub: status %q, last step %+v; want accepted, reopened", r.Status, last)
	}
	for _, st := range r.Steps {
		if st.Reply == "还是响" {
			t.Fatalf("the resident's reason is in the public timeline: %+v", r.Steps)
		}
	}
}

// The home screen's badge: a report counts as changed when the hub's
// timeline moved after the resident last looked, and not after they did.
func TestChangedSinceLastLook(t *testing.T) {
	k := openFollowKiosk(t, t.TempDir(), &Info{Site: "s1"})
	postJSON(t, k.url+"/api/v1/reports", `{"category":"elevator","title":"电梯异响","building":"B1","resident":"R1"}`)
	changed := func() bool {
		var mine []MyReport
		getJSON(t, k.url+"/api/v1/reports?resident=R1", &mine)
		return len(mine) == 1 && mine[0].Changed
	}
	if changed() {
		t.Fatal("a report only filed counts as changed")
	}
	if code, _ := postJSON(t, k.url+"/api/v1/reports/seen", `{"resident":"R1"}`); code != http.StatusNoContent {
		t.Fatalf("seen: %d", code)
	}
	k.sync(t, "kiosk-1.1", decision(time.Now().Add(20*time.Millisecond), &event.ReportPatch{Report: "kiosk-1.1", Status: event.ReportAccepted, Who: "op"}))
	if !changed() {
		t.Fatal("accepted after the last look: not changed")
	}
	// Looked at once the change's time has passed on this clock.
	deadline := time.Now().Add(5 * time.Second)
	for changed() && time.Now().Before(deadline) {
		postJSON(t, k.url+"/api/v1/reports/seen", `{"resident":"R1"}`)
	}
	if changed() {
		t.Fatal("still changed after the resident looked")
	}
	if code, out := postJSON(t, k.url+"/api/v1/reports/seen", `{"resident":""}`); code != http.StatusBadRequest || out["field"] != "resident" {
		t.Fatalf("seen without resident: %d %v", code, out)
	}
}

// The QR code is made on the kiosk and opens the report's public page at
// the hub address the kiosk is configured with.
func TestReportQRCode(t *testing.T) {
	k := openFollowKiosk(t, t.TempDir(), &Info{Site: "s1", PublicURL: "http://hub.example:8080/"})
	postJSON(t, k.url+"/api/v1/reports", `{"category":"elevator","title":"电梯异响","building":"B1"}`)
	want, err := qrcode.New("http://hub.example:8080/r/s1/B1-0001", qrcode.Medium)
	if err != nil {
		t.Fatal(err)
	}
	wantPNG, err := want.PNG(320)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, ctype string
		want        []byte
	}{
		{"/api/v1/reports/kiosk-1.1/qr.svg", "image/svg+xml", qrSVG(want.Bitmap())},
		{"/api/v1/reports/kiosk-1.1/qr.png", "image/png", wantPNG},
	} {
		resp, err := http.Get(k.url + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tc.ctype || !bytes.Equal(body, tc.want) {
			t.Fatalf("GET %s: %d %s, %d bytes; want 200 %s with the code of the public page", tc.path, resp.StatusCode,
				resp.Header.Get("Content-Type"), len(body), tc.ctype)
		}
	}
	var e map[string]any
	if code := getJSON(t, k.url+"/api/v1/reports/kiosk-1.9/qr.svg", &e); code != http.StatusNotFound {
		t.Fatalf("QR of an unknown report: %d %v", code, e)
	}
	if got := PublicURL("https://hub/", "s 1", "", "kiosk-1.2"); got != "https://hub/r/s%201/kiosk-1.2" {
		t.Fatalf("PublicURL = %q", got)
	}
}
