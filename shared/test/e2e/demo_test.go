package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// TestDemoHubStopsAlone runs configs/demo.sh (what `make run` runs) with
// the real binaries on free ports and a temporary data dir: stopping the
// hub with `demo.sh hub-stop` leaves the kiosk serving (a check-in is
// stored offline), `demo.sh hub-start` brings the hub back and the kiosk
// catches up, and an interrupt (Ctrl-C) still stops all three.
func TestDemoHubStopsAlone(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("demo.sh needs curl: ", err)
	}
	hubBin, _ := testkit.Binaries(t)
	data := t.TempDir()
	env := append(os.Environ(),
		"LINLI_DEMO_BIN="+filepath.Dir(hubBin),
		"LINLI_DEMO_DATA="+data,
		"LINLI_DEMO_HUB_HTTP="+testkit.FreePort(t),
		"LINLI_DEMO_MQTT="+testkit.FreePort(t),
		"LINLI_DEMO_KIOSK_HTTP="+testkit.FreePort(t),
		"LINLI_DEMO_GATEWAY_HTTP="+testkit.FreePort(t),
	)
	var hubURL, kioskURL string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "LINLI_DEMO_HUB_HTTP="); ok {
			hubURL = "http://" + v
		}
		if v, ok := strings.CutPrefix(kv, "LINLI_DEMO_KIOSK_HTTP="); ok {
			kioskURL = "http://" + v
		}
	}
	script := filepath.Join(testkit.Root(), "configs", "demo.sh")
	var out testkit.SyncBuffer
	demo := exec.Command(script)
	demo.Env, demo.Stdout, demo.Stderr = env, &out, &out
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- demo.Wait() }()
	pids := func() map[string]int {
		m := map[string]int{}
		for _, p := range []string{"hub", "kiosk", "gateway"} {
			b, err := os.ReadFile(filepath.Join(data, p+".pid"))
			if err != nil {
				continue
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				m[p] = pid
			}
		}
		return m
	}
	started := map[string]int{}
	t.Cleanup(func() {
		// Whatever happened, leave no process behind.
		_ = demo.Process.Signal(syscall.SIGTERM)
		for _, pid := range started {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("demo.sh output:\n%s", out.String())
		}
	})
	up := func(url string) bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	poll.Eventually(t, 90*time.Second, func() (bool, string) {
		return strings.Contains(out.String(), "Linli demo is running"), "demo.sh to print that the demo runs"
	})
	for p, pid := range pids() {
		started[p] = pid
	}
	if len(started) != 3 {
		t.Fatalf("pid files: %v", started)
	}

	run := func(arg string) string {
		cmd := exec.Command(script, arg)
		cmd.Env = env
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("demo.sh %s: %v\n%s", arg, err, b)
		}
		return string(b)
	}
	run("hub-stop")
	if up(hubURL) {
		t.Fatal("the hub still answers after hub-stop")
	}
	// The kiosk and the gateway stay: the demo script must not stop them
	// when the hub goes (it did: it waited on any child).
	for _, p := range []string{"kiosk", "gateway"} {
		if !running(started[p]) {
			t.Fatalf("%s process gone after hub-stop", p)
		}
	}
	// Give the script the chance to act on the hub's exit before checking
	// that the kiosk still serves.
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(run("hub-stop"), "not running"), "hub-stop to see the hub gone"
	})
	body, _ := json.Marshal(map[string]string{"resident": "R-demo-1", "activity": "A-demo-offline"})
	resp, err := http.Post(kioskURL+"/api/v1/checkins", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("kiosk while the hub is down: %v\n%s", err, out.String())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("offline check-in: %d", resp.StatusCode)
	}
	if !up(kioskURL) {
		t.Fatal("the kiosk stopped with the hub")
	}

	run("hub-start")
	if !up(hubURL) {
		t.Fatal("the hub is not up after hub-start")
	}
	started["hub2"] = pids()["hub"]
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		resp, err := http.Get(kioskURL + "/api/v1/sync")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var s struct {
			Connected bool   `json:"connected"`
			Pending   uint64 `json:"pending"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&s)
		return s.Connected && s.Pending == 0, "the kiosk to reconnect and drain"
	})

	// Ctrl-C: the interrupt reaches the script, which stops all three,
	// the restarted hub (not its child) too.
	if err := demo.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("demo.sh did not stop on SIGINT")
	}
	for p, pid := range started {
		poll.Eventually(t, 10*time.Second, func() (bool, string) {
			return !running(pid), p + " to have stopped with the demo"
		})
	}
}

// running tells whether pid is a live process (an exited one waiting to
// be reaped is not).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
