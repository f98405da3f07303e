package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

type hubActivity struct {
	ID         string   `json:"id"`
	Confirmed  []string `json:"confirmed"`
	Waitlist   []string `json:"waitlist"`
	Attended   []string `json:"attended"`
	Signups    int      `json:"signups"`
	Attendance int      `json:"attendance"`
	Hours      []struct {
		Resident string `json:"resident"`
	} `json:"hours"`
}

type checkinAnswer struct {
	Status string `json:"status"`
	Act    string `json:"act"`
	Error  string `json:"error"`
	Field  string `json:"field"`
}

// TestSignupAheadIsNotAttendance runs the real hub and kiosk: a check-in
// two days before an activity is a sign-up — a seat, but no attendance at
// the hub (activity JSON, CSV checked_in=false, signed_up=true) and no
// rating at the kiosk; a check-in the kiosk recorded before it knew the
// activity is judged by the hub from the event's time the same way; a
// check-in to an activity that has ended is 409 naming activity.
func TestSignupAheadIsNotAttendance(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	k := startEnrolledEdge(t, h, "kiosk-s", "s1", "kiosk") // enrolled: only enrolled devices get the downlink
	poll.Eventually(t, 20*time.Second, func() (bool, string) { s := k.sync(t); return s.Connected, "kiosk not connected" })

	// Recorded before the kiosk knows A4: the hub decides what it is.
	var early checkinAnswer
	if code := k.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R2", "activity": "A4"}, &early); code != 201 || early.Status != "recorded" || early.Act != "" {
		t.Fatalf("check-in for an unknown activity: %d %+v, want 201 recorded without act", code, early)
	}

	now := time.Now().UTC()
	ahead := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	for _, a := range []map[string]any{
		{"id": "A2", "title": "社区义诊", "kind": "volunteer", "site": "s1", "capacity": 5, "start": ahead(48 * time.Hour), "end": ahead(50 * time.Hour)},
		{"id": "A3", "title": "昨日讲座", "kind": "culture", "site": "s1", "capacity": 5, "start": ahead(-3 * time.Hour), "end": ahead(-time.Hour)},
		{"id": "A4", "title": "剪纸课", "kind": "culture", "site": "s1", "capacity": 5, "start": ahead(48 * time.Hour), "end": ahead(50 * time.Hour)},
	} {
		if code := h.do(t, "POST", "/api/v1/activities", a, nil); code != 201 {
			t.Fatalf("create %v: %d", a["id"], code)
		}
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		a2, ok2 := k.activity(t, "A2", "")
		_, ok3 := k.activity(t, "A3", "")
		return ok2 && ok3 && a2.Share > 0, fmt.Sprintf("kiosk: A2 %v (share %d), A3 %v", ok2, a2.Share, ok3)
	})

	var c checkinAnswer
	if code := k.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R1", "activity": "A2"}, &c); code != 201 || c.Act != "signup" || c.Status != "confirmed" {
		t.Fatalf("sign-up two days ahead: %d %+v, want 201 confirmed signup", code, c)
	}
	var r checkinAnswer
	if code := k.do(t, "POST", "/api/v1/ratings", map[string]any{"resident": "R1", "target": "A2", "score": 5}, &r); code != 409 || r.Field != "target" {
		t.Fatalf("rating by a resident who only signed up: %d %+v, want 409 naming target", code, r)
	}
	if code := k.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R1", "activity": "A3"}, &r); code != 409 || r.Field != "activity" {
		t.Fatalf("check-in after the end: %d %+v, want 409 naming activity", code, r)
	}

	for _, id := range []string{"A2", "A4"} {
		resident := map[string]string{"A2": "R1", "A4": "R2"}[id]
		var a hubActivity
		poll.Eventually(t, 30*time.Second, func() (bool, string) {
			h.do(t, "GET", "/api/v1/activities/"+id, nil, &a)
			return a.Signups == 1 && slices.Contains(a.Confirmed, resident), fmt.Sprintf("hub %s: %+v", id, a)
		})
		if a.Attendance != 0 || len(a.Attended) != 0 || len(a.Hours) != 0 {
			t.Fatalf("hub %s counts a sign-up as attendance: %+v", id, a)
		}
		csv := hubCSV(t, h, "/api/v1/activities/"+id+"/attendance.csv?lang=en")
		lines := strings.Split(strings.TrimSpace(strings.TrimPrefix(csv, "\ufeff")), "\n")
		if len(lines) != 2 || !strings.HasSuffix(lines[0], ",Checked in,First check-in,Checked out,Hours,Signed up") {
			t.Fatalf("%s CSV:\n%s", id, csv)
		}
		f := strings.Split(lines[1], ",")
		if f[2] != resident || f[5] != "no" || f[9] != "yes" {
			t.Fatalf("%s CSV row %q: want %s checked_in=false signed_up=true", id, lines[1], resident)
		}
	}
}

func hubCSV(t *testing.T, h *hubProc, path string) string {
	t.Helper()
	req, err := http.NewRequest("GET", h.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, b)
	}
	return string(b)
}
