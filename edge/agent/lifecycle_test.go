package agent

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

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
