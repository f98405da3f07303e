package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"linli/shared/test/testkit"
)

// A bad flag, environment variable, config file or data dir ends the
// program with exit code 2 and one line on stderr naming the setting.
func TestBadSettingsExit2NamingTheSetting(t *testing.T) {
	t.Parallel()
	hub, edge := testkit.Binaries(t)
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("http: 127.0.0.1:1\nwindw: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		bin     string
		args    []string
		env     []string
		setting string
	}{
		{"edge unknown flag", edge, []string{"--colour", "red"}, nil, `"colour"`},
		{"edge bad http", edge, []string{"--http", "nowhere"}, nil, `"http"`},
		{"edge bad role", edge, []string{"--role", "toaster"}, nil, `"role"`},
		{"edge bad id", edge, []string{"--id", "a/b"}, nil, `"id"`},
		{"edge bad broker", edge, []string{"--broker", "http://x"}, nil, `"broker"`},
		{"edge broker list with an empty element", edge, []string{"--broker", "tcp://127.0.0.1:1,,tcp://127.0.0.1:2"}, nil, `"broker"`},
		{"edge broker list with a bad scheme", edge, nil, []string{"LINLI_BROKER=tcp://127.0.0.1:1,http://127.0.0.1:2"}, `"broker"`},
		{"edge bad time zone", edge, []string{"--time-zone", "Mars/Olympus"}, nil, `"time-zone"`},
		{"edge bad resident alarms", edge, []string{"--resident-alarms", "fire,smoke"}, nil, `"resident-alarms"`},
		{"edge bad kiosk code", edge, []string{"--kiosk-code", "b-1"}, nil, `"kiosk-code"`},
		{"edge bad public url", edge, []string{"--public-url", "hub.example"}, nil, `"public-url"`},
		{"edge short reopen window", edge, []string{"--reopen-window", "1m"}, nil, `"reopen-window"`},
		{"edge bad office phone", edge, []string{"--office-phone", "call us"}, nil, `"office-phone"`},
		{"edge bad env", edge, nil, []string{"LINLI_WINDOW=many"}, `"window"`},
		{"edge bad yaml key", edge, []string{"--config", badYAML}, nil, `"windw"`},
		{"edge missing config", edge, []string{"--config", filepath.Join(dir, "none.yaml")}, nil, `"config"`},
		{"edge data is a file", edge, []string{"--data", filepath.Join(notDir, "x")}, nil, `"data"`},
		{"hub bad http", hub, []string{"--http", "x"}, nil, `"http"`},
		{"hub bad tls mode", hub, []string{"--tls", "off"}, nil, `"tls"`},
		{"hub half a certificate", hub, []string{"--tls-cert", "/nonexistent.pem"}, nil, `"tls-cert"`},
		{"hub bad broker", hub, []string{"--broker", "ftp://x:1"}, nil, `"broker"`},
		{"hub bad sites", hub, []string{"--sites", "a,b c"}, nil, `"sites"`},
		{"hub data is a file", hub, []string{"--data", notDir}, nil, `"data"`},
		{"hub bad store", hub, []string{"--store", "mysql://linli@127.0.0.1:3306/linli"}, nil, `"store"`},
		// On PostgreSQL the database's own tools take the backups.
		{"hub backups on postgres", hub, []string{"--backup-dir", filepath.Join(dir, "backups")}, []string{"LINLI_STORE=postgres://linli@127.0.0.1:5432/linli"}, `"backup-dir"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(tt.bin, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			cmd.Dir = dir
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want code 2 (stderr %q)", err, stderr.String())
			}
			out := strings.TrimSpace(stderr.String())
			if strings.Count(out, "\n") != 0 || !strings.Contains(out, tt.setting) || strings.Contains(out, "panic") {
				t.Fatalf("stderr %q: want one line naming %s", out, tt.setting)
			}
		})
	}
}
