package server

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/shared/test/testkit"
)

// Devices enrolled at once (an installer enrolling a building's edges, a
// fleet brought up together) each change Mosquitto's files. The files,
// and what the reload command after the last change sees, must list every
// device: a rewrite that read fewer devices must never land after one that
// read more, or the devices it misses cannot log in until the next change.
func TestMosquittoFilesFollowConcurrentEnrollments(t *testing.T) {
	t.Parallel()
	broker, _ := testkit.Mosquitto(t)
	dir := t.TempDir()
	cfg := hubConfig(dir)
	cfg.MQTTListen, cfg.Broker, cfg.MosquittoFiles = "", broker, true
	passwd := filepath.Join(dir, "mosquitto", "passwd")
	seen := filepath.Join(t.TempDir(), "seen")
	cfg.MosquittoReload = "cp " + passwd + " " + seen
	h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()

	// Each round ends with enrollments racing: the files must be whole
	// after every round.
	const rounds, devices, parallel = 5, 100, 32
	for r := range rounds {
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		errs := make(chan error, devices)
		for i := range devices {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				id := fmt.Sprintf("dev-%d-%03d", r, i)
				tok, _, err := h.registry.Issue(id, "s1", "kiosk", "", time.Hour, false)
				if err != nil {
					errs <- err
					return
				}
				pub, _, err := ed25519.GenerateKey(nil)
				if err != nil {
					errs <- err
					return
				}
				if _, _, err := h.registry.Enroll(tok.String(), pub); err != nil {
					errs <- fmt.Errorf("enroll %s: %w", id, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, f := range []string{passwd, seen} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			listed := map[string]bool{}
			for _, line := range strings.Split(string(b), "\n") {
				if user, _, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(user, "dev-") {
					listed[user] = true
				}
			}
			var missing []string
			for rr := range r + 1 {
				for i := range devices {
					if id := fmt.Sprintf("dev-%d-%03d", rr, i); !listed[id] {
						missing = append(missing, id)
					}
				}
			}
			if len(missing) > 0 {
				t.Fatalf("round %d: %s lists %d of %d devices; missing %v", r, filepath.Base(f), len(listed), (r+1)*devices, missing)
			}
		}
	}
}
