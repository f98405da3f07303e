package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

type identityState struct {
	syncState
	Identity string `json:"identity"`
}

func (e *edgeProc) identity(t *testing.T) identityState {
	t.Helper()
	var s identityState
	if code := e.do(t, "GET", "/api/v1/sync", nil, &s); code != 200 {
		t.Fatalf("GET sync on %s: %d", e.ID, code)
	}
	return s
}

// Replacing a device is explicit, and loses nothing the replaced device
// answered 201: it still delivers what it wrote offline, exactly once,
// beside its replacement's events, and learns it was replaced; a revoked
// edge learns it too.
func TestReplaceDeviceLosesNothing(t *testing.T) {
	t.Parallel()
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), testkit.FreePort(t), "")
	ledger := testkit.NewLedger()
	post := func(e *edgeProc, marker string) {
		t.Helper()
		ledger.Tried("kiosk-1")
		var c created
		if code := e.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": marker, "activity": "A1"}, &c); code != 201 {
			t.Fatalf("check-in %s on %s: %d", marker, e.Data, code)
		}
		ledger.Acked("kiosk-1", c.Seq, marker)
	}
	// The first kiosk syncs some, then records more with the hub out of reach.
	dataA := enrollEdge(t, h, "kiosk-1", "s1", "kiosk")
	a := startEdgeData(t, "kiosk-1", dataA, h.MQTT)
	for i := range 3 {
		post(a, fmt.Sprintf("RA%d", i))
	}
	drained(t, a, 20*time.Second)
	if s := a.identity(t); s.Identity != "ok" {
		t.Fatalf("enrolled edge's identity %q, want ok", s.Identity)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	a = startEdgeData(t, "kiosk-1", dataA, "tcp://"+testkit.FreePort(t))
	for i := 3; i < 8; i++ {
		post(a, fmt.Sprintf("RA%d", i))
	}
	// Issuing a token for an enrolled id is refused unless it says replace.
	var refused struct{ Field, Error string }
	if code := h.do(t, "POST", "/api/v1/devices", map[string]string{"id": "kiosk-1", "site": "s1", "role": "kiosk"}, &refused); code != 409 || refused.Field != "id" {
		t.Fatalf("token for an enrolled id without replace: %d %+v, want 409 naming id", code, refused)
	}
	hubBin, edgeBin := testkit.Binaries(t)
	if out, err := exec.Command(hubBin, "device", "add", "--hub", h.URL, "--data", h.Data, "--id", "kiosk-1", "--site", "s1", "--role", "kiosk").CombinedOutput(); err == nil || !strings.Contains(string(out), "409") {
		t.Fatalf("device add for an enrolled id without --replace: %v %s", err, out)
	}
	out, err := exec.Command(hubBin, "device", "add", "--replace", "--hub", h.URL, "--data", h.Data, "--id", "kiosk-1", "--site", "s1", "--role", "kiosk").Output()
	if err != nil {
		t.Fatalf("device add --replace: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dataB := filepath.Join(t.TempDir(), "kiosk-1-new")
	if out, err := exec.Command(edgeBin, "enroll", "--hub", h.URL, "--token", lines[len(lines)-1], "--data", dataB).CombinedOutput(); err != nil {
		t.Fatalf("enroll the replacement: %v %s", err, out)
	}
	b := startEdgeData(t, "kiosk-1", dataB, h.MQTT)
	for i := range 4 {
		post(b, fmt.Sprintf("RB%d", i))
	}
	drained(t, b, 20*time.Second)
	// The replaced kiosk comes back: everything it answered arrives, and it
	// says it was replaced.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	a = startEdgeData(t, "kiosk-1", dataA, h.MQTT)
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		s := a.identity(t)
		return s.Pending == 0 && s.AckedSeq == s.LastSeq && s.Identity == "replaced", fmt.Sprintf("replaced kiosk %+v", s)
	})
	if !strings.Contains(a.Log(), "identity replaced") {
		t.Error("the replaced edge did not log that it was replaced")
	}
	// With nothing left to send it yields the id's session to the
	// replacement instead of taking it over at every reconnect.
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		return strings.Contains(a.Log(), "keeping no session") && !a.identity(t).Connected && b.identity(t).Connected,
			"the replaced edge still holds a session"
	})
	if code := a.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "RA8", "activity": "A1"}, nil); code != 201 {
		t.Fatal(code)
	}
	ledger.Tried("kiosk-1")
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		s := a.identity(t)
		return s.Pending == 0 && s.AckedSeq == s.LastSeq, fmt.Sprintf("replaced kiosk's late event %+v", s)
	})
	ledger.Acked("kiosk-1", a.identity(t).LastSeq, "RA8")
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		return !a.identity(t).Connected && b.identity(t).Connected, "the replaced edge holds a session again"
	})
	// Once it yields again, its goodbye does not make the device look
	// offline while its replacement is connected.
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		var ds []struct {
			ID     string `json:"id"`
			Online bool   `json:"online"`
		}
		h.do(t, "GET", "/api/v1/devices", nil, &ds)
		for _, d := range ds {
			if d.ID == "kiosk-1" {
				return d.Online, fmt.Sprintf("kiosk-1 %+v", d)
			}
		}
		return false, "no kiosk-1"
	})
	if err := a.Stop(); err != nil { // retired
		t.Fatal(err)
	}
	drained(t, b, 20*time.Second)
	evs, err := testkit.FetchEvents(t.Context(), h.URL, h.token(t), "kiosk-1")
	if err != nil {
		t.Fatal(err)
	}
	if v := ledger.Check("kiosk-1", evs, residentMarker); !v.OK() || v.Present != 13 {
		t.Fatalf("exactly-once violated across the replacement: %s", v)
	}
	// Each key's seqs are counted in its own range: the replacement's
	// first seq lies 1<<40 above its predecessor's, and none between is
	// lost.
	var ds []struct {
		ID   string `json:"id"`
		Lost uint64 `json:"lost"`
	}
	h.do(t, "GET", "/api/v1/devices", nil, &ds)
	for _, d := range ds {
		if d.ID == "kiosk-1" && d.Lost != 0 {
			t.Fatalf("kiosk-1 lost %d seqs across its replacement, want 0", d.Lost)
		}
	}
	if s := b.identity(t); s.Identity != "ok" {
		t.Fatalf("replacement's identity %q, want ok", s.Identity)
	}
	// Revoked: the replacement learns it.
	if code := h.do(t, "DELETE", "/api/v1/devices/kiosk-1", nil, nil); code != 200 {
		t.Fatal(code)
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		s := b.identity(t)
		return s.Identity == "revoked" && !s.Connected, fmt.Sprintf("revoked kiosk %+v", s)
	})
}

