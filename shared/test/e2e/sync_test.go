package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// Two edges record 5,000 events each while no hub runs; when the hub
// starts, every event arrives exactly once, in order, and nothing is left
// pending.
func TestOfflineEdgesDrainExactlyOnce(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	broker := "tcp://" + mqttAddr
	edges := []*edgeProc{
		startEdge(t, "kiosk-a", "s1", "kiosk", broker),
		startEdge(t, "kiosk-b", "s1", "kiosk", broker),
	}
	ledger := testkit.NewLedger()
	var wg sync.WaitGroup
	for _, e := range edges {
		wg.Add(1)
		go func() { defer wg.Done(); bulkLoad(t, e, ledger, 5000, 8) }()
	}
	wg.Wait()
	for _, e := range edges {
		if s := e.sync(t); s.Connected || s.Pending != 5000 || s.LastSeq != 5000 {
			t.Fatalf("%s before the hub: %+v, want 5000 pending and not connected", e.ID, s)
		}
	}
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	for _, e := range edges {
		drained(t, e, 60*time.Second)
		if v := verify(t, h, e, ledger); v.Present != 5000 || v.HubCount != 5000 || v.Gaps != 0 {
			t.Fatalf("%s: %s", e.ID, v)
		}
	}
	var devices []struct {
		ID       string `json:"id"`
		AckedSeq uint64 `json:"acked_seq"`
		Received uint64 `json:"received"`
		Online   bool   `json:"online"`
	}
	if code, err := testkit.Do(context.Background(), "GET", h.URL+"/api/v1/devices", "", nil, &devices); err != nil || code != 200 {
		t.Fatal(code, err)
	}
	if len(devices) != 2 {
		t.Fatalf("devices = %+v", devices)
	}
	for _, d := range devices {
		if d.AckedSeq != 5000 || d.Received != 5000 || !d.Online {
			t.Errorf("device %+v, want acked 5000, received 5000, online", d)
		}
	}
}

// syncInterrupted writes a backlog, lets the hub (started with hubArgs)
// start draining it, and calls interrupt once the hub holds part of it;
// afterwards every event is at the hub exactly once. It returns the hub
// and the edge for further checks.
func syncInterrupted(t *testing.T, broker func(t *testing.T) (mqttAddr, external string), interrupt func(h *hubProc, e *edgeProc), hubArgs ...string) (*hubProc, *edgeProc) {
	mqttAddr, external := broker(t)
	edgeBroker := "tcp://" + mqttAddr
	if external != "" {
		edgeBroker = external
	}
	const n = 20000
	e := startEdge(t, "kiosk-1", "s1", "kiosk", edgeBroker, "--batch-events", "100", "--window", "2")
	ledger := testkit.NewLedger()
	bulkLoad(t, e, ledger, n, 16)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, external, hubArgs...)
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		s := e.sync(t)
		return s.AckedSeq > 0, fmt.Sprintf("sync %+v", s)
	})
	if s := e.sync(t); s.AckedSeq >= n {
		t.Logf("warning: the whole backlog drained before the interruption (%+v)", s)
	}
	interrupt(h, e)
	drained(t, e, 90*time.Second)
	if v := verify(t, h, e, ledger); v.Present != n {
		t.Fatalf("%s", v)
	}
	return h, e
}

func embedded(t *testing.T) (string, string) { return testkit.FreePort(t), "" }

func TestEdgeRestartMidSync(t *testing.T) {
	t.Parallel()
	syncInterrupted(t, embedded, func(h *hubProc, e *edgeProc) {
		if err := e.Stop(); err != nil {
			t.Fatalf("edge did not stop cleanly: %v", err)
		}
		e.Restart()
		testkit.WaitHTTP(t, e.URL+"/healthz", 20*time.Second)
	})
}

func TestEdgeKilledMidSync(t *testing.T) {
	t.Parallel()
	syncInterrupted(t, embedded, func(h *hubProc, e *edgeProc) {
		e.Kill()
		e.Restart()
		testkit.WaitHTTP(t, e.URL+"/healthz", 20*time.Second)
	})
}

func TestHubKilledMidSync(t *testing.T) {
	t.Parallel()
	syncInterrupted(t, embedded, func(h *hubProc, e *edgeProc) {
		h.Kill()
		h.Restart()
		testkit.WaitHTTP(t, h.URL+"/healthz", 20*time.Second)
	})
}

