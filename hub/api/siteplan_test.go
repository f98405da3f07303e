package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
}

func TestSitePlanErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad site", "site: 'a b'\nwidth: 1\nheight: 1\n", "site"},
		{"no size", "site: s1\n", "width"},
		{"twice", "site: s1\nwidth: 9\nheight: 9\nbuildings: [{id: B1, w: 1, h: 1}, {id: B1, w: 1, h: 1}]\n", "twice"},
		{"no shape", "site: s1\nwidth: 9\nheight: 9\nbuildings: [{id: B1}]\n", "points"},
		{"two points", "site: s1\nwidth: 9\nheight: 9\nbuildings: [{id: B1, points: [[0,0],[1,1]]}]\n", "3 points"},
		{"unknown key", "site: s1\nwidth: 9\nheight: 9\ncolour: red\n", "colour"},
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
