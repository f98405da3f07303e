package agent

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"linli/shared/config"
)

// A kiosk's site plan must be readable, of the kiosk's site and list the
// kiosk's building: else the edge does not start, and says which setting.
func TestSitePlanSetting(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "site: s1\nbuildings: [{id: B1, units: 2}]\nreport_choices: {noise: [{zh: 夜间噪音, en: Noise at night}]}\n")
	tests := []struct {
		name string
		args []string
		want string // "" for no error, else a part of the message
	}{
		{"no plan", nil, ""},
		{"the kiosk's plan", []string{"--site-plan", good}, ""},
		{"missing file", []string{"--site-plan", filepath.Join(dir, "none.yaml")}, "no such file"},
		{"another site's plan", []string{"--site-plan", write("other.yaml", "site: s2\nbuildings: [{id: B1}]\n")}, "site s2"},
		{"without the kiosk's building", []string{"--site-plan", write("nob1.yaml", "site: s1\nbuildings: [{id: B2}]\n")}, "building B1"},
		{"a bad choice", []string{"--site-plan", write("bad.yaml", "site: s1\nreport_choices: {plumbing: [{zh: 漏水}]}\n")}, "report_choices"},
		{"on a gateway", []string{"--site-plan", good, "--role", "gateway"}, "only a kiosk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			args := append([]string{"--id", "kiosk-p", "--site", "s1", "--building", "B1"}, tt.args...)
			if err := newSet(&cfg, io.Discard).Load(args, nil); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(tt.args) > 0 && (cfg.plan == nil || len(cfg.plan.Choices["noise"]) != 1) {
					t.Fatalf("plan not read: %+v", cfg.plan)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "site-plan") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want a site-plan error containing %q", err, tt.want)
			}
		})
	}
}
