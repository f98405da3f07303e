package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

type activityState struct {
	ID        string   `json:"id"`
	Capacity  int      `json:"capacity"`
	Confirmed []string `json:"confirmed"`
	Waitlist  []string `json:"waitlist"`
	Kiosks    []struct {
		Device   string `json:"device"`
		Granted  int    `json:"granted"`
		Recalled bool   `json:"recalled"`
	} `json:"kiosks"`
}

type kioskActivity struct {
	ID        string `json:"id"`
	Capacity  int    `json:"capacity"`
	Share     int    `json:"share"`
	SeatsLeft int    `json:"seats_left"`
	Status    string `json:"status"`
	Synced    bool   `json:"synced"`
}

func (h *hubProc) do(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	code, err := testkit.Do(context.Background(), method, h.URL+path, h.token(t), body, out)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return code
}

func (e *edgeProc) do(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	code, err := testkit.Do(context.Background(), method, e.URL+path, "", body, out)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, e.ID, err)
	}
	return code
}

func (e *edgeProc) activity(t *testing.T, id, resident string) (kioskActivity, bool) {
	t.Helper()
	var list []kioskActivity
	if code := e.do(t, "GET", "/api/v1/activities?resident="+resident, nil, &list); code != 200 {
		t.Fatalf("activities on %s: %d", e.ID, code)
	}
	for _, a := range list {
		if a.ID == id {
			return a, true
		}
	}
	return kioskActivity{}, false
}

// Three kiosks answer 40 sign-ups for 30 seats at once while cut off from
// the hub; when they come back in random order the hub confirms exactly
// 30, moves nobody who was told "confirmed", and every kiosk shows every
// resident's outcome.
func TestCapacityAcrossOfflineKiosks(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	kiosks := []*edgeProc{
		startEnrolledEdge(t, h, "kiosk-1", "s1", "kiosk"),
		startEnrolledEdge(t, h, "kiosk-2", "s1", "kiosk"),
		startEnrolledEdge(t, h, "kiosk-3", "s1", "kiosk"),
	}
	for _, k := range kiosks {
		poll.Eventually(t, 20*time.Second, func() (bool, string) { s := k.sync(t); return s.Connected, k.ID + " not connected" })
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var devs []struct{ ID string }
		h.do(t, "GET", "/api/v1/devices", nil, &devs)
		return len(devs) == 3, fmt.Sprintf("hub knows %d devices", len(devs))
	})
	if code := h.do(t, "POST", "/api/v1/activities", map[string]any{"id": "A30", "title": "社区义诊", "kind": "activity",
		"site": "s1", "capacity": 30}, nil); code != 201 {
		t.Fatalf("create activity: %d", code)
	}
	// Every kiosk receives its share before the network goes.
	for _, k := range kiosks {
		poll.Eventually(t, 20*time.Second, func() (bool, string) {
			a, ok := k.activity(t, "A30", "")
			return ok && a.Share > 0, fmt.Sprintf("%s: activity %v, share %d", k.ID, ok, a.Share)
		})
	}
	// Make sure each kiosk has applied the view with its grant.
	var grants activityState
	h.do(t, "GET", "/api/v1/activities/A30", nil, &grants)
	t.Logf("grants: %+v", grants.Kiosks)

	h.Kill() // the hub and its broker are gone: every kiosk is offline
	told := map[string]string{}
	split := []int{20, 15, 5}
	n := 0
	for i, k := range kiosks {
		for range split[i] {
			n++
			resident := fmt.Sprintf("R%02d", n)
			var c created
			if code := k.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": resident, "activity": "A30"}, &c); code != 201 {
				t.Fatalf("check-in %s at %s: %d", resident, k.ID, code)
			}
			// Recorded once the share is used up while the hub's view still
			// shows seats it does not hold (its reserve); waitlisted only
			// when none are left.
			if c.Status != "confirmed" && c.Status != "waitlisted" && c.Status != "recorded" {
				t.Fatalf("check-in %s at %s answered %q, want confirmed, recorded or waitlisted from the share", resident, k.ID, c.Status)
			}
			told[resident] = c.Status
		}
	}
	confirmedAtOnce := 0
	for _, s := range told {
		if s == "confirmed" {
			confirmedAtOnce++
		}
	}
	t.Logf("answered offline: %d confirmed, %d recorded or waitlisted", confirmedAtOnce, len(told)-confirmedAtOnce)
	if confirmedAtOnce > 30 {
		t.Fatalf("kiosks confirmed %d > capacity offline", confirmedAtOnce)
	}
	for _, k := range kiosks {
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	h.Restart()
	testkit.WaitHTTP(t, h.URL+"/healthz", 20*time.Second)
	order := rand.Perm(len(kiosks))
	for _, i := range order {
		kiosks[i].Restart()
		testkit.WaitHTTP(t, kiosks[i].URL+"/healthz", 20*time.Second)
	}
	var final activityState
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		h.do(t, "GET", "/api/v1/activities/A30", nil, &final)
		return len(final.Confirmed) == 30 && len(final.Waitlist) == 10,
			fmt.Sprintf("hub: %d confirmed, %d waitlisted; kiosks %+v", len(final.Confirmed), len(final.Waitlist), final.Kiosks)
	})
	for r, s := range told {
		if s == "confirmed" && !slices.Contains(final.Confirmed, r) {
			t.Errorf("%s was told confirmed and is not confirmed at the hub", r)
		}
	}
	// Every kiosk shows every resident's outcome as the hub decided it.
	for _, k := range kiosks {
		poll.Eventually(t, 30*time.Second, func() (bool, string) {
			for r := range told {
				want := "waitlisted"
				if slices.Contains(final.Confirmed, r) {
					want = "confirmed"
				}
				a, ok := k.activity(t, "A30", r)
				if !ok || a.Status != want || !a.Synced {
					return false, fmt.Sprintf("%s shows %s as %+v, want %s (synced)", k.ID, r, a, want)
				}
			}
			return true, ""
		})
	}
}

