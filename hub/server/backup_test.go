package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"linli/hub/backup"
	"linli/shared/config"
	"linli/shared/test/poll"
)

// The backup settings are set like every other: flag, LINLI_ variable or
// config key; a bad value is refused naming the setting.
func TestBackupSettings(t *testing.T) {
	yaml := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(yaml, []byte("backup_dir: /var/backups/linli\nbackup_every: 6h\nbackup_keep: 28\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		args, env []string
		dir       string
		every     time.Duration
		keep      int
		bad       string // the setting named in the error
	}{
		{"default", nil, nil, "", time.Hour, 48, ""},
		{"flags", []string{"--backup-dir", "/b", "--backup-every", "30m", "--backup-keep", "5"}, nil, "/b", 30 * time.Minute, 5, ""},
		{"env", nil, []string{"LINLI_BACKUP_DIR=/e", "LINLI_BACKUP_EVERY=2h", "LINLI_BACKUP_KEEP=3"}, "/e", 2 * time.Hour, 3, ""},
		{"file", []string{"--config", yaml}, nil, "/var/backups/linli", 6 * time.Hour, 28, ""},
		{"every too short", []string{"--backup-every", "10s"}, nil, "", 0, 0, "backup-every"},
		{"every too long", []string{"--backup-every", "1000h"}, nil, "", 0, 0, "backup-every"},
		{"keep none", []string{"--backup-keep", "0"}, nil, "", 0, 0, "backup-keep"},
		{"dir is a file", []string{"--backup-dir", file}, nil, "", 0, 0, "backup-dir"},
		{"dir is the store", []string{"--data", "/d", "--backup-dir", "/d/store"}, nil, "", 0, 0, "backup-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := newSet(&c, io.Discard).Load(tc.args, tc.env); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			var ce *config.Error
			if tc.bad != "" {
				if !errors.As(err, &ce) || ce.Setting != tc.bad {
					t.Fatalf("error %v, want one naming %s", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.BackupDir != tc.dir || c.BackupEvery != tc.every || c.BackupKeep != tc.keep {
				t.Fatalf("got %q %v %d, want %q %v %d", c.BackupDir, c.BackupEvery, c.BackupKeep, tc.dir, tc.every, tc.keep)
			}
		})
	}
}

// metric reads one unlabelled metric from the hub's /metrics.
func metric(t *testing.T, base, name string) (float64, bool) {
	t.Helper()
	resp, out := send(t, "GET", base+"/metrics", nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(string(out))
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// A hub with --backup-dir writes its first backup at start, checked and
// whole, and shows it in its metrics; its scheduler stops with the hub.
func TestHubWritesScheduledBackups(t *testing.T) {
	t.Parallel()
	cfg := hubConfig(t.TempDir())
	cfg.BackupDir, cfg.BackupEvery, cfg.BackupKeep = filepath.Join(cfg.Data, "backups"), time.Hour, 2
	h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	base := h.HTTPURL()
	poll.WaitFor(t, "the first scheduled backup in the metrics", func() bool {
		v, ok := metric(t, base, "linli_hub_backup_last_success_timestamp_seconds")
		return ok && v > 0
	})
	for name, positive := range map[string]bool{"linli_hub_backup_last_size_bytes": true,
		"linli_hub_backup_last_duration_seconds": false, "linli_hub_backup_failures_total": false} {
		if v, ok := metric(t, base, name); !ok || (positive && v <= 0) || v < 0 {
			t.Errorf("%s = %v (found %v)", name, v, ok)
		}
	}
	entries, err := os.ReadDir(cfg.BackupDir)
	if err != nil || len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "linli-hub-hub-") {
		t.Fatalf("backup dir: %v %v", entries, err)
	}
	m, _, err := backup.Verify(filepath.Join(cfg.BackupDir, entries[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	// The backup dir inside the data dir is not backed up into itself.
	var names []string
	for _, mb := range m.Members {
		names = append(names, mb.Name)
	}
	for _, want := range []string{"files/admin.token", "files/hub.key", backup.StoreName} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("members %q lack %s", names, want)
		}
	}
	if strings.Contains(strings.Join(names, " "), "backups/") || m.StoreVersion != storeVersion || m.Hub != "hub" {
		t.Errorf("manifest %+v", m)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Only the admin takes a backup: it holds the admin token and the
// signing key, which an account with the admin role does not have.
func TestBackupNeedsTheAdmin(t *testing.T) {
	t.Parallel()
	h, err := Start(context.Background(), hubConfig(t.TempDir()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	base, admin := h.HTTPURL(), map[string]string{"Authorization": "Bearer " + h.AdminToken()}
	if resp, out := send(t, "POST", base+"/api/v1/operators", admin,
		`{"name":"boss","password":"boss-password-1","role":"admin"}`); resp.StatusCode != 201 {
		t.Fatalf("create admin account: %d %s", resp.StatusCode, out)
	}
	resp, out := send(t, "POST", base+"/api/v1/login", nil, `{"name":"boss","password":"boss-password-1"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, out)
	}
	var cookie string
	for _, c := range resp.Cookies() {
		cookie = c.Name + "=" + c.Value
	}
	for _, tc := range []struct {
		who  string
		hdr  map[string]string
		want int
	}{
		{"anonymous", nil, 401},
		{"bad token", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"admin-role account", map[string]string{"Cookie": cookie}, 403},
		{"admin token", admin, 200},
	} {
		resp, out := send(t, "GET", base+"/api/v1/backup", tc.hdr, "")
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d %.200s, want %d", tc.who, resp.StatusCode, out, tc.want)
		}
		if tc.want == 200 && (resp.Header.Get("Content-Type") != "application/x-tar" || len(out) < 1024) {
			t.Errorf("%s: %q, %d bytes", tc.who, resp.Header.Get("Content-Type"), len(out))
		}
	}
}
