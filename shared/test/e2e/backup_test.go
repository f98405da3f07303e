package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// runHub runs a linli-hub command to its end and returns its exit code,
// stdout and stderr.
func runHub(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	hubBin, _ := testkit.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hubBin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// oneLine fails the test unless s is exactly one line containing want.
func oneLine(t *testing.T, what, s, want string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || !strings.Contains(s, want) {
		t.Fatalf("%s: stderr %q, want one line with %q", what, s, want)
	}
}

// downloadBackup takes a backup over the API with token into a file.
func downloadBackup(t *testing.T, url, token, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", url+"/api/v1/backup", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == 200 {
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return resp
}

// notice publishes a site-wide notice at the hub.
func notice(t *testing.T, h *hubProc, token, title string) {
	t.Helper()
	code, err := testkit.Do(context.Background(), "POST", h.URL+"/api/v1/notices", token, map[string]string{"site": "s1", "title": title,
		"body": "b", "category": "announcement", "expires": time.Now().Add(24 * time.Hour).Format(time.RFC3339)}, nil)
	if err != nil || code/100 != 2 {
		t.Fatalf("notice %s: %d %v", title, code, err)
	}
}

// kioskNotices is the titles of the notices the kiosk shows.
func kioskNotices(t *testing.T, e *edgeProc) string {
	t.Helper()
	var list []struct{ Title string }
	if code, err := testkit.Do(context.Background(), "GET", e.URL+"/api/v1/notices", "", nil, &list); err != nil || code != 200 {
		t.Fatalf("kiosk notices: %d %v", code, err)
	}
	var titles []string
	for _, n := range list {
		titles = append(titles, n.Title)
	}
	slices.Sort(titles)
	return strings.Join(titles, ",")
}

// A hub syncs N events, is backed up online, syncs M more, loses its data
// and is restored from the backup: the edge, which still holds the M
// events (acked, within its retention), resends what the restored hub
// lacks when the hub answers its hello, and all N+M are there exactly
// once. Along the way: the endpoint is the admin's, restore refuses a
// non-empty dir and a damaged archive (exit 2, one line, nothing left),
// and the restored hub keeps its admin token.
func TestRestoreFromOnlineBackupLosesNothing(t *testing.T) {
	t.Parallel()
	const n, m = 300, 200
	mqttAddr := testkit.StablePort(t)
	data := filepath.Join(t.TempDir(), "hub")
	h := startHub(t, data, mqttAddr, "")
	token := h.token(t)
	// Enrolled: the site's downlink goes to enrolled devices only.
	e := startEnrolledEdge(t, h, "kiosk-1", "s1", "kiosk")
	ledger := testkit.NewLedger()
	load(context.Background(), t, e, ledger, n, 4, false)
	drained(t, e, 60*time.Second)
	notice(t, h, token, "before")
	poll.WaitFor(t, "the first notice at the kiosk", func() bool { return kioskNotices(t, e) == "before" })

	dir := t.TempDir()
	file := filepath.Join(dir, "hub.tar")
	if resp := downloadBackup(t, h.URL, "", file); resp.StatusCode != 401 {
		t.Fatalf("backup without a token: %d, want 401", resp.StatusCode)
	}
	resp := downloadBackup(t, h.URL, token, file)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" ||
		!regexp.MustCompile(`^attachment; filename="linli-hub-hub-\d{8}T\d{6}Z\.tar"$`).MatchString(resp.Header.Get("Content-Disposition")) {
		t.Fatalf("backup: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
	}

	for i := range m { // seqs n+1..n+m, acked by the hub and held by the edge
		marker := fmt.Sprintf("Rafter%d", i)
		ledger.Tried(e.ID)
		var c created
		code, err := testkit.Do(context.Background(), "POST", e.URL+"/api/v1/checkins", "",
			map[string]string{"resident": marker, "activity": "A1"}, &c)
		if err != nil || code != 201 {
			t.Fatalf("check-in %d: %d %v", i, code, err)
		}
		ledger.Acked(e.ID, c.Seq, marker)
	}
	drained(t, e, 60*time.Second)
	// A notice the backup lacks: the kiosk's downlink cursor is now ahead
	// of the head the restored hub will have.
	notice(t, h, token, "lost")
	poll.WaitFor(t, "the second notice at the kiosk", func() bool { return kioskNotices(t, e) == "before,lost" })
	// The kiosk stays away until the restored hub has published again, so
	// that the hub's head has come back to the kiosk's cursor: only the
	// restore tells the two timelines apart.
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	// Refused: a data dir in use, and a damaged archive.
	code, _, stderr := runHub(t, "restore", "--data", data, "--from", file)
	if code != 2 {
		t.Fatalf("restore into the old data dir: exit %d, want 2", code)
	}
	oneLine(t, "restore into a non-empty dir", stderr, "is not empty")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(dir, "damaged.tar")
	if err := os.WriteFile(damaged, raw[:len(raw)-4096], 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	code, _, stderr = runHub(t, "restore", "--data", fresh, "--from", damaged)
	if code != 2 {
		t.Fatalf("restore of a damaged archive: exit %d, want 2", code)
	}
	oneLine(t, "restore of a damaged archive", stderr, "not a usable linli-hub backup")
	if left, _ := os.ReadDir(filepath.Dir(fresh)); len(left) != 0 {
		t.Fatalf("a failed restore left %v", left)
	}

	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runHub(t, "restore", "--data", data, "--from", file)
	if code != 0 {
		t.Fatalf("restore: exit %d: %s %s", code, stdout, stderr)
	}
	h = startHub(t, data, mqttAddr, "")
	if h.token(t) != token {
		t.Fatal("the restored hub has another admin token")
	}
	notice(t, h, token, "after")
	e.Restart()
	testkit.WaitHTTP(t, e.URL+"/healthz", 20*time.Second)
	// The edge is drained already by its own count: what moves is the
	// restored hub's, from the backup's n up to n+m as the edge resends.
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		var ds []struct {
			ID       string `json:"id"`
			AckedSeq uint64 `json:"acked_seq"`
		}
		code, err := testkit.Do(context.Background(), "GET", h.URL+"/api/v1/devices", "", nil, &ds)
		return err == nil && code == 200 && len(ds) == 1 && ds[0].AckedSeq == n+m, fmt.Sprintf("devices %d %+v %v", code, ds, err)
	})
	if v := verify(t, h, e, ledger); v.Present != n+m || v.HubCount != n+m {
		t.Fatalf("after the restore: %s, want all %d once", v, n+m)
	}
	// The kiosk's downlink follows the restored hub: the notice the backup
	// lacked goes, the one published since arrives, and so do later ones.
	poll.WaitFor(t, "the kiosk to show the restored hub's notices", func() bool { return kioskNotices(t, e) == "after,before" })
	notice(t, h, token, "later")
	poll.WaitFor(t, "a later notice at the kiosk", func() bool { return kioskNotices(t, e) == "after,before,later" })
}

// A store written by a newer hub is refused, exit 2 and one line, and
// left as it was.
func TestHubRefusesANewerStore(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "hub")
	db, err := kv.Open(filepath.Join(data, "store"), kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("meta/version"), []byte("99")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runHub(t, "--data", data, "--http", testkit.FreePort(t), "--mqtt-listen", testkit.FreePort(t))
	if code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, stderr)
	}
	oneLine(t, "newer store", stderr, "store version 99 is newer than this linli-hub supports")
	if !strings.Contains(stderr, "upgrade linli-hub") {
		t.Fatalf("stderr %q", stderr)
	}
}