type kioskReport struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Votes  int    `json:"votes"`
	Synced bool   `json:"synced"`
}

// An operator resolves a report while its kiosk is offline; the kiosk shows
// it after reconnecting, and a rating made there reaches the hub.
func TestReportResolvedWhileKioskOffline(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	k := startEnrolledEdge(t, h, "kiosk-r", "s1", "kiosk")
	other := startEnrolledEdge(t, h, "kiosk-o", "s1", "kiosk")
	var rep created
	if code := k.do(t, "POST", "/api/v1/reports", map[string]string{"category": "elevator", "title": "电梯异响",
		"building": "B2", "unit": "2-301", "resident": "R1"}, &rep); code != 201 {
		t.Fatalf("file report: %d", code)
	}
	if code := other.do(t, "POST", "/api/v1/reports/"+rep.ID+"/votes", map[string]string{"resident": "R2"}, nil); code != 201 {
		t.Fatalf("vote: %d", code)
	}
	var seen kioskReport
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		code := k.do(t, "GET", "/api/v1/reports/"+rep.ID, nil, &seen)
		return code == 200 && seen.Synced && seen.Votes == 1, fmt.Sprintf("kiosk shows %d %+v", code, seen)
	})
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{"accepted", "in_progress", "resolved"} {
		if code := h.do(t, "PATCH", "/api/v1/reports/"+rep.ID, map[string]string{"status": st, "note": "维修中", "assignee": "王师傅"}, nil); code != 200 {
			t.Fatalf("patch to %s: %d", st, code)
		}
	}
	// A bad transition is refused naming the field.
	var e struct{ Field string }
	if code := h.do(t, "PATCH", "/api/v1/reports/"+rep.ID, map[string]string{"status": "accepted"}, &e); code != 400 || e.Field != "status" {
		t.Fatalf("resolved → accepted: %d %+v, want 400 on status", code, e)
	}
	if code := h.do(t, "PATCH", "/api/v1/reports/kiosk-r.999", map[string]string{"status": "accepted"}, nil); code != 404 {
		t.Fatalf("unknown report: %d, want 404", code)
	}
	k.Restart()
	testkit.WaitHTTP(t, k.URL+"/healthz", 20*time.Second)
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		code := k.do(t, "GET", "/api/v1/reports/"+rep.ID, nil, &seen)
		return code == 200 && seen.Status == "resolved", fmt.Sprintf("kiosk shows %d %+v", code, seen)
	})
	if code := k.do(t, "POST", "/api/v1/ratings", map[string]any{"resident": "R1", "target": rep.ID, "score": 4, "comment": "修好了"}, nil); code != 201 {
		t.Fatalf("rate: %d", code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var d struct {
			Status  string `json:"status"`
			Ratings struct {
				Count int     `json:"count"`
				Mean  float64 `json:"mean"`
			} `json:"ratings"`
			History []struct{ Status string } `json:"history"`
		}
		h.do(t, "GET", "/api/v1/reports/"+rep.ID, nil, &d)
		return d.Ratings.Count == 1 && d.Ratings.Mean == 4 && len(d.History) >= 4,
			fmt.Sprintf("hub report %+v", d)
	})
}

