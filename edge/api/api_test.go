package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/edge/api"
	"linli/edge/gateway"
	"linli/edge/outbox"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/test/edgetest"
)

type offline struct{}

func (offline) Connected() bool     { return false }
func (offline) LastSync() time.Time { return time.Time{} }

// newServer is the edge API of role on a real outbox, with the gateway's
// writes mounted as the edge program mounts them; opts adjust the API
// before it serves.
func newServer(t testing.TB, role string, opts ...func(*api.API)) (*httptest.Server, *outbox.Log) {
	t.Helper()
	ob, _, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "edge-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a := &api.API{Role: role, Log: ob, Sync: offline{}, Registry: prometheus.NewRegistry()}
	for _, o := range opts {
		o(a)
	}
	(&gateway.Writes{API: a, CardKey: func() []byte { return testCardKey }}).Mount()
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv, ob
}

func TestBadInputIsRefusedAndNothingStored(t *testing.T) {
	srv, ob := newServer(t, api.RoleGateway)
	tests := []struct {
		name, path, body, field string
	}{
		{"checkin bad json", "/api/v1/checkins", `{"resident":`, "body"},
		{"checkin empty body", "/api/v1/checkins", ``, "body"},
		{"checkin not an object", "/api/v1/checkins", `[1,2]`, "body"},
		{"checkin unknown field", "/api/v1/checkins", `{"resident":"R1","activity":"A1","seat":3}`, "seat"},
		{"checkin wrong type", "/api/v1/checkins", `{"resident":7,"activity":"A1"}`, "resident"},
		{"checkin missing resident", "/api/v1/checkins", `{"activity":"A1"}`, "resident"},
		{"checkin missing activity", "/api/v1/checkins", `{"resident":"R1"}`, "activity"},
		{"checkin bad action", "/api/v1/checkins", `{"resident":"R1","activity":"A1","action":"up"}`, "action"},
		{"checkin trailing data", "/api/v1/checkins", `{"resident":"R1","activity":"A1"} {}`, "body"},
		{"report bad category", "/api/v1/reports", `{"category":"ufo","title":"t","building":"B1"}`, "category"},
		{"report missing title", "/api/v1/reports", `{"category":"noise","building":"B1"}`, "title"},
		{"report missing building", "/api/v1/reports", `{"category":"noise","title":"t"}`, "building"},
		{"report title too long", "/api/v1/reports", `{"category":"noise","title":"` + strings.Repeat("长", 121) + `","building":"B1"}`, "title"},
		{"report bad resident", "/api/v1/reports", `{"category":"noise","title":"t","building":"B1","resident":"a b"}`, "resident"},
		{"vote missing resident", "/api/v1/reports/kiosk-1.4/votes", `{}`, "resident"},
		{"vote bad report id", "/api/v1/reports/no$such/votes", `{"resident":"R1"}`, "report"},
		{"rating score zero", "/api/v1/ratings", `{"resident":"R1","target":"A1","score":0}`, "score"},
		{"rating score six", "/api/v1/ratings", `{"resident":"R1","target":"A1","score":6}`, "score"},
		{"rating score fraction", "/api/v1/ratings", `{"resident":"R1","target":"A1","score":4.5}`, "score"},
		{"rating missing target", "/api/v1/ratings", `{"resident":"R1","score":4}`, "target"},
		{"access bad result", "/api/v1/access", `{"door":"B3-main","credential":"C42","result":"maybe"}`, "result"},
		{"access missing door", "/api/v1/access", `{"credential":"C42","result":"granted"}`, "door"},
		{"reading missing value", "/api/v1/readings", `{"sensor":"s1","kind":"temperature"}`, "value"},
		{"reading string value", "/api/v1/readings", `{"sensor":"s1","kind":"temperature","value":"hot"}`, "value"},
		{"reading bad kind", "/api/v1/readings", `{"sensor":"s1","kind":"radon","value":1}`, "kind"},
		{"reading implausible", "/api/v1/readings", `{"sensor":"s1","kind":"humidity","value":140}`, "value"},
		{"reading smoke 3", "/api/v1/readings", `{"sensor":"s1","kind":"smoke","value":3}`, "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := edgetest.PostJSON(t, srv.URL+tt.path, tt.body)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d (%v), want 400", code, out)
			}
			if out["field"] != tt.field || out["error"] == "" {
				t.Fatalf("answer %v, want field %q and an error", out, tt.field)
			}
		})
	}
	if st := ob.Stats(); st.LastSeq != 0 {
		t.Fatalf("bad input stored %d events", st.LastSeq)
	}
}

