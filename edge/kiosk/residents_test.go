package kiosk

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/edge/api"
	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/test/edgetest"
	"linli/shared/wire"
)

// newKioskServer is a kiosk API over a real outbox, replica and index.
func newKioskServer(t *testing.T, role string) (*httptest.Server, *outbox.Log) {
	t.Helper()
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour})
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
	edge := &api.API{Role: role, Log: ob, Sync: offline{}, Replica: &Mirror{Rep: rep, Own: ob}, Registry: prometheus.NewRegistry()}
	srv := httptest.NewServer(serve(edge, &Handlers{Residents: idx,
		Kiosk: &Info{Device: "kiosk-1", Site: "s1", Building: "B1", IdleTimeout: 45 * time.Second, Version: "v-test"}}))
	t.Cleanup(func() {
		srv.Close()
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv, ob
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode
}

type mine struct {
	ID       string `json:"id"`
	Mine     string `json:"mine"`
	Status   string `json:"status"`
	Category string `json:"category"`
	Synced   bool   `json:"synced"`
}

// What a resident filed, supported, checked into and rated here is listed
// back to them — and only to them, and never an anonymous report — from the
// index that follows the outbox, also after the index is reopened.
func TestResidentIndexListsWhatTheyDidHere(t *testing.T) {
	srv, _ := newKioskServer(t, api.RoleKiosk)
	writes := []struct{ path, body string }{
		{"/api/v1/reports", `{"category":"fire_safety","title":"楼道堆放杂物","building":"B1","resident":"R1"}`}, // kiosk-1.1
		{"/api/v1/reports", `{"category":"noise","title":"深夜装修","building":"B1"}`},                         // .2 anonymous
		{"/api/v1/reports", `{"category":"elevator","title":"电梯异响","building":"B1","resident":"R2"}`},      // .3
		{"/api/v1/reports/kiosk-1.3/votes", `{"resident":"R1"}`},                                           // .4
		{"/api/v1/reports/kiosk-1.3/votes", `{"resident":"R1"}`},                                           // .5 again
		{"/api/v1/reports/kiosk-1.1/votes", `{"resident":"R1"}`},                                           // .6 on their own
		{"/api/v1/checkins", `{"resident":"R1","activity":"A1"}`},
		{"/api/v1/checkins", `{"resident":"R1","activity":"A1","action":"out"}`},
		{"/api/v1/checkins", `{"resident":"R1","activity":"A2"}`},
		{"/api/v1/ratings", `{"resident":"R1","target":"kiosk-1.1","score":3}`},
		{"/api/v1/ratings", `{"resident":"R1","target":"kiosk-1.1","score":5,"comment":"好"}`},
	}
	for _, w := range writes {
		if code, out := edgetest.PostJSON(t, srv.URL+w.path, w.body); code != http.StatusCreated {
			t.Fatalf("POST %s: %d %v", w.path, code, out)
		}
	}
	var r1 []mine
	if code := getJSON(t, srv.URL+"/api/v1/reports?resident=R1", &r1); code != 200 {
		t.Fatalf("reports of R1: %d", code)
	}
	if got, want := fmt.Sprint(r1), "[{kiosk-1.3 voted submitted elevator false} {kiosk-1.1 filed submitted fire_safety false}]"; got != want {
		t.Errorf("reports of R1:\n got %s\nwant %s", got, want)
	}
	var r2 []mine
	getJSON(t, srv.URL+"/api/v1/reports?resident=R2", &r2)
	if len(r2) != 1 || r2[0].ID != "kiosk-1.3" || r2[0].Mine != "filed" {
		t.Errorf("reports of R2: %+v", r2)
	}
	var filtered []mine
	getJSON(t, srv.URL+"/api/v1/reports?resident=R1&category=fire_safety&building=B1&open=true", &filtered)
	if len(filtered) != 1 || filtered[0].ID != "kiosk-1.1" {
		t.Errorf("filtered reports of R1: %+v", filtered)
	}
	var nobody []mine
	if getJSON(t, srv.URL+"/api/v1/reports?resident=R3", &nobody); len(nobody) != 0 {
		t.Errorf("reports of R3: %+v", nobody)
	}

	var ins []IndexedCheckin
	getJSON(t, srv.URL+"/api/v1/checkins?resident=R1", &ins)
	if len(ins) != 2 || ins[0].Activity != "A2" || ins[0].Action != "in" || ins[1].Activity != "A1" || ins[1].Action != "out" ||
		ins[0].Status != "recorded" || time.Since(ins[0].Time) > time.Minute {
		t.Errorf("check-ins of R1: %+v, want A2 in (recorded), then A1 out", ins)
	}
	var rated []IndexedRating
	getJSON(t, srv.URL+"/api/v1/ratings?resident=R1", &rated)
	if len(rated) != 1 || rated[0].Target != "kiosk-1.1" || rated[0].Score != 5 {
		t.Errorf("ratings of R1: %+v, want the latest, 5", rated)
	}
	var empty []IndexedRating
	if getJSON(t, srv.URL+"/api/v1/ratings?resident=R2", &empty); empty == nil || len(empty) != 0 {
		t.Errorf("ratings of R2: %#v, want []", empty)
	}
}

func TestResidentIndexSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ob, db, err := edgetest.OpenLog(t, dir, outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	})
	report := func(title string) {
		t.Helper()
		if _, err := ob.Append(t.Context(), &event.Report{Category: "other", Title: title, Building: "B1", Resident: "R1"}); err != nil {
			t.Fatal(err)
		}
	}
	report("一")
	idx, err := NewIndex(db, ob, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := idx.Reports("R1"); err != nil || len(got) != 1 {
		t.Fatalf("reports %+v %v", got, err)
	}
	report("二")
	// A second index over the same store (a restart) starts from the
	// cursor the first one stored: nothing twice, nothing missed.
	again, err := NewIndex(db, ob, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.Reports("R1")
	if err != nil || len(got) != 2 || got[0].ID != "kiosk-1.2" || got[1].ID != "kiosk-1.1" {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	if _, err := again.Reports("not valid"); err == nil {
		t.Error("a bad resident id was accepted")
	}
}

func TestResidentEndpointsRefuseBadInput(t *testing.T) {
	srv, _ := newKioskServer(t, api.RoleKiosk)
	for _, p := range []string{
		"/api/v1/reports?resident=a%20b", "/api/v1/reports?resident=", "/api/v1/checkins", "/api/v1/checkins?resident=R%2F1",
		"/api/v1/ratings?resident=x%00",
	} {
		var e struct{ Error, Field string }
		if code := getJSON(t, srv.URL+p, &e); code != 400 || e.Field != "resident" {
			t.Errorf("GET %s: %d %+v, want 400 naming resident", p, code, e)
		}
	}
	gw, _ := newKioskServer(t, api.RoleGateway)
	for _, p := range []string{"/api/v1/reports?resident=R1", "/api/v1/checkins?resident=R1", "/api/v1/ratings?resident=R1", "/api/v1/kiosk"} {
		var e struct{ Error string }
		if code := getJSON(t, gw.URL+p, &e); code != 404 || e.Error == "" {
			t.Errorf("gateway GET %s: %d %+v, want 404", p, code, e)
		}
	}
}

func TestKioskSettingsForTheUI(t *testing.T) {
	srv, _ := newKioskServer(t, api.RoleKiosk)
	var k struct {
		Device        string   `json:"device"`
		Site          string   `json:"site"`
		Building      string   `json:"building"`
		IdleTimeoutMS int64    `json:"idle_timeout_ms"`
		Version       string   `json:"version"`
		Categories    []string `json:"categories"`
	}
	if code := getJSON(t, srv.URL+"/api/v1/kiosk", &k); code != 200 {
		t.Fatalf("GET /api/v1/kiosk: %d", code)
	}
	if k.Device != "kiosk-1" || k.Site != "s1" || k.Building != "B1" || k.IdleTimeoutMS != 45000 || k.Version != "v-test" || len(k.Categories) != 7 {
		t.Fatalf("kiosk settings %+v", k)
	}
}

// A deletion request from the hub takes the resident out of the index, and
// no one else.
func TestResidentIndexForgetsAnErasedResident(t *testing.T) {
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	})
	idx, err := NewIndex(db, ob, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []event.Body{
		&event.Report{Category: "other", Title: "一", Building: "B1", Resident: "R1"},
		&event.Report{Category: "other", Title: "二", Building: "B1", Resident: "R2"},
		&event.Vote{Report: "kiosk-1.2", Resident: "R1"},
		&event.Checkin{Resident: "R1", Activity: "A1", Action: "in"},
		&event.Rating{Resident: "R1", Target: "A1", Score: 4},
		&event.Rating{Resident: "R2", Target: "A1", Score: 2},
	} {
		if _, err := ob.Append(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	// The erasure arrives before the index caught up: it still takes all.
	idx.Forget([]wire.Change{{Entity: wire.EntityResident, ID: "R1"}, {Entity: wire.EntityNotice, ID: "R2"}})
	r1, _ := idx.Reports("R1")
	c1, _ := idx.Checkins("R1")
	s1, _ := idx.Ratings("R1")
	if len(r1)+len(c1)+len(s1) != 0 {
		t.Errorf("R1 after erasure: %v %v %v", r1, c1, s1)
	}
	r2, _ := idx.Reports("R2")
	s2, _ := idx.Ratings("R2")
	if len(r2) != 1 || len(s2) != 1 {
		t.Errorf("R2 lost entries: %v %v", r2, s2)
	}
}