type kioskNotice struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Category string `json:"category"`
	Alarm    bool   `json:"alarm"`
}

// A notice reaches every kiosk of its site and none of another; a smoke
// alarm at the gateway of building B3 reaches every kiosk of the site —
// those of other buildings too — as an alarm.
func TestNoticesAndAlarmsReachTheSite(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	broker := "tcp://" + mqttAddr
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	here := []*edgeProc{startEnrolledEdge(t, h, "kiosk-a1", "site-a", "kiosk", "--building", "B1"), startEnrolledEdge(t, h, "kiosk-a2", "site-a", "kiosk")}
	there := startEnrolledEdge(t, h, "kiosk-b1", "site-b", "kiosk")
	gw := startEdge(t, "gw-a", "site-a", "gateway", broker, "--building", "B3")
	var n struct{ ID string }
	if code := h.do(t, "POST", "/api/v1/notices", map[string]string{"site": "site-a", "title": "停水通知",
		"body": "周六9:00-12:00", "category": "announcement", "expires": time.Now().Add(48 * time.Hour).Format(time.RFC3339)}, &n); code != 201 {
		t.Fatalf("publish notice: %d", code)
	}
	hasNotice := func(e *edgeProc, pred func(kioskNotice) bool) bool {
		var list []kioskNotice
		e.do(t, "GET", "/api/v1/notices", nil, &list)
		return slices.ContainsFunc(list, pred)
	}
	for _, k := range here {
		poll.Eventually(t, 20*time.Second, func() (bool, string) {
			return hasNotice(k, func(x kioskNotice) bool { return x.ID == n.ID }), k.ID + " lacks the notice"
		})
	}
	// A smoke reading posted to the gateway raises the alarm as a wired
	// detector would; a forced door posted there carries the gateway's
	// building.
	if code := gw.do(t, "POST", "/api/v1/readings", map[string]any{"sensor": "B3-smoke-1", "kind": "smoke", "value": 1}, nil); code != 201 {
		t.Fatalf("reading: %d", code)
	}
	if code := gw.do(t, "POST", "/api/v1/access", map[string]any{"door": "B3-main", "result": "forced"}, nil); code != 201 {
		t.Fatalf("forced door: %d", code)
	}
	hasSmoke := func(k *edgeProc) (bool, string) {
		var as []struct{ Kind, Building string }
		k.do(t, "GET", "/api/v1/alarms", nil, &as)
		// Residents see fire and water alarms by default, not forced doors.
		return len(as) == 1 && as[0].Kind == "smoke" && as[0].Building == "B3", fmt.Sprintf("%s shows alarms %+v, want the B3 smoke alarm alone", k.ID, as)
	}
	for _, k := range here {
		poll.Eventually(t, 20*time.Second, func() (bool, string) { return hasSmoke(k) })
	}
	var alarms []struct {
		Kind     string `json:"kind"`
		Building string `json:"building"`
		Severity string `json:"severity"`
		Active   bool   `json:"active"`
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		h.do(t, "GET", "/api/v1/alarms", nil, &alarms)
		return len(alarms) == 2 && alarms[0].Kind == "smoke" && alarms[0].Active && alarms[0].Severity == "critical" &&
				alarms[1].Kind == "forced" && alarms[0].Building == "B3" && alarms[1].Building == "B3",
			fmt.Sprintf("hub alarms %+v, want the smoke alarm then the forced door, both in B3", alarms)
	})
	// A kiosk that joins later (or was wiped) catches up from the start.
	late := startEnrolledEdge(t, h, "kiosk-a3", "site-a", "kiosk")
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, why := hasSmoke(late)
		return ok && hasNotice(late, func(x kioskNotice) bool { return x.ID == n.ID }), "the late kiosk did not catch up: " + why
	})
	// The other site's kiosk has seen the hub (it is connected) and shows
	// none of this.
	poll.Eventually(t, 20*time.Second, func() (bool, string) { return there.sync(t).Connected, "kiosk-b1 not connected" })
	var list []kioskNotice
	there.do(t, "GET", "/api/v1/notices", nil, &list)
	if len(list) != 0 {
		t.Fatalf("kiosk of site-b shows %+v", list)
	}
	var as []any
	there.do(t, "GET", "/api/v1/alarms", nil, &as)
	if len(as) != 0 {
		t.Fatalf("kiosk of site-b shows alarms %+v", as)
	}
}
