package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"linli/shared/test/faults/faultrun"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// tmpfs mounts a tmpfs of size bytes on a fresh temp dir for the test and
// unmounts it at the end, after the processes using it are killed.
func tmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("the disk-full test mounts a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill grows the filler file at path until dir has about free bytes left.
func fill(t *testing.T, dir, path string, free int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	for freeBytes(t, dir) > free+int64(len(chunk)) {
		if _, err := f.Write(chunk); err != nil {
			t.Fatalf("filling the disk: %v", err)
		}
	}
}

// metric reads one unlabelled metric from an edge's /metrics.
func metric(t *testing.T, e *testkit.Edge, name string) float64 {
	t.Helper()
	resp, err := httpGet(e.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(resp))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

var plainClient = &http.Client{Timeout: 10 * time.Second}

func httpGet(url string) (string, error) {
	resp, err := plainClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// Scenario 4: disk full. The gateway's data dir is a 128 MiB tmpfs; the disk
// guard keeps 32 MiB back and sheds telemetry below 48 MiB free. A filler
// file eats the disk: below the telemetry reserve readings are still taken
// and the oldest unacked ones dropped with a gap event; below the reserve
// reports, check-ins, access events and readings get 507 with a body that
// says why. The store itself never meets ENOSPC. Then the filler goes,
// writing resumes, the edge restarts cleanly, and at the hub every acked
// write is there except dropped readings, each named by a gap event, and the
// hub's high-water mark is not wedged by the holes.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	disk := tmpfs(t, 128<<20)
	data := filepath.Join(disk, "edge")
	mqttAddr := testkit.StablePort(t)
	const id = "gw-full"
	// A reserve the disk cannot hold is a bad setting: exit 2, named.
	_, edgeBin := testkit.Binaries(t)
	out, err := exec.Command(edgeBin, "--id", id, "--data", data, "--http", testkit.StablePort(t),
		"--disk-reserve", "1GiB", "--disk-telemetry-reserve", "2GiB").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), `"disk-reserve"`) {
		t.Fatalf("a 1 GiB reserve on a 128 MiB disk: %v, %q; want exit 2 naming disk-reserve", err, out)
	}
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: id, Role: "gateway", Data: data, Broker: "tcp://" + mqttAddr,
		Args: []string{"--disk-reserve", "32MiB", "--disk-telemetry-reserve", "48MiB"}})
	ledger := testkit.NewLedger()
	ctx := context.Background()
	var n int64
	write := func(kind, prefix string) testkit.Written {
		t.Helper()
		n++
		w, err := e.Write(ctx, ledger, kind, prefix, n)
		if err != nil {
			t.Fatalf("%s write: %v", kind, err)
		}
		return w
	}
	governance := []string{testkit.WriteCheckin, testkit.WriteAccess, testkit.WriteReport}
	// Telemetry and governance while there is room.
	for i := range 600 {
		kind := testkit.WriteReading
		prefix := "T"
		if i%3 == 0 {
			kind, prefix = governance[i%len(governance)], "G"
		}
		if w := write(kind, prefix); w.Code != 201 {
			t.Fatalf("write %d with room: %+v", i, w)
		}
	}

	// Below the telemetry reserve: readings still taken, the oldest
	// dropped with a gap event; governance taken.
	filler := filepath.Join(disk, "filler")
	fill(t, disk, filler, 40<<20)
	for range 50 {
		if w := write(testkit.WriteReading, "T"); w.Code != 201 {
			t.Fatalf("reading below the telemetry reserve: %+v", w)
		}
		if w := write(governance[n%3], "G"); w.Code != 201 {
			t.Fatalf("governance write below the telemetry reserve: %+v", w)
		}
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		d := metric(t, e, "linli_edge_telemetry_dropped_total")
		return d > 0, "no telemetry dropped below the telemetry reserve"
	})
	dropped := metric(t, e, "linli_edge_telemetry_dropped_total")

	// Below the reserve: 507 with a clear body for everything.
	fill(t, disk, filler, 24<<20)
	var refused testkit.Written
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		refused = write(testkit.WriteCheckin, "G")
		return refused.Code == 507, fmt.Sprintf("check-in below the reserve: %+v", refused)
	})
	if !strings.Contains(refused.Body, "disk") || !strings.Contains(refused.Body, "not saved") {
		t.Errorf("507 body %q does not say the disk is full and nothing was saved", refused.Body)
	}
	for _, kind := range append(governance, testkit.WriteReading) {
		if w := write(kind, "G"); w.Code != 507 {
			t.Errorf("%s below the reserve: %+v, want 507", kind, w)
		}
	}
	freeAtBottom := freeBytes(t, disk)

	// Room again: writing resumes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		w := write(testkit.WriteReport, "G")
		return w.Code == 201, fmt.Sprintf("report after space came back: %+v", w)
	})
	for range 20 {
		if w := write(testkit.WriteReading, "T"); w.Code != 201 {
			t.Fatalf("reading after space came back: %+v", w)
		}
	}
	// The store opens cleanly after a crash, and the hub gets everything.
	e.Kill()
	e.Restart()
	e.WaitUp(t)
	if log := e.Log(); strings.Contains(log, "no space left") || strings.Contains(log, "ENOSPC") || strings.Contains(log, "SIGBUS") {
		t.Fatalf("the store ran into the full disk:\n%s", tail(log, 3000))
	}
	h := testkit.StartHub(t, testkit.HubConfig{Data: filepath.Join(t.TempDir(), "hub"), MQTTAddr: mqttAddr})
	e.Drained(t, 2*time.Minute)
	evs := testkit.HubEvents(t, h, id)
	v := ledger.Check(id, evs, testkit.Marker)
	t.Logf("verdict %s", v)
	// What is missing must be dropped readings, each inside a gap event.
	acks := ledger.Acks(id)
	var gapDropped uint64
	var ranges [][2]uint64
	for _, ev := range evs {
		if ev.Kind == "gap" {
			d, _ := ev.Body["dropped"].(float64)
			f, _ := ev.Body["first_seq"].(float64)
			l, _ := ev.Body["last_seq"].(float64)
			gapDropped += uint64(d)
			ranges = append(ranges, [2]uint64{uint64(f), uint64(l)})
		}
	}
	for _, seq := range v.Lost {
		inGap := false
		for _, r := range ranges {
			inGap = inGap || (seq >= r[0] && seq <= r[1])
		}
		if !strings.HasPrefix(acks[seq], "T") || !inGap {
			t.Errorf("acked seq %d (%s) is missing at the hub and is not a dropped reading named by a gap event", seq, acks[seq])
		}
	}
	if uint64(len(v.Lost)) != gapDropped || v.Gaps != len(v.Lost) || v.Duplicates != 0 || v.Mismatched != 0 {
		t.Errorf("%d acked lost, %d gaps at the hub, gap events name %d dropped: want all equal; %s", len(v.Lost), v.Gaps, gapDropped, v)
	}
	s, err := e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := h.Device(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.AckedSeq != s.LastSeq {
		t.Errorf("hub's high-water mark %d, edge's last seq %d: the holes wedged it", d.AckedSeq, s.LastSeq)
	}
	faultrun.Result(t, "disk full (tmpfs)", "%d readings dropped in %d gap events below the telemetry reserve, governance refused with 507 at %s free (reserve 32 MiB), no ENOSPC, resumed after space came back, reopened cleanly; hub high-water mark %d = edge last seq; %s",
		int(dropped), len(ranges), testkit.MiB(freeAtBottom), d.AckedSeq, v)
}
