package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShippedSitePlanLoads(t *testing.T) {
	plans, err := LoadPlans([]string{filepath.Join("..", "..", "configs", "site-xiangyang.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := plans["xiangyang"]
	if !ok {
		t.Fatalf("plans %v: want xiangyang", plans)
	}
	// The demo's kiosk stands in B1 and its gateway in B3 (configs/).
	for _, id := range []string{"B1", "B2", "B3", "B4", "B5", "B6"} {
		if _, ok := p.Building(id); !ok {
			t.Errorf("building %s missing", id)
		}
	}
	if b, _ := p.Building("B3"); len(b.Devices) != 1 || b.Devices[0] != "gw-b3" {
		t.Errorf("B3 devices %v, want the demo gateway gw-b3", b.Devices)
	}
	if len(p.Staff) == 0 || p.SLA["fire_safety"] != Duration(4*time.Hour) || p.SLA["other"] != Duration(7*24*time.Hour) {
		t.Errorf("staff %v sla %v, want a staff list, fire_safety 4h and other 7d", p.Staff, p.SLA)
	}
}

func TestSitePlanErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad site", "site: 'a b'\nwidth: 1\nheight: 1\n", "site"},
		{"no size", "site: s1\n", "width"},
		{"twice", "site: s1\nwidth: 9\nheight: 9\nbuildings: [{id: B1, w: 1, h: 1}, {id: B1, w: 1, h: 1}]\n", "twice"},
		{"no shape", "site: s1\nwidth: 9\nheight: 9\nbuildings: [{id: B1}]\n", "points"},
		{"two points", "site: s1\nwidth: 9\nheight: 9\nbuildings: [{id: B1, points: [[0,0],[1,1]]}]\n", "3 points"},
		{"unknown key", "site: s1\nwidth: 9\nheight: 9\ncolour: red\n", "colour"},
		{"staff without a name", "site: s1\nwidth: 9\nheight: 9\nstaff: [{role: 物业}]\n", "staff[0].name"},
		{"staff twice", "site: s1\nwidth: 9\nheight: 9\nstaff: [{name: 王师傅}, {name: 王师傅}]\n", "staff[1].name"},
		{"sla of no category", "site: s1\nwidth: 9\nheight: 9\nsla: {fire: 4h}\n", "sla.fire"},
		{"sla not a duration", "site: s1\nwidth: 9\nheight: 9\nsla: {noise: soon}\n", "soon"},
		{"sla not positive", "site: s1\nwidth: 9\nheight: 9\nsla: {noise: 0h}\n", "sla.noise"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plan.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPlans([]string{path})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadPlans: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
