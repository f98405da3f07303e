package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// readyz reads GET /readyz: its status and the reasons and warnings.
func readyz(t *testing.T, base string) (int, []string, []string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct{ Reasons, Warnings []string }
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("readyz body: %v", err)
	}
	return resp.StatusCode, a.Reasons, a.Warnings
}

func TestHubReadyz(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(h *Hub)
		want string
	}{
		{"broker closed", func(h *Hub) { h.closeBroker() }, "broker: the embedded MQTT broker is not listening"},
		{"store closed", func(h *Hub) { h.closeStore() }, "store: closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHub(t)
			poll.Eventually(t, 10*time.Second, func() (bool, string) {
				code, reasons, _ := readyz(t, h.HTTPURL())
				return code == 200, strings.Join(reasons, "; ")
			})
			tc.stop(h)
			poll.Eventually(t, 10*time.Second, func() (bool, string) {
				code, reasons, _ := readyz(t, h.HTTPURL())
				return code == 503 && len(reasons) > 0 && strings.HasPrefix(reasons[0], tc.want),
					"got " + http.StatusText(code) + " " + strings.Join(reasons, "; ")
			})
			// Liveness is not readiness: the process still serves.
			resp, err := http.Get(h.HTTPURL() + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("healthz = %d, want 200", resp.StatusCode)
			}
		})
	}
}

// With an external broker the hub is ready only while its session is up.
func TestHubReadyzExternalBroker(t *testing.T) {
	t.Parallel()
	url, mosq := testkit.Mosquitto(t)
	cfg := Config{Data: t.TempDir(), HTTP: "127.0.0.1:0", Broker: url, ID: "hub",
		Profile: "small", LogLevel: "info", MaxGroup: 20000, AllowUnenrolled: true, TokenTTL: time.Hour, TLS: "auto"}
	h, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Error(err)
		}
	})
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		code, reasons, _ := readyz(t, h.HTTPURL())
		return code == 200, strings.Join(reasons, "; ")
	})
	mosq.Kill()
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		code, reasons, _ := readyz(t, h.HTTPURL())
		return code == 503 && strings.Contains(strings.Join(reasons, "; "), "broker: not connected to the external broker"),
			strings.Join(reasons, "; ")
	})
}
