package agent

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"linli/shared/config"
	"linli/shared/test/testkit"
)

// A start that fails in a later phase (the HTTP port, taken as soon as
// the store is open; the gateway's drivers, built after the port, the
// replica and the uplink) closes everything the earlier phases opened:
// no goroutine is left, the port is free and the same data dir starts at
// once.
func TestFailedStartClosesEveryPhase(t *testing.T) {
	for _, tc := range []struct {
		name, setting string
		args          func(t *testing.T) []string
	}{
		{"HTTP port taken", "http", func(t *testing.T) []string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return []string{"--http", ln.Addr().String()}
		}},
		{"gateway simulator scenario missing", "sim-scenario", func(t *testing.T) []string {
			return []string{"--role", "gateway", "--hardware", "sim", "--http", testkit.StablePort(t),
				"--sim-scenario", filepath.Join(t.TempDir(), "absent.yaml")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			var cfg Config
			args := append([]string{"--id", "edge-f", "--site", "s1", "--data", data,
				"--http", "127.0.0.1:0", "--backoff-max", "200ms"}, tc.args(t)...)
			if err := newSet(&cfg, io.Discard).Load(args, nil); err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.DiscardHandler)
			before := goleak.IgnoreCurrent()
			a, err := Start(t.Context(), cfg, log)
			if err == nil {
				a.Stop()
				t.Fatal("the edge started")
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Setting != tc.setting {
				t.Fatalf("error %v, want one naming %s", err, tc.setting)
			}
			if err := goleak.Find(before); err != nil {
				t.Errorf("the failed start left goroutines behind: %v", err)
			}
			if tc.setting != "http" {
				ln, err := net.Listen("tcp", cfg.HTTP)
				if err != nil {
					t.Fatalf("the failed start left %s taken: %v", cfg.HTTP, err)
				}
				ln.Close()
			}
			// The same data dir, as a kiosk on a free port, starts at once.
			cfg.HTTP, cfg.Role, cfg.Gateway.Hardware = "127.0.0.1:0", "kiosk", "none"
			again, err := Start(t.Context(), cfg, log)
			if err != nil {
				t.Fatalf("start again in the same data dir: %v", err)
			}
			if err := again.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// When one of the edge's long-running parts fails (here HTTP serving,
// its listener gone), the edge stops as a whole, reports that failure,
// and leaves its data dir closed for the next start.
func TestAFailingPartStopsTheEdge(t *testing.T) {
	var cfg Config
	if err := newSet(&cfg, io.Discard).Load([]string{"--id", "kiosk-f", "--site", "s1", "--data", t.TempDir(),
		"--http", "127.0.0.1:0", "--backoff-max", "200ms"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	a, err := Start(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ln.Close(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- a.Wait() }()
	select {
	case err := <-stopped:
		if err == nil || !strings.HasPrefix(err.Error(), "http: ") {
			t.Fatalf("the edge stopped with %v, want the HTTP failure", err)
		}
	case <-time.After(20 * time.Second):
		a.Stop()
		t.Fatal("the edge kept running after its HTTP server failed")
	}
	again, err := Start(t.Context(), cfg, log)
	if err != nil {
		t.Fatalf("start again in the same data dir: %v", err)
	}
	if err := again.Stop(); err != nil {
		t.Fatal(err)
	}
}
