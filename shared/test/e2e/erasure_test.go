package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// A deletion request for a resident anonymises their records at the hub
// and, through the downlink, on the kiosk — including a record the kiosk
// had not sent yet.
func TestResidentErasure(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	k := startEnrolledEdge(t, h, "kiosk-1", "s1", "kiosk")
	poll.Eventually(t, 20*time.Second, func() (bool, string) { return k.sync(t).Connected, "not connected" })
	for _, id := range []string{"A1", "A2"} {
		if code := h.do(t, "POST", "/api/v1/activities", map[string]any{"id": id, "title": "读书会", "site": "s1", "capacity": 10}, nil); code != 201 {
			t.Fatal(code)
		}
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		a, ok := k.activity(t, "A2", "")
		return ok && a.Capacity == 10, "kiosk lacks the activities"
	})
	var rep created
	for _, w := range []struct {
		path string
		body map[string]any
		out  any
	}{
		{"/api/v1/checkins", map[string]any{"resident": "R77", "activity": "A1"}, nil},
		{"/api/v1/reports", map[string]any{"category": "noise", "title": "夜间噪音", "building": "B1", "resident": "R77"}, &rep},
		{"/api/v1/checkins", map[string]any{"resident": "R78", "activity": "A1"}, nil},
	} {
		if code := k.do(t, "POST", w.path, w.body, w.out); code != 201 {
			t.Fatalf("%s: %d", w.path, code)
		}
	}
	if code := k.do(t, "POST", "/api/v1/ratings", map[string]any{"resident": "R77", "target": "A1", "score": 5, "comment": "我是R77"}, nil); code != 201 {
		t.Fatal(code)
	}
	drained(t, k, 20*time.Second)
	// The kiosk goes offline and records one more check-in of R77.
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	var e struct {
		Token string `json:"replaced_by"`
		Facts int    `json:"facts"`
	}
	if code := h.do(t, "DELETE", "/api/v1/residents/R77?site=s1", nil, &e); code != 200 || !strings.HasPrefix(e.Token, "erased-") || e.Facts != 3 {
		t.Fatalf("erase: %d %+v, want 3 facts replaced", code, e)
	}
	if code := h.do(t, "DELETE", "/api/v1/residents/R77", nil, nil); code != 400 {
		t.Fatalf("erase without a site: %d, want 400", code)
	}
	k.Restart()
	testkit.WaitHTTP(t, k.URL+"/healthz", 20*time.Second)
	// An offline check-in made before the kiosk heard of the erasure.
	if code := k.do(t, "POST", "/api/v1/checkins", map[string]any{"resident": "R77", "activity": "A2"}, nil); code != 201 {
		t.Fatal(code)
	}
	drained(t, k, 20*time.Second)
	mentions := func() string {
		evs, err := testkit.FetchEvents(context.Background(), h.URL, h.token(t), "kiosk-1")
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			b, _ := json.Marshal(ev.Body)
			if strings.Contains(string(b), "R77") {
				return fmt.Sprintf("hub event %d still names R77: %s", ev.Seq, b)
			}
		}
		var a activityState
		h.do(t, "GET", "/api/v1/activities/A1", nil, &a)
		if slices.Contains(a.Confirmed, "R77") || !slices.Contains(a.Confirmed, e.Token) || !slices.Contains(a.Confirmed, "R78") {
			return fmt.Sprintf("activity A1 confirmed %v", a.Confirmed)
		}
		var d map[string]any
		h.do(t, "GET", "/api/v1/reports/"+rep.ID, nil, &d)
		if d["resident"] != nil {
			return fmt.Sprintf("report still names %v", d["resident"])
		}
		ka, _ := k.activity(t, "A1", "R77")
		if ka.Status != "" {
			return fmt.Sprintf("kiosk still shows R77 as %q", ka.Status)
		}
		return ""
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) { m := mentions(); return m == "", m })
	// And after the hub restarts (state rebuilt from its facts).
	h.Kill()
	h.Restart()
	testkit.WaitHTTP(t, h.URL+"/healthz", 20*time.Second)
	if m := mentions(); m != "" {
		t.Fatal("after restart: " + m)
	}
}

// A hub that pseudonymises: kiosks record residents by the site's keyed
// hash, the hub never sees their numbers, and residents and operators
// still use the numbers.
func TestPseudonymisedResidents(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "", "--pseudonymize")
	k := startEnrolledEdge(t, h, "kiosk-p", "s1", "kiosk")
	if code := h.do(t, "POST", "/api/v1/activities", map[string]any{"id": "A1", "title": "书法班", "site": "s1", "capacity": 5}, nil); code != 201 {
		t.Fatal(code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		a, ok := k.activity(t, "A1", "")
		return ok && a.Share > 0, "kiosk lacks the activity or its share of seats"
	})
	var c created
	if code := k.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R900", "activity": "A1"}, &c); code != 201 || c.Status != "confirmed" {
		t.Fatalf("check-in: %d %+v", code, c)
	}
	drained(t, k, 20*time.Second)
	if a, _ := k.activity(t, "A1", "R900"); a.Status != "confirmed" {
		t.Fatalf("the kiosk shows R900 as %q", a.Status)
	}
	evs, err := testkit.FetchEvents(context.Background(), h.URL, h.token(t), "kiosk-p")
	if err != nil || len(evs) != 1 {
		t.Fatalf("hub events %v %v", evs, err)
	}
	who, _ := evs[0].Body["resident"].(string)
	if who == "R900" || !strings.HasPrefix(who, "p-") {
		t.Fatalf("the hub holds resident %q, want a pseudonym", who)
	}
	var a activityState
	h.do(t, "GET", "/api/v1/activities/A1", nil, &a)
	if !slices.Contains(a.Confirmed, who) {
		t.Fatalf("confirmed %v lacks %s", a.Confirmed, who)
	}
	// An operator erases by the resident's number.
	var e struct{ Facts int }
	if code := h.do(t, "DELETE", "/api/v1/residents/R900?site=s1", nil, &e); code != 200 || e.Facts != 1 {
		t.Fatalf("erase by number: %d %+v", code, e)
	}
}
