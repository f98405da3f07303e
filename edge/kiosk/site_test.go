package kiosk

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"linli/edge/api"
	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/test/edgetest"
)

func testPlan() *Plan {
	return &Plan{Site: "s1", Buildings: []PlanBuilding{
		{ID: "B1", Units: 3, Floors: 6},
		{ID: "B2"}, // units not known: any unit text the event allows
	}}
}

func TestCheckPlace(t *testing.T) {
	tests := []struct {
		name, building, unit, field string
	}{
		{"listed building and unit", "B1", "1-402", ""},
		{"unit alone", "B1", "3", ""},
		{"no unit", "B1", "", ""},
		{"top floor", "B1", "2-602", ""},
		{"building not listed", "Z99", "", "building"},
		{"building not listed, unit given", "Z99", "1-402", "building"},
		{"unit above the building's units", "B1", "4-402", "unit"},
		{"unit zero", "B1", "0-402", "unit"},
		{"floor above the building's floors", "B1", "1-702", "unit"},
		{"room without a door number", "B1", "1-400", "unit"},
		{"room not a number", "B1", "1-4a", "unit"},
		{"unit not in unit-room form", "B1", "A-3", "unit"},
		{"building without known units", "B2", "A-3", ""},
		{"empty building: the event's validation names it", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := testPlan().CheckPlace(tt.building, tt.unit)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var he *httpx.Error
			if !errors.As(err, &he) || he.Status != http.StatusBadRequest || he.Field != tt.field {
				t.Fatalf("err %#v, want a 400 naming field %s", err, tt.field)
			}
			if tt.field == "building" && !strings.Contains(he.Msg, tt.building) {
				t.Fatalf("message %q does not name the building %s", he.Msg, tt.building)
			}
		})
	}
	var none *Plan
	if err := none.CheckPlace("Z99", "x"); err != nil {
		t.Fatalf("a kiosk without a plan refused: %v", err)
	}
	if err := (&Plan{Site: "s1"}).CheckPlace("Z99", ""); err != nil {
		t.Fatalf("a plan without buildings refused: %v", err)
	}
}

// The demo site's plan is what configs/kiosk.yaml points at: it must load
// and offer choices for every category.
func TestDemoSitePlanLoads(t *testing.T) {
	p, err := LoadPlan(filepath.Join("..", "..", "configs", "site-xiangyang.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := p.Building("B1"); !ok || b.Units == 0 || b.Name == "" {
		t.Fatalf("B1 in the demo plan: %+v %v", b, ok)
	}
	for _, c := range event.Categories {
		if len(p.Choices[c]) == 0 {
			t.Errorf("no report choices for %s", c)
		}
		for _, ch := range p.Choices[c] {
			if ch.En == "" {
				t.Errorf("%s choice %q has no English text", c, ch.Zh)
			}
		}
	}
}

func TestLoadPlanNamesTheBadField(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"bad site", "site: 'a b'\n", "site"},
		{"bad building id", "site: s1\nbuildings: [{id: 'x y'}]\n", "buildings[0].id"},
		{"building twice", "site: s1\nbuildings: [{id: B1}, {id: B1}]\n", "buildings[1].id"},
		{"negative units", "site: s1\nbuildings: [{id: B1, units: -1}]\n", "units"},
		{"unknown category", "site: s1\nreport_choices: {plumbing: [{zh: 漏水}]}\n", "report_choices"},
		{"choice without zh", "site: s1\nreport_choices: {noise: [{en: Noise}]}\n", "report_choices.noise[0].zh"},
		{"choice too long", "site: s1\nreport_choices: {noise: [{zh: " + strings.Repeat("吵", 121) + "}]}\n", "report_choices.noise[0].zh"},
		{"choice with a control character", "site: s1\nreport_choices: {noise: [{zh: \"吵\\u0007\"}]}\n", "control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plan.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPlan(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one naming %s", err, tt.want)
			}
		})
	}
}

// Reports name a building of the site and a unit of the building when the
// kiosk has the site's plan; units as residents write them are stored as
// the site writes them, and nothing refused is stored.
func TestReportPlaceAgainstSitePlan(t *testing.T) {
	srv, ob := newServer(t, api.RoleKiosk, func(a *Handlers) { a.Kiosk = &Info{Building: "B1", Plan: testPlan()} })
	tests := []struct {
		name, building, unit string
		code                 int
		field, stored        string
	}{
		{"typed the Chinese way", "B1", "1单元402", http.StatusCreated, "", "1-402"},
		{"with a space", "B1", "1 402", http.StatusCreated, "", "1-402"},
		{"as the site writes it", "B1", "2-101", http.StatusCreated, "", "2-101"},
		{"building not of the site", "Z99", "", http.StatusBadRequest, "building", ""},
		{"unit not of the building", "B1", "9-402", http.StatusBadRequest, "unit", ""},
		{"unit in no known form", "B2", "东单元", http.StatusBadRequest, "unit", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ob.Stats().LastSeq
			body, _ := json.Marshal(map[string]string{"category": "fire_safety", "title": "楼道堆放杂物", "building": tt.building, "unit": tt.unit})
			code, out := edgetest.PostJSON(t, srv.URL+"/api/v1/reports", string(body))
			if code != tt.code {
				t.Fatalf("%d %v, want %d", code, out, tt.code)
			}
			if tt.code != http.StatusCreated {
				if out["field"] != tt.field || ob.Stats().LastSeq != before {
					t.Fatalf("answer %v (want field %s), stored %d events", out, tt.field, ob.Stats().LastSeq-before)
				}
				return
			}
			evs, err := ob.Read(before, 1, 1<<20)
			if err != nil || len(evs) != 1 {
				t.Fatalf("read the stored event: %v", err)
			}
			b, err := evs[0].Decode()
			if err != nil {
				t.Fatal(err)
			}
			if r := b.(*event.Report); r.Unit != tt.stored || r.Building != tt.building {
				t.Fatalf("stored %s %q, want %s %q", r.Building, r.Unit, tt.building, tt.stored)
			}
		})
	}
}
