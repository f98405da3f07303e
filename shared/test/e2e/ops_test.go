package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
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
		poll.Eventually(t, 20*time.Second, func() (bool, string) {
			code, b := getReady(t, base)
			return code == 200 && len(b.Warnings) == 0, base + ": " + strings.Join(append(b.Reasons, b.Warnings...), "; ")
		})
	}
	h.Kill()
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
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
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
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
		poll.Eventually(t, 10*time.Second, func() (bool, string) {
			got := servedSerial(addr)
			return got != "" && got != before, addr + " still serves " + got
		})
	}
	if hub.Exited() {
		t.Fatal("the hub exited on SIGHUP")
	}
}

// runStatus runs a status command and returns its exit code, stdout and
// stderr.
func runStatus(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	cmd := exec.Command(bin, append([]string{"status"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errOut.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errOut.String()
	}
	t.Fatal(err)
	return 0, "", ""
}

// TestStatusCommands: linli-edge status and linli-hub status against the
// real binaries — an edge with a backlog while the hub is down, the same
// edge drained once it is back, a TLS hub's certificate, --watch frames,
// and one line with exit 1 when nothing answers.
func TestStatusCommands(t *testing.T) {
	hubBin, edgeBin := testkit.Binaries(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), testkit.FreePort(t), "")
	e := startEdge(t, "kiosk-st", "s1", "kiosk", h.MQTT)
	poll.Eventually(t, 20*time.Second, func() (bool, string) { return e.sync(t).Connected, "edge not connected" })
	h.Kill()
	for i := range 3 {
		if code, err := testkit.Do(context.Background(), "POST", e.URL+"/api/v1/checkins", "",
			map[string]string{"resident": fmt.Sprintf("R%d", i), "activity": "A1"}, nil); err != nil || code != 201 {
			t.Fatalf("check-in: %d %v", code, err)
		}
	}
	code, out, errOut := runStatus(t, edgeBin, "--edge", e.URL)
	if code != 0 {
		t.Fatalf("edge status exit %d: %s", code, errOut)
	}
	for _, want := range []string{"  ready\n", "warning: offline:", "connected: no", "pending: 3  last_seq 3", "oldest unsynced record: 20",
		"sync [------------------------------]   0%  0 of 3 acked", "disk guard: accepting writes"} {
		if !strings.Contains(out, want) {
			t.Errorf("edge status lacks %q:\n%s", want, out)
		}
	}
	// --watch refreshes until interrupted; the backlog drains meanwhile.
	watch := testkit.Start(t, "watch", edgeBin, []string{"status", "--edge", e.URL, "--watch", "--interval", "100ms"})
	h.Restart()
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		log := watch.Log()
		return strings.Count(log, "edge "+e.URL) >= 2 && strings.Contains(log, "pending: 0  last_seq 3  acked_seq 3"), "frames so far:\n" + log
	})
	if err := watch.Stop(); err != nil {
		t.Errorf("status --watch on SIGTERM: %v", err)
	}
	testkit.WaitHTTP(t, h.URL+"/healthz", 20*time.Second)
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		code, out, errOut = runStatus(t, hubBin, "--hub", h.URL, "--data", h.Data)
		return code == 0 && strings.Contains(out, "devices: 1/1 online, backlog 0 events"), out + errOut
	})
	for _, want := range []string{"  ready\n", "kiosk-st", "last backup: never", "TLS certificate: none"} {
		if !strings.Contains(out, want) {
			t.Errorf("hub status lacks %q:\n%s", want, out)
		}
	}

	// A TLS hub: its site CA from --data, the certificate's end.
	data := filepath.Join(t.TempDir(), "hub-tls")
	addr := testkit.FreePort(t)
	testkit.Start(t, "hub-tls", hubBin, []string{"--data", data, "--http", addr, "--mqtt-listen", testkit.FreePort(t), "--tls", "on"})
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		code, out, errOut = runStatus(t, hubBin, "--hub", "https://"+addr, "--data", data)
		return code == 0, out + errOut
	})
	if !strings.Contains(out, "TLS certificate: expires 20") || strings.Contains(out, "ROTATE SOON") {
		t.Errorf("TLS hub status:\n%s", out)
	}

	// Nothing answers: exit 1, one line.
	for _, c := range []struct{ bin, flag string }{{hubBin, "--hub"}, {edgeBin, "--edge"}} {
		code, out, errOut := runStatus(t, c.bin, c.flag, "http://"+testkit.FreePort(t))
		if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "cannot reach") {
			t.Errorf("%s status with nothing there: exit %d, stdout %q, stderr %q", filepath.Base(c.bin), code, out, errOut)
		}
	}
}