// Behind Mosquitto, whose password file holds one password per user, a
// replaced device gets a login of its own: it still delivers what it wrote
// offline, exactly once, without taking its replacement's session.
func TestMosquittoReplaceLosesNothing(t *testing.T) {
	t.Parallel()
	hubBin, edgeBin := testkit.Binaries(t)
	h, broker := startHubBehindMosquitto(t)
	reload := func() {
		t.Helper()
		if err := syscall.Kill(broker.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	ledger := testkit.NewLedger()
	post := func(e *edgeProc, marker string) {
		t.Helper()
		ledger.Tried("kiosk-1")
		var c created
		if code := e.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": marker, "activity": "A1"}, &c); code != 201 {
			t.Fatalf("check-in %s: %d", marker, code)
		}
		ledger.Acked("kiosk-1", c.Seq, marker)
	}
	dataA := enrollEdge(t, h, "kiosk-1", "s1", "kiosk")
	reload()
	a := startEdgeData(t, "kiosk-1", dataA, h.MQTT)
	post(a, "RA0")
	drained(t, a, 30*time.Second)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	a = startEdgeData(t, "kiosk-1", dataA, "tcp://"+testkit.FreePort(t))
	for i := 1; i < 4; i++ {
		post(a, fmt.Sprintf("RA%d", i))
	}
	out, err := exec.Command(hubBin, "device", "add", "--replace", "--hub", h.URL, "--data", h.Data, "--id", "kiosk-1", "--site", "s1", "--role", "kiosk").Output()
	if err != nil {
		t.Fatalf("device add --replace: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dataB := filepath.Join(t.TempDir(), "kiosk-1-new")
	if out, err := exec.Command(edgeBin, "enroll", "--hub", h.URL, "--token", lines[len(lines)-1], "--data", dataB).CombinedOutput(); err != nil {
		t.Fatalf("enroll the replacement: %v %s", err, out)
	}
	reload()
	idB, _ := readIdentity(t, dataB)
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		c, err := dial(t, h.MQTT, "probe", idB.MQTTUsername, idB.MQTTPassword)
		if err == nil {
			c.Disconnect(10)
		}
		return err == nil, fmt.Sprint(err)
	})
	b := startEdgeData(t, "kiosk-1", dataB, h.MQTT)
	post(b, "RB0")
	drained(t, b, 30*time.Second)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	a = startEdgeData(t, "kiosk-1", dataA, h.MQTT)
	poll.Eventually(t, 40*time.Second, func() (bool, string) {
		s := a.identity(t)
		return s.Pending == 0 && s.AckedSeq == s.LastSeq && s.Identity == "replaced", fmt.Sprintf("replaced kiosk %+v", s)
	})
	if !b.identity(t).Connected {
		t.Error("the replacement lost its session to the replaced device")
	}
	evs, err := testkit.FetchEvents(t.Context(), h.URL, h.token(t), "kiosk-1")
	if err != nil {
		t.Fatal(err)
	}
	if v := ledger.Check("kiosk-1", evs, residentMarker); !v.OK() || v.Present != 5 {
		t.Fatalf("exactly-once violated across the replacement: %s", v)
	}
}
