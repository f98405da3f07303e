package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"

	"linli/hub/pgstore"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// projectAll writes every report and alarm of the merged state into the
// PostgreSQL store's entity tables, encoded as the hub's downlink encodes
// them, one transaction per site.
func projectAll(t *testing.T, st *pgstore.Store, m *merge.State) {
	t.Helper()
	bySite := map[string][]wire.Change{}
	add := func(kind, entity, site, id string) {
		v, ok := m.View(merge.Ref{Kind: kind, Site: site, ID: id})
		if !ok {
			t.Fatalf("%s %s has no view", kind, id)
		}
		body, err := event.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		bySite[site] = append(bySite[site], wire.Change{Entity: entity, ID: id, Body: body})
	}
	for _, r := range m.Reports("") {
		add(merge.RefReport, wire.EntityReport, r.Site, r.ID)
	}
	for _, a := range m.AlarmHistory(func(merge.AlarmView, []merge.AlarmTransition) bool { return true }) {
		add(merge.RefAlarm, wire.EntityAlarm, a.Site, a.ID)
	}
	for site, changes := range bySite {
		err := pgx.BeginFunc(context.Background(), st.Pool(), func(tx pgx.Tx) error {
			return pgstore.PutEntities(context.Background(), tx, site, changes)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// GET /api/v1/district answers the same from the merged state in memory
// (a hub on Badger) and from SQL over the PostgreSQL entity tables: open
// reports without merged duplicates, overdue ones by the site plan's
// limits, open and active alarms, device health; an operator of one site
// sees that site only.
func TestDistrictFromMemoryAndFromSQL(t *testing.T) {
	var first *API
	d := newDash(t, triageSite, func(a *API) {
		a.Devices = fakeDevices{
			{ID: "kiosk-1", Site: "s1", Role: "kiosk", Online: true, Acked: 9, LastSeq: 9},
			{ID: "kiosk-2", Site: "s1", Role: "kiosk"},
			{ID: "gw-1", Site: "s1", Role: "gateway", Online: true, Acked: 5, LastSeq: 8}, // a backlog
			{ID: "kiosk-9", Site: "s2", Role: "kiosk", Online: true},
		}
		first = a
	})
	apply := func(site, device string, seq uint64, body event.Body) {
		t.Helper()
		ev, err := event.NewEvent(device, seq, hlc.New(1_740_000_000_000+int64(seq)*1000, 0), body)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.state.Apply(site, ev); err != nil {
			t.Fatal(err)
		}
	}
	// s1: a fire-safety report long past its 4 h, a noise report within
	// its limit, a resolved one, a duplicate merged into the first; a
	// smoke alarm still sounding, a water alarm its sensor cleared, a heat
	// alarm its sensor and then an operator cleared.
	apply("s1", "kiosk-1", 1, &event.Report{Category: "fire_safety", Title: "楼道堆放杂物", Building: "B1"})
	apply("s1", "kiosk-1", 2, &event.Report{Category: "noise", Title: "夜间噪音", Building: "B2"})
	apply("s1", "kiosk-1", 3, &event.Report{Category: "fire_safety", Title: "灭火器过期", Building: "B3"})
	apply("s1", "kiosk-1", 4, &event.Report{Category: "fire_safety", Title: "楼道杂物", Building: "B1"})
	apply("s1", "gw-1", 1, &event.Alarm{Sensor: "smoke-1", Type: "smoke", Active: true, Building: "B1"})
	apply("s1", "gw-1", 2, &event.Alarm{Sensor: "water-1", Type: "water", Active: true, Building: "B2"})
	apply("s1", "gw-1", 3, &event.Alarm{Sensor: "water-1", Type: "water", Active: false, Building: "B2"})
	apply("s1", "gw-1", 4, &event.Alarm{Sensor: "heat-1", Type: "heat", Active: true, Building: "B3"})
	apply("s1", "gw-1", 5, &event.Alarm{Sensor: "heat-1", Type: "heat", Active: false, Building: "B3"})
	// s2: one open report, no limits.
	apply("s2", "kiosk-9", 1, &event.Report{Category: "elevator", Title: "电梯异响", Building: "C1"})
	if _, err := d.state.Record(
		&event.ReportPatch{Report: "kiosk-1.3", Status: event.ReportResolved, Who: "op1"},
		&event.ReportMerge{Report: "kiosk-1.4", Into: "kiosk-1.1", Who: "op1"},
		&event.AlarmClear{Site: "s1", Source: "heat-1", Type: "heat", Who: "op1"}); err != nil {
		t.Fatal(err)
	}

	want := []districtSite{
		{Site: "s1", OpenReports: 2, OverdueReports: 1, OpenAlarms: 2, ActiveAlarms: 1, Devices: 3, DevicesHealthy: 1, DevicesStale: 2},
		{Site: "s2", OpenReports: 1, Devices: 1, DevicesHealthy: 1},
	}
	get := func(srv *httptest.Server, token string) (int, []districtSite) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/district", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Sites []districtSite }
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, out.Sites
	}
	check := func(from string, srv *httptest.Server) {
		t.Helper()
		if code, got := get(srv, "op"); code != http.StatusOK || !equalSites(got, want) {
			t.Errorf("%s: %d %+v, want %+v", from, code, got, want)
		}
		if code, got := get(srv, "s2"); code != http.StatusOK || !equalSites(got, want[1:]) {
			t.Errorf("%s, an operator of s2: %d %+v, want s2 only", from, code, got)
		}
		if code, _ := get(srv, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", from, code)
		}
	}
	check("memory", d.srv)

	st, err := pgstore.Open(context.Background(), testkit.StartPostgres(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d.state.Read(func(m *merge.State) { projectAll(t, st, m) })
	onSQL := *first
	onSQL.District = st
	srv := httptest.NewServer(onSQL.Handler())
	t.Cleanup(srv.Close)
	check("SQL", srv)
}

func equalSites(a, b []districtSite) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
