package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// loadMarked posts n check-ins with markers prefix0..prefix(n-1) from a few
// writers and records every 201 in the ledger; any other answer fails.
func loadMarked(t *testing.T, e *edgeProc, ledger *testkit.Ledger, prefix string, n int) {
	t.Helper()
	if err := loadMarkedErr(e, ledger, prefix, n); err != nil {
		t.Fatal(err)
	}
}

// loadMarkedErr is loadMarked returning its first failure, for a load run
// beside others on a goroutine of its own.
func loadMarkedErr(e *edgeProc, ledger *testkit.Ledger, prefix string, n int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				marker := fmt.Sprintf("%s%d", prefix, i)
				ledger.Tried(e.ID)
				var c created
				code, err := testkit.Do(context.Background(), "POST", e.URL+"/api/v1/checkins", "",
					map[string]string{"resident": marker, "activity": "A1"}, &c)
				if err != nil || code != 201 {
					errs <- fmt.Errorf("check-in %s on %s: %d %v", marker, e.ID, code, err)
					return
				}
				ledger.Acked(e.ID, c.Seq, marker)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when none failed
}

// heldState is what the edge's GET /api/v1/sync says of what it keeps.
type heldState struct {
	FirstHeld uint64  `json:"first_held"`
	Horizon   *uint64 `json:"backup_horizon"`
	AckedSeq  uint64  `json:"acked_seq"`
}

func (e *edgeProc) held(t *testing.T) heldState {
	t.Helper()
	var s heldState
	if code, err := testkit.Do(context.Background(), "GET", e.URL+"/api/v1/sync", "", nil, &s); err != nil || code != 200 {
		t.Fatalf("GET sync on %s: %d %v", e.ID, code, err)
	}
	return s
}

// hubDevice is one device as GET /api/v1/devices shows it.
type hubDevice struct {
	ID       string `json:"id"`
	AckedSeq uint64 `json:"acked_seq"`
	Lost     uint64 `json:"lost"`
}

func (h *hubProc) device(t *testing.T, id string) (hubDevice, bool) {
	t.Helper()
	var ds []hubDevice
	if code, err := testkit.Do(context.Background(), "GET", h.URL+"/api/v1/devices", "", nil, &ds); err != nil || code != 200 {
		t.Fatalf("GET devices: %d %v", code, err)
	}
	for _, d := range ds {
		if d.ID == id {
			return d, true
		}
	}
	return hubDevice{}, false
}

// hubNotices is the titles of the notices in force at the hub.
func hubNotices(t *testing.T, h *hubProc, token string) string {
	t.Helper()
	var list []struct{ Title string }
	if code, err := testkit.Do(context.Background(), "GET", h.URL+"/api/v1/notices?site=s1", token, nil, &list); err != nil || code != 200 {
		t.Fatalf("hub notices: %d %v", code, err)
	}
	var titles []string
	for _, n := range list {
		titles = append(titles, n.Title)
	}
	slices.Sort(titles)
	return strings.Join(titles, ",")
}

// restoreHub stops the hub, wipes its data dir, restores the backup into
// it and starts a hub on it again.
func restoreHub(t *testing.T, h *hubProc, mqttAddr, backup string) *hubProc {
	t.Helper()
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(h.Data); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runHub(t, "restore", "--data", h.Data, "--from", backup); code != 0 {
		t.Fatalf("restore: exit %d: %s %s", code, stdout, stderr)
	}
	return startHub(t, h.Data, mqttAddr, "")
}

// A kiosk with a retention of one second keeps the acked events its hub's
// last backup does not cover: 300 events synced, an online backup, 1,000
// more answered and synced, the acked events the backup covers deleted by
// retention while the 1,000 stay; the hub's data is wiped and restored from
// the backup, and the kiosk resends the 1,000 — every answered event at
// the hub exactly once, none recorded lost, and the kiosk's notices those
// of the restored hub. Before the backup horizon, retention deleted the
// 1,000 a second after their ack and the restored hub never got them.
func TestBackupHorizonKeepsWhatARestoreNeeds(t *testing.T) {
	t.Parallel()
	const n, m = 300, 1000
	mqttAddr := testkit.StablePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	token := h.token(t)
	// Enrolled: the site's downlink goes to enrolled devices only.
	e := startEnrolledEdge(t, h, "kiosk-1", "s1", "kiosk", "--retention", "1s", "--gc-interval", "100ms")
	ledger := testkit.NewLedger()
	loadMarked(t, e, ledger, "Rbefore", n)
	drained(t, e, 60*time.Second)
	notice(t, h, token, "before")
	poll.WaitFor(t, "the first notice at the kiosk", func() bool { return kioskNotices(t, e) == "before" })

	backup := filepath.Join(t.TempDir(), "hub.tar")
	if resp := downloadBackup(t, h.URL, token, backup); resp.StatusCode != 200 {
		t.Fatalf("backup: %d", resp.StatusCode)
	}
	loadMarked(t, e, ledger, "Rafter", m)
	drained(t, e, 60*time.Second)
	notice(t, h, token, "lost")
	poll.WaitFor(t, "the second notice at the kiosk", func() bool { return kioskNotices(t, e) == "before,lost" })
	// Retention has deleted what the backup covers, and only that, even
	// once every acked event is well past it (1 s, passes every 100 ms).
	allAcked := time.Now()
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		s := e.held(t)
		return s.FirstHeld > n && time.Since(allAcked) > 3*time.Second, fmt.Sprintf("edge keeps %+v; retention to pass", s)
	})
	if s := e.held(t); s.Horizon == nil || *s.Horizon != n || s.FirstHeld != n+1 {
		t.Fatalf("edge keeps %+v, want from %d with horizon %d", s, n+1, n)
	}

	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	h = restoreHub(t, h, mqttAddr, backup)
	notice(t, h, token, "after")
	e.Restart()
	testkit.WaitHTTP(t, e.URL+"/healthz", 20*time.Second)
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		d, _ := h.device(t, e.ID)
		return d.AckedSeq == n+m, fmt.Sprintf("hub holds %+v, want acked %d", d, n+m)
	})
	if v := verify(t, h, e, ledger); v.Present != n+m || v.HubCount != n+m {
		t.Fatalf("after the restore: %s, want all %d once", v, n+m)
	}
	if d, _ := h.device(t, e.ID); d.Lost != 0 {
		t.Fatalf("the hub reports %d lost; the edge kept everything", d.Lost)
	}
	// Converged: the kiosk shows what the restored hub has in force.
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		k, hub := kioskNotices(t, e), hubNotices(t, h, token)
		return k == hub && hub == "after,before", fmt.Sprintf("kiosk %q, hub %q", k, hub)
	})
}