func TestGoodWritesAnswer201(t *testing.T) {
	srv, ob := newServer(t, api.RoleGateway)
	tests := []struct {
		path, body string
		status     string
	}{
		{"/api/v1/checkins", `{"resident":"R123","activity":"A7"}`, "recorded"},
		{"/api/v1/checkins", `{"resident":"R123","activity":"A7","action":"out"}`, "recorded"},
		{"/api/v1/reports", `{"category":"fire_safety","title":"楼道堆放杂物","description":"三楼","building":"B3","unit":"1-402","resident":"R123"}`, ""},
		{"/api/v1/reports/kiosk-1.4/votes", `{"resident":"R9"}`, ""},
		{"/api/v1/ratings", `{"resident":"R123","target":"kiosk-1.4","score":5,"comment":"快"}`, ""},
		{"/api/v1/access", `{"door":"B3-main","credential":"C42","result":"granted"}`, ""},
		{"/api/v1/readings", `{"sensor":"B3-smoke-1","kind":"smoke","value":true}`, ""},
		{"/api/v1/readings", `{"sensor":"B3-t-1","kind":"temperature","value":21.5}`, ""},
	}
	for i, tt := range tests {
		code, out := edgetest.PostJSON(t, srv.URL+tt.path, tt.body)
		if code != http.StatusCreated {
			t.Fatalf("POST %s: %d %v", tt.path, code, out)
		}
		if out["seq"] != float64(i+1) || out["id"] != "edge-1."+strconv.Itoa(i+1) {
			t.Fatalf("POST %s answered %v, want seq %d", tt.path, out, i+1)
		}
		if tt.status != "" && out["status"] != tt.status {
			t.Fatalf("POST %s status %v, want %s", tt.path, out["status"], tt.status)
		}
	}
	if st := ob.Stats(); st.LastSeq != uint64(len(tests)) || st.Pending != uint64(len(tests)) {
		t.Fatalf("stats %+v", st)
	}
	resp, err := http.Get(srv.URL + "/api/v1/sync")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s["pending"] != float64(len(tests)) || s["connected"] != false || s["last_sync"] != nil {
		t.Fatalf("sync = %v", s)
	}
}

func TestGatewayEndpointsRefusedOnKiosk(t *testing.T) {
	srv, ob := newServer(t, api.RoleKiosk)
	for _, p := range []string{"/api/v1/access", "/api/v1/readings"} {
		code, out := edgetest.PostJSON(t, srv.URL+p, `{}`)
		if code != http.StatusNotFound || out["error"] == "" {
			t.Errorf("POST %s on a kiosk: %d %v, want 404 with an error", p, code, out)
		}
	}
	if ob.Stats().LastSeq != 0 {
		t.Fatal("stored something")
	}
}

func TestClosedStoreAnswers503(t *testing.T) {
	srv, ob := newServer(t, api.RoleKiosk)
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
	code, out := edgetest.PostJSON(t, srv.URL+"/api/v1/checkins", `{"resident":"R1","activity":"A1"}`)
	if code != http.StatusServiceUnavailable || out["error"] == "" {
		t.Fatalf("write to a closed store: %d %v, want 503", code, out)
	}
}

// FuzzWriteBodies throws arbitrary bodies at every write: the answer is a
// 201 or a 400 naming a field, and a 400 stores nothing.
func FuzzWriteBodies(f *testing.F) {
	for _, s := range []string{`{"resident":"R1","activity":"A1"}`, `{"category":"noise","title":"t","building":"B1"}`,
		`{"resident":"R1","target":"A1","score":3}`, `{"sensor":"s","kind":"smoke","value":true}`, `{`, `[]`, `null`} {
		f.Add(0, s)
	}
	srv, ob := newServer(f, api.RoleGateway)
	paths := []string{"/api/v1/checkins", "/api/v1/reports", "/api/v1/reports/k.1/votes", "/api/v1/ratings", "/api/v1/access", "/api/v1/readings"}
	f.Fuzz(func(t *testing.T, which int, body string) {
		path := paths[uint(which)%uint(len(paths))]
		before := ob.Stats().LastSeq
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s answered non-JSON: %v", path, err)
		}
		switch resp.StatusCode {
		case http.StatusCreated:
			if ob.Stats().LastSeq != before+1 {
				t.Fatalf("201 without exactly one stored event")
			}
			evs, err := ob.Read(before, 1, 1<<20)
			if err != nil || len(evs) != 1 {
				t.Fatalf("read the stored event: %v", err)
			}
			b, err := evs[0].Decode()
			if err != nil {
				t.Fatal(err)
			}
			if a, ok := b.(*event.Access); ok && a.Credential != "" && accesslist.ValidPseudonym(a.Credential) != nil {
				t.Fatalf("%q stored the card %q in clear", body, a.Credential)
			}
		case http.StatusBadRequest:
			if out["field"] == nil || out["error"] == nil || ob.Stats().LastSeq != before {
				t.Fatalf("400 %v: want error and field, nothing stored", out)
			}
		default:
			t.Fatalf("%s %q: status %d", path, body, resp.StatusCode)
		}
	})
}