// The hub on PostgreSQL, killed mid-sync and started again: every answered
// check-in is in PostgreSQL exactly once (the hub's API and the events
// table say so) and the hub keeps no store in its data dir. Then two
// kiosks enrolled with that hub converge: a report filed at one, voted on
// at the other and moved on by an operator shows alike at both.
func TestHubKilledMidSyncOnPostgres(t *testing.T) {
	t.Parallel()
	url := testkit.StartPostgres(t)
	h, e := syncInterrupted(t, embedded, func(h *hubProc, e *edgeProc) {
		h.Kill()
		h.Restart()
		testkit.WaitHTTP(t, h.URL+"/healthz", 20*time.Second)
	}, "--store", url)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, seqs, last int64
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM events
		WHERE site = 's1' AND device = $1`, e.ID).Scan(&rows, &seqs, &last); err != nil {
		t.Fatal(err)
	}
	if want := int64(e.sync(t).LastSeq); rows != want || seqs != want || last != want {
		t.Fatalf("events table: %d rows, %d seqs, last %d; want each of the %d written once", rows, seqs, last, want)
	}
	if _, err := os.Stat(filepath.Join(h.Data, "store")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a hub on PostgreSQL made a store in its data dir: %v", err)
	}

	k := startEnrolledEdge(t, h, "kiosk-r", "s1", "kiosk")
	other := startEnrolledEdge(t, h, "kiosk-o", "s1", "kiosk")
	var rep created
	if code := k.do(t, "POST", "/api/v1/reports", map[string]string{"category": "elevator", "title": "电梯异响",
		"building": "B2", "unit": "2-301", "resident": "R1"}, &rep); code != 201 {
		t.Fatalf("file report: %d", code)
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		code := other.do(t, "POST", "/api/v1/reports/"+rep.ID+"/votes", map[string]string{"resident": "R2"}, nil)
		return code == 201, fmt.Sprintf("vote at the other kiosk: %d", code)
	})
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		code := h.do(t, "PATCH", "/api/v1/reports/"+rep.ID, map[string]string{"status": "accepted", "note": "已派人"}, nil)
		return code == 200, fmt.Sprintf("patch the report at the hub: %d", code)
	})
	for _, k := range []*edgeProc{k, other} {
		poll.Eventually(t, 30*time.Second, func() (bool, string) {
			var seen kioskReport
			code := k.do(t, "GET", "/api/v1/reports/"+rep.ID, nil, &seen)
			return code == 200 && seen.Status == "accepted" && seen.Votes == 1, fmt.Sprintf("%s shows %d %+v", k.ID, code, seen)
		})
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM hub_kv WHERE key >= 'l/s1/'::bytea AND key < 'l/s10'::bytea").Scan(&n); err != nil || n == 0 {
		t.Fatalf("site s1's downlink log in hub_kv: %d entries, %v", n, err)
	}
}

func TestHubRestartMidSyncMosquitto(t *testing.T) {
	t.Parallel()
	syncInterrupted(t, func(t *testing.T) (string, string) {
		url, _ := testkit.Mosquitto(t)
		return "", url
	}, func(h *hubProc, e *edgeProc) {
		if err := h.Stop(); err != nil {
			t.Fatalf("hub did not stop cleanly: %v", err)
		}
		h.Restart()
		testkit.WaitHTTP(t, h.URL+"/healthz", 20*time.Second)
	})
}

// An edge that dies without a goodbye is shown offline by its last will;
// one that stops cleanly says so itself.
func TestOnlineStatusAndLastWill(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	crash := startEdge(t, "kiosk-crash", "s1", "kiosk", "tcp://"+mqttAddr)
	clean := startEdge(t, "kiosk-clean", "s1", "kiosk", "tcp://"+mqttAddr)
	online := func(id string) (bool, bool) {
		var devs []struct {
			ID     string `json:"id"`
			Online bool   `json:"online"`
		}
		h.do(t, "GET", "/api/v1/devices", nil, &devs)
		for _, d := range devs {
			if d.ID == id {
				return d.Online, true
			}
		}
		return false, false
	}
	for _, id := range []string{"kiosk-crash", "kiosk-clean"} {
		poll.Eventually(t, 20*time.Second, func() (bool, string) {
			on, _ := online(id)
			return on, id + " not online"
		})
	}
	crash.Kill() // no DISCONNECT: the broker publishes the will after the keepalive (2s) lapses
	if err := clean.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"kiosk-crash", "kiosk-clean"} {
		poll.Eventually(t, 20*time.Second, func() (bool, string) {
			on, known := online(id)
			return known && !on, id + " still shown online"
		})
	}
}
