package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"linli/hub/store"
	"linli/shared/config"
	"linli/shared/kv"
	"linli/shared/test/testkit"
)

// A hub that fails to start leaves its HTTP port free, whichever setting
// it failed on: the next start (systemd's restart, the operator's fixed
// setting) must be able to listen there.
func TestFailedStartLeavesTheHTTPPortFree(t *testing.T) {
	for _, tc := range []struct {
		name, setting string
		set           func(t *testing.T, cfg *Config)
	}{
		{"site plan that does not parse", "site-plans", func(t *testing.T, cfg *Config) {
			path := filepath.Join(t.TempDir(), "plan.yaml")
			if err := os.WriteFile(path, []byte("site: [unclosed\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.SitePlans = []string{path}
		}},
		{"site plan that is missing", "site-plans", func(t *testing.T, cfg *Config) {
			cfg.SitePlans = []string{filepath.Join(t.TempDir(), "absent.yaml")}
		}},
		{"trusted proxy that is no address", "trusted-proxies", func(t *testing.T, cfg *Config) {
			cfg.TrustedProxies = []string{"not-an-address"}
		}},
		{"backup dir under a file", "backup-dir", func(t *testing.T, cfg *Config) {
			file := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.BackupDir = filepath.Join(file, "backups")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hubConfig(t.TempDir())
			cfg.HTTP = testkit.StablePort(t)
			tc.set(t, &cfg)
			h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				h.Stop()
				t.Fatal("the hub started")
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Setting != tc.setting {
				t.Fatalf("error %v, want one naming %s", err, tc.setting)
			}
			ln, err := net.Listen("tcp", cfg.HTTP)
			if err != nil {
				t.Fatalf("the failed start left %s taken: %v", cfg.HTTP, err)
			}
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A start that fails in one of the later phases (site plans read while
// HTTP is built, the HTTP port itself) has already opened the store,
// the registry, the TLS material and the embedded broker: all of it is
// closed again, so no goroutine is left, both ports are free and the
// store opens at once.
func TestFailedStartClosesEveryPhase(t *testing.T) {
	for _, tc := range []struct {
		name, setting string
		set           func(t *testing.T, cfg *Config)
	}{
		{"site plan that cannot be read", "site-plans", func(t *testing.T, cfg *Config) {
			cfg.SitePlans = []string{t.TempDir()} // a directory, unreadable as a file
		}},
		{"HTTP port taken", "http", func(t *testing.T, cfg *Config) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			cfg.HTTP = ln.Addr().String()
		}},
		{"HTTP port taken, TLS on", "http", func(t *testing.T, cfg *Config) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			cfg.HTTP, cfg.TLS = ln.Addr().String(), "on"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hubConfig(t.TempDir())
			cfg.HTTP, cfg.MQTTListen = testkit.StablePort(t), testkit.StablePort(t)
			tc.set(t, &cfg)
			before := goleak.IgnoreCurrent()
			h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				h.Stop()
				t.Fatal("the hub started")
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Setting != tc.setting {
				t.Fatalf("error %v, want one naming %s", err, tc.setting)
			}
			if err := goleak.Find(before); err != nil {
				t.Errorf("the failed start left goroutines behind: %v", err)
			}
			ln, err := net.Listen("tcp", cfg.MQTTListen)
			if err != nil {
				t.Fatalf("the failed start left the MQTT port %s taken: %v", cfg.MQTTListen, err)
			}
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			st, err := store.Open(filepath.Join(cfg.Data, "store"), kv.Profile(cfg.Profile), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("the failed start left the store open: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// When one of the hub's long-running parts fails (here HTTP serving, its
// listener gone), the hub stops as a whole, reports that failure, and
// leaves its store closed for the next start.
func TestAFailingPartStopsTheHub(t *testing.T) {
	cfg := hubConfig(t.TempDir())
	log := slog.New(slog.DiscardHandler)
	h, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ln.Close(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- h.Wait() }()
	select {
	case err := <-stopped:
		if err == nil || !strings.HasPrefix(err.Error(), "http: ") {
			t.Fatalf("the hub stopped with %v, want the HTTP failure", err)
		}
	case <-time.After(20 * time.Second):
		h.Stop()
		t.Fatal("the hub kept running after its HTTP server failed")
	}
	again, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start again in the same data dir: %v", err)
	}
	if err := again.Stop(); err != nil {
		t.Fatal(err)
	}
}