// mountTmpfs mounts a tmpfs of size bytes on a fresh temp dir for the test and
// unmounts it at the end (after the processes using it are killed).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("this test mounts a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				t.Errorf("detach tmpfs %s: %v", dir, err)
			}
		}
	})
	return dir
}

// fillDisk grows the file at path until dir has about free bytes left.
func fillDisk(t *testing.T, dir, path string, free int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		if int64(st.Bavail)*st.Bsize <= free+int64(len(chunk)) {
			return
		}
		if _, err := f.Write(chunk); err != nil {
			t.Fatalf("filling the disk: %v", err)
		}
	}
}

// When the kiosk's disk runs short before a backup covers its acked
// events, it gives them up (they go before anything unacked) and says how
// many; the hub restored from its last backup then reports exactly those
// as lost for the device, logs it once, and takes the device's new events
// after the hole instead of waiting for seqs that no longer exist.
func TestEventsNoBackupCoveredAreReportedLost(t *testing.T) {
	t.Parallel()
	const n, m, later = 300, 500, 100
	disk := mountTmpfs(t, 128<<20)
	mqttAddr := testkit.StablePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	token := h.token(t)
	e := startEdge(t, "kiosk-1", "s1", "kiosk", h.MQTT, "--retention", "1s", "--gc-interval", "100ms",
		"--data", filepath.Join(disk, "kiosk-1"), "--disk-reserve", "16MiB", "--disk-telemetry-reserve", "48MiB")
	ledger := testkit.NewLedger()
	loadMarked(t, e, ledger, "Rbefore", n)
	drained(t, e, 60*time.Second)
	backup := filepath.Join(t.TempDir(), "hub.tar")
	if resp := downloadBackup(t, h.URL, token, backup); resp.StatusCode != 200 {
		t.Fatalf("backup: %d", resp.StatusCode)
	}
	loadMarked(t, e, ledger, "Rafter", m)
	drained(t, e, 60*time.Second)
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		s := e.held(t)
		return s.Horizon != nil && *s.Horizon == n, fmt.Sprintf("edge %+v, want horizon %d", s, n)
	})
	if got := metric(t, e.URL, "linli_edge_acked_dropped_before_backup_total"); got != 0 {
		t.Fatalf("%v acked events given up with room on the disk", got)
	}

	// The disk runs short: the disk guard deletes every acked event, the
	// m no backup covers among them.
	filler := filepath.Join(disk, "filler")
	fillDisk(t, disk, filler, 40<<20)
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		got := metric(t, e.URL, "linli_edge_acked_dropped_before_backup_total")
		return got == m, fmt.Sprintf("linli_edge_acked_dropped_before_backup_total %v, want %d", got, m)
	})
	if s := e.held(t); s.FirstHeld != n+m+1 {
		t.Fatalf("edge holds from %d, want nothing (next %d)", s.FirstHeld, n+m+1)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	h = restoreHub(t, h, mqttAddr, backup)
	e.Restart()
	testkit.WaitHTTP(t, e.URL+"/healthz", 20*time.Second)
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		d, _ := h.device(t, e.ID)
		return d.Lost == m && d.AckedSeq == n+m, fmt.Sprintf("hub %+v, want %d lost and acked %d", d, m, n+m)
	})
	if got := metric(t, h.URL, `linli_hub_device_lost_events{device="kiosk-1",site="s1"}`); got != m {
		t.Fatalf("linli_hub_device_lost_events %v, want %d", got, m)
	}
	// The device keeps syncing: its new events are taken after the hole.
	loadMarked(t, e, ledger, "Rlater", later)
	drained(t, e, 60*time.Second)
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		d, _ := h.device(t, e.ID)
		return d.AckedSeq == n+m+later && d.Lost == m, fmt.Sprintf("hub %+v, want acked %d", d, n+m+later)
	})
	evs, err := testkit.FetchEvents(context.Background(), h.URL, token, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	v := ledger.Check(e.ID, evs, residentMarker)
	slices.Sort(v.Lost)
	if v.Present != n+later || len(v.Lost) != m || v.Lost[0] != n+1 || v.Lost[m-1] != n+m ||
		v.Duplicates != 0 || v.Mismatched != 0 || v.OutOfOrder != 0 {
		t.Fatalf("at the hub: %s; want the %d before the backup and the %d after the restore once each, seqs %d..%d lost", v, n, later, n+1, n+m)
	}
	if c := strings.Count(h.Log(), "recorded as lost"); c != 1 {
		t.Fatalf("the hub logged the loss %d times, want once", c)
	}
}
