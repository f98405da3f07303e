package e2e

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// servedSerial is the serial of the certificate a new TLS handshake with
// addr presents ("" when the handshake fails).
func servedSerial(addr string) string {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the serial is the point, not trust
	if err != nil {
		return ""
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestTLSReloadOnSIGHUP: the rotation procedure of the hub's own server
// certificate — remove it, send SIGHUP — makes the running hub issue a new
// one from its site CA and present it from the next handshake, on HTTP
// and MQTT, without a restart.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	hubBin, _ := testkit.Binaries(t)
	data := filepath.Join(t.TempDir(), "hub")
	httpAddr, mqttAddr := testkit.FreePort(t), testkit.FreePort(t)
	// File polling slowed to an hour: only the signal can reload here.
	hub := testkit.Start(t, "hub", hubBin, []string{"--data", data, "--http", httpAddr, "--mqtt-listen", mqttAddr,
		"--tls", "on", "--tls-reload", "1h"})
	var before string
	testkit.Eventually(t, 20*time.Second, func() (bool, string) {
		before = servedSerial(httpAddr)
		return before != "", "no TLS handshake yet"
	})
	if got := servedSerial(mqttAddr); got != before {
		t.Fatalf("MQTT serves %s, HTTP %s", got, before)
	}
	for _, f := range []string{"server.pem", "server.key"} {
		if err := os.Remove(filepath.Join(data, "pki", f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(hub.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{httpAddr, mqttAddr} {
		testkit.Eventually(t, 10*time.Second, func() (bool, string) {
			got := servedSerial(addr)
			return got != "" && got != before, addr + " still serves " + got
		})
	}
	if hub.Exited() {
		t.Fatal("the hub exited on SIGHUP")
	}
}
