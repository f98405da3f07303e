package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linli/shared/testkit"
)

type readyBody struct {
	Reasons  []string `json:"reasons"`
	Warnings []string `json:"warnings"`
}

func getReady(t *testing.T, base string) (int, readyBody) {
	t.Helper()
	var b readyBody
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0, b
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("readyz of %s: %v", base, err)
	}
	return resp.StatusCode, b
}

// TestReadyz: the real hub and edge are ready, with nothing to warn about,
// once the edge syncs; with the hub killed the edge stays ready (it still
// serves residents) and says it is offline.
func TestReadyz(t *testing.T) {
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), testkit.FreePort(t), "")
	e := startEdge(t, "kiosk-ready", "s1", "kiosk", h.MQTT)
	for _, base := range []string{h.URL, e.URL} {
		testkit.Eventually(t, 20*time.Second, func() (bool, string) {
			code, b := getReady(t, base)
			return code == 200 && len(b.Warnings) == 0, base + ": " + strings.Join(append(b.Reasons, b.Warnings...), "; ")
		})
	}
	h.Kill()
	testkit.Eventually(t, 20*time.Second, func() (bool, string) {
		code, b := getReady(t, e.URL)
		return code == 200 && len(b.Warnings) == 1 && strings.HasPrefix(b.Warnings[0], "offline:"),
			strings.Join(append(b.Reasons, b.Warnings...), "; ")
	})
}
