package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// startEdge starts a real edge in process with settings given as flags.
func startEdge(t *testing.T, args ...string) *Agent {
	t.Helper()
	var cfg Config
	base := []string{"--id", "kiosk-r", "--site", "s1", "--data", t.TempDir(), "--http", "127.0.0.1:0",
		"--backoff-max", "200ms"}
	if err := newSet(&cfg, io.Discard).Load(append(base, args...), nil); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Error(err)
		}
	})
	return a
}

type readyAnswer struct {
	code              int
	reasons, warnings string
}

func edgeReadyz(t *testing.T, a *Agent) readyAnswer {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct{ Reasons, Warnings []string }
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("readyz body: %v", err)
	}
	return readyAnswer{resp.StatusCode, strings.Join(b.Reasons, "; "), strings.Join(b.Warnings, "; ")}
}

// The edge is ready without its hub session (it still serves residents),
// with a warning saying so; it is not ready once its store is closed.
// (Ready with no warning while synced: TestReadyz in shared/test/e2e, with a
// real hub.)
func TestEdgeReadyz(t *testing.T) {
	a := startEdge(t, "--broker", "tcp://"+testkit.FreePort(t))
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		r := edgeReadyz(t, a)
		return r.code == 200 && strings.HasPrefix(r.warnings, "offline:") && r.reasons == "", r.reasons + r.warnings
	})
	if err := a.Outbox().Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Store().Close(); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		r := edgeReadyz(t, a)
		return r.code == 503 && r.reasons == "store: closed", r.reasons
	})
}

// An edge whose disk guard refuses writes is not ready.
func TestEdgeReadyzDiskGuardRefusing(t *testing.T) {
	// A reserve of 99 % of the disk: whatever this machine has free, the
	// guard refuses (a test's disk is never 99 % empty).
	a := startEdge(t, "--broker", "tcp://"+testkit.FreePort(t), "--disk-reserve", "99%", "--disk-telemetry-reserve", "99%")
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		r := edgeReadyz(t, a)
		return r.code == 503 && strings.HasPrefix(r.reasons, "disk: ") && strings.HasPrefix(r.warnings, "offline:"),
			r.reasons + " / " + r.warnings
	})
}

// GET /api/v1/sync keeps its fields and adds the oldest unacked record and
// the disk guard's state.
func TestSyncAddsOldestPendingAndDisk(t *testing.T) {
	a := startEdge(t, "--broker", "tcp://"+testkit.FreePort(t))
	before := time.Now().Add(-time.Second)
	resp, err := http.Post("http://"+a.Addr()+"/api/v1/checkins", "application/json", strings.NewReader(`{"resident":"R1","activity":"A1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("check-in: %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + a.Addr() + "/api/v1/sync")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"connected", "pending", "last_seq", "acked_seq", "last_sync", "oldest_pending", "disk_free_bytes", "disk_reserve_bytes", "disk_refusing"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %q in %v", k, got)
		}
	}
	oldest, err := time.Parse(time.RFC3339, fmt.Sprint(got["oldest_pending"]))
	if err != nil || oldest.Before(before.Truncate(time.Second)) || oldest.After(time.Now()) {
		t.Errorf("oldest_pending %v (%v), want about now", got["oldest_pending"], err)
	}
	if got["pending"] != 1.0 || got["disk_refusing"] != "" || got["disk_reserve_bytes"] != float64(64<<20) {
		t.Errorf("sync %v", got)
	}
}
